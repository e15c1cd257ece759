package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Metric names, as they appear in the raw file.
const (
	metricEndToEnd = "endtoend_tasks_per_s"
	metricSubmit   = "submit_acks_per_s"
	metricIdleP50  = "idle_p50_ms"
	metricIdleP99  = "idle_p99_ms"
	metricUnary    = "unary_acks_per_s"
	metricMemIdle  = "mem_idle_mb"
	metricMemPeak  = "mem_peak_mb"
	// CPU time per task during the end-to-end run: of the server's
	// processes, of the harness's (clients, and Asynq's and River's
	// workers), and both.
	metricCPUServer  = "cpu_server_us_per_task"
	metricCPUHarness = "cpu_harness_us_per_task"
	metricCPUTotal   = "cpu_total_us_per_task"
)

// Sample is one figure of one system in one round.
type Sample struct {
	Round  int
	System string // a system's key: aura, asynq-aof, ...
	Metric string
	Value  float64
}

// Results is a run: how it was made (Meta, in order) and what it measured.
type Results struct {
	Meta    [][2]string // key, value: command, date, machine, versions
	Samples []Sample
	Notes   []string // what went wrong: a system skipped, a round failed
}

func (r *Results) meta(key string) string {
	for _, kv := range r.Meta {
		if kv[0] == key {
			return kv[1]
		}
	}
	return ""
}

func (r *Results) add(round int, system, metric string, v float64) {
	r.Samples = append(r.Samples, Sample{round, system, metric, v})
}

// WriteRaw writes the results as text: "# key: value" lines for the
// metadata, "# note: ..." for the notes, then one tab-separated line a
// sample.
func WriteRaw(w io.Writer, r *Results) error {
	bw := bufio.NewWriter(w)
	for _, kv := range r.Meta {
		fmt.Fprintf(bw, "# %s: %s\n", kv[0], kv[1])
	}
	for _, n := range r.Notes {
		fmt.Fprintf(bw, "# note: %s\n", n)
	}
	fmt.Fprintln(bw, "round\tsystem\tmetric\tvalue")
	for _, s := range r.Samples {
		fmt.Fprintf(bw, "%d\t%s\t%s\t%s\n", s.Round, s.System, s.Metric, strconv.FormatFloat(s.Value, 'g', 8, 64))
	}
	return bw.Flush()
}

// ParseRaw reads what WriteRaw wrote.
func ParseRaw(rd io.Reader) (*Results, error) {
	r := &Results{}
	sc := bufio.NewScanner(rd)
	line := 0
	for sc.Scan() {
		line++
		t := sc.Text()
		switch {
		case strings.TrimSpace(t) == "", t == "round\tsystem\tmetric\tvalue":
			continue
		case strings.HasPrefix(t, "# "):
			k, v, ok := strings.Cut(t[2:], ": ")
			if !ok {
				return nil, fmt.Errorf("line %d: %q is not a \"# key: value\" line", line, t)
			}
			if k == "note" {
				r.Notes = append(r.Notes, v)
			} else {
				r.Meta = append(r.Meta, [2]string{k, v})
			}
			continue
		}
		f := strings.Split(t, "\t")
		if len(f) != 4 {
			return nil, fmt.Errorf("line %d: want 4 tab-separated fields (round, system, metric, value), got %d", line, len(f))
		}
		round, err := strconv.Atoi(f[0])
		if err != nil {
			return nil, fmt.Errorf("line %d: round: %w", line, err)
		}
		v, err := strconv.ParseFloat(f[3], 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: value: %w", line, err)
		}
		r.add(round, f[1], f[2], v)
	}
	return r, sc.Err()
}

// value returns a system's metric in a round.
func (r *Results) value(round int, system, metric string) (float64, bool) {
	for _, s := range r.Samples {
		if s.Round == round && s.System == system && s.Metric == metric {
			return s.Value, true
		}
	}
	return 0, false
}

func (r *Results) rounds() []int {
	var out []int
	for _, s := range r.Samples {
		if !slices.Contains(out, s.Round) {
			out = append(out, s.Round)
		}
	}
	slices.Sort(out)
	return out
}

// Summary is a figure's median and range over rounds.
type Summary struct {
	Median, Min, Max float64
	N                int
}

// summarize returns the median (the mean of the middle two for an even
// count), minimum and maximum of vs; ok is false for none.
func summarize(vs []float64) (Summary, bool) {
	vs = slices.DeleteFunc(slices.Clone(vs), func(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) })
	if len(vs) == 0 {
		return Summary{}, false
	}
	slices.Sort(vs)
	n := len(vs)
	med := vs[n/2]
	if n%2 == 0 {
		med = (vs[n/2-1] + vs[n/2]) / 2
	}
	return Summary{Median: med, Min: vs[0], Max: vs[n-1], N: n}, true
}

// figure summarises one system's metric over the rounds.
func (r *Results) figure(system, metric string) (Summary, bool) {
	var vs []float64
	for _, s := range r.Samples {
		if s.System == system && s.Metric == metric {
			vs = append(vs, s.Value)
		}
	}
	return summarize(vs)
}

// sameRound summarises f over the rounds in which every system f reads
// was measured: f gets the metric's value per system key of that round.
func (r *Results) sameRound(metric string, systems []string, f func(map[string]float64) float64) (Summary, bool) {
	var vs []float64
	for _, round := range r.rounds() {
		vals := map[string]float64{}
		for _, s := range systems {
			if v, ok := r.value(round, s, metric); ok {
				vals[s] = v
			}
		}
		if len(vals) == len(systems) {
			vs = append(vs, f(vals))
		}
	}
	return summarize(vs)
}

// ratio is a same-round Aura ÷ peer for one metric.
func (r *Results) ratio(metric, peer string) (Summary, bool) {
	return r.sameRound(metric, []string{"aura", peer}, func(v map[string]float64) float64 { return v["aura"] / v[peer] })
}

// percentile returns the q-quantile (0 < q < 1) of sorted durations in
// milliseconds, as the nearest rank below.
func percentileMS(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*q))]
}
