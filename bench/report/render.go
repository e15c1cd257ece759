package main

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// GroupRun is what running one group produced.
type GroupRun struct {
	Group   Group
	Skipped string  // why the group did not run ("left out by -only"); "" when it ran
	Out     *Output // nil when go test printed nothing parseable
	Err     error   // go test failed: build error, a failed benchmark, a timeout
}

// Row is one figure of the report, ready to print.
type Row struct {
	Area, What, Figure, Bar, Met, Command string
}

// Met column values.
const (
	metYes     = "met"
	metNo      = "**not met**"
	metNoBar   = "—"
	metMissing = "not measured"
)

// Evaluate summarises one figure over the runs of its group.
func Evaluate(run GroupRun, f Figure, quick bool) Row {
	row := Row{Area: f.Area, What: f.What, Bar: f.Bar.String(), Command: run.Group.Command(quick)}
	if row.Area == "" {
		row.Area = "—"
	}
	missing := func(why string) Row {
		row.Figure, row.Met = "not measured: "+why, metMissing
		return row
	}
	if run.Skipped != "" {
		return missing("not run (" + run.Skipped + ")")
	}
	var runs []Result
	if run.Out != nil {
		runs = run.Out.Runs(f.Bench)
	}
	if len(runs) == 0 {
		if fail, ok := failureOf(run.Out, f.Bench); ok {
			return missing(fmt.Sprintf("%s failed: %s", fail.Name, firstLine(fail.Message)))
		}
		if run.Out != nil && len(run.Out.Panics) > 0 {
			return missing("the run died: " + run.Out.Panics[0])
		}
		if run.Err != nil {
			return missing(fmt.Sprintf("go test failed: %v", run.Err))
		}
		return missing(fmt.Sprintf("%s did not run (no benchmark of that name)", f.Bench))
	}
	value, err := summarize(runs, f.Value)
	if err != nil {
		return missing(err.Error())
	}
	var b strings.Builder
	fmt.Fprintf(&b, "**%s**", f.Value.format(value.Median))
	if value.Runs > 1 {
		fmt.Fprintf(&b, " (%s–%s, %d runs)", f.Value.number(value.Min), f.Value.number(value.Max), value.Runs)
	} else {
		b.WriteString(" (1 run)")
	}
	var also []string
	for _, a := range f.Also {
		if v, err := summarize(runs, a.Value); err == nil {
			also = append(also, a.Label+" "+a.Value.format(v.Median))
		}
	}
	if len(also) > 0 {
		b.WriteString("; " + strings.Join(also, ", "))
	}
	row.Figure = b.String()
	switch met, has := f.Bar.Met(value.Median); {
	case !has:
		row.Met = metNoBar
	case met:
		row.Met = metYes
	default:
		row.Met = metNo
	}
	if fail, ok := failureOf(run.Out, f.Bench); ok {
		// Some repetitions passed, at least one failed: the figure stands
		// on the passing ones, and the failure is not hidden.
		row.Figure += fmt.Sprintf("; a run failed: %s", firstLine(fail.Message))
		if f.Bar.kind == mustPass {
			row.Met = metNo
		}
	}
	return row
}

// failureOf finds a failure of the benchmark or of one of its parents.
func failureOf(out *Output, name string) (Failure, bool) {
	if out == nil {
		return Failure{}, false
	}
	for n := name; ; {
		if f, ok := out.Failed(n); ok {
			return f, true
		}
		i := strings.LastIndexByte(n, '/')
		if i < 0 {
			return Failure{}, false
		}
		n = n[:i]
	}
}

func firstLine(msg []string) string {
	if len(msg) == 0 {
		return "(no message)"
	}
	return msg[0]
}

// summarize computes m for every run and summarises the values.
func summarize(runs []Result, m Measure) (Summary, error) {
	vs := make([]float64, 0, len(runs))
	for _, r := range runs {
		v, err := m.Of(r)
		if err != nil {
			return Summary{}, err
		}
		vs = append(vs, v)
	}
	s, ok := Summarize(vs)
	if !ok {
		return Summary{}, fmt.Errorf("no run of %s gave a number for %s", runs[0].Name, strings.Join(m.Metrics, ", "))
	}
	return s, nil
}

// format prints a value of m with its unit.
func (m Measure) format(v float64) string {
	if m.Unit == "" {
		return m.number(v)
	}
	return m.number(v) + " " + m.Unit
}

// number prints a value of m: a count as a whole number.
func (m Measure) number(v float64) string {
	if m.Whole {
		return groupThousands(int64(math.Round(v)))
	}
	return formatNumber(v)
}

// formatNumber prints v with the precision a noisy figure deserves:
// thousands grouped and no decimals from 100 up, one decimal from 10, two
// from 0.1, three significant digits below.
func formatNumber(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return strconv.FormatFloat(v, 'f', -1, 64)
	case a >= 100:
		return groupThousands(int64(math.Round(v)))
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 0.1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case a == 0:
		return "0"
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

func groupThousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// Report is everything BENCHMARKS.md shows.
type Report struct {
	Machine  Machine
	Date     time.Time
	Commit   string
	Quick    bool
	Elapsed  time.Duration
	Rows     []Row
	Failures []GroupFailure
	Notes    string // bench/notes.md, verbatim
	Raw      string // where the raw benchmark output went; "" for nowhere
	LoadEnd  string // the load average when the run ended
}

// GroupFailure is a group whose go test run failed.
type GroupFailure struct {
	Command string
	Err     string
	Details []string // the failed benchmarks and their first message lines
}

// Render writes the report as Markdown.
func Render(w io.Writer, r Report) error {
	var b strings.Builder
	b.WriteString("# Aura benchmarks\n\n")
	b.WriteString("<!-- Generated by `make bench` (go run ./bench/report). Do not edit: change bench/notes.md or bench/report and run it again. -->\n")
	b.WriteString("This file is generated by `make bench` (`go run ./bench/report`); do not edit it by hand. ")
	b.WriteString("The commentary at the end is bench/notes.md, included verbatim.\n\n")
	if r.Quick {
		b.WriteString("**Quick run** (`make bench-quick`: one run per figure, smaller -benchtime): a smoke test, not the figures of record.\n\n")
	}
	m := r.Machine
	fmt.Fprintf(&b, "- Machine: %s, %d cores, %s memory; Linux %s\n", m.CPU, m.Cores, formatBytes(m.MemBytes), m.Kernel)
	fmt.Fprintf(&b, "- Go: %s\n", m.GoVersion)
	fmt.Fprintf(&b, "- Date: %s (the run took %s)\n", r.Date.UTC().Format("2006-01-02 15:04 UTC"), r.Elapsed.Round(time.Second))
	fmt.Fprintf(&b, "- Commit: %s\n", r.Commit)
	fmt.Fprintf(&b, "- Load average (1, 5, 15 min): %s at the start, %s at the end; the machine is shared, so single runs vary by ±30 %%\n\n", m.LoadAvg, r.LoadEnd)
	b.WriteString("Each figure is the median of the runs the row says (range in brackets), run by the row's command; ")
	b.WriteString("a ratio or difference pairs two metrics of the same run. Area names what a group of rows measures; Bar is the target the project holds that figure to. ")
	b.WriteString("MB is 2^20 bytes.")
	if r.Raw != "" {
		fmt.Fprintf(&b, " The raw output is in %s (benchstat reads it).", r.Raw)
	}
	b.WriteString("\n\n")
	b.WriteString("| Area | What | Figure (median) | Bar | Met | Command |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	for _, row := range r.Rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | `%s` |\n",
			cell(row.Area), cell(row.What), cell(row.Figure), cell(row.Bar), cell(row.Met), cell(row.Command))
	}
	if len(r.Failures) > 0 {
		b.WriteString("\n## Runs that failed\n\n")
		for _, f := range r.Failures {
			fmt.Fprintf(&b, "- `%s`: %s\n", cell(f.Command), f.Err)
			for _, d := range f.Details {
				fmt.Fprintf(&b, "  - %s\n", d)
			}
		}
	}
	b.WriteString("\n## What the figures say\n\n")
	b.WriteString(strings.TrimSpace(r.Notes))
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// cell makes s safe inside a Markdown table cell: a pipe would end the
// cell (GitHub's tables take \| as a literal pipe, in code spans too) and
// a newline the row.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

func formatBytes(n int64) string {
	if n <= 0 {
		return "unknown"
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}
