package main

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Result is one line of `go test -bench` output: one run of one benchmark.
type Result struct {
	Pkg   string // from the "pkg:" line above it
	Name  string // "BenchmarkX/sub", without the -GOMAXPROCS suffix
	Procs int    // the GOMAXPROCS suffix; 1 when there is none
	Iters int64
	// Metrics maps each unit to its value: "ns/op", "B/op" and every
	// b.ReportMetric unit ("tasks/s", "p99-µs", ...).
	Metrics map[string]float64
}

// Failure is a benchmark that reported `--- FAIL`, with the lines it
// logged.
type Failure struct {
	Pkg     string
	Name    string
	Message []string
}

// Output is what one `go test -bench` run printed.
type Output struct {
	Results  []Result
	Failures []Failure
	// Panics holds the "panic:" lines (a panic or go test's -timeout): the
	// run died there and printed nothing after.
	Panics []string
}

// Runs returns the results of the benchmark called name, in output order:
// one per -count repetition.
func (o *Output) Runs(name string) []Result {
	var runs []Result
	for _, r := range o.Results {
		if r.Name == name {
			runs = append(runs, r)
		}
	}
	return runs
}

// Failed returns the failure of the benchmark called name, if it failed.
func (o *Output) Failed(name string) (Failure, bool) {
	for _, f := range o.Failures {
		if f.Name == name {
			return f, true
		}
	}
	return Failure{}, false
}

// Parse reads the standard benchmark output format (the one benchstat
// reads): result lines `BenchmarkName-P  N  value unit  value unit ...`,
// "pkg:" lines, and `--- FAIL: BenchmarkName` followed by the indented
// lines the benchmark logged, and "panic:" lines. Other lines (goos:, PASS, logs) are skipped.
// A benchmark that panicked prints a result line with 0 iterations; it is
// dropped (the run itself fails).
func Parse(r io.Reader) (*Output, error) {
	out := &Output{}
	var pkg string
	var failing *Failure // collecting the indented lines after --- FAIL
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for lineNo := 1; sc.Scan(); lineNo++ {
		line := sc.Text()
		if failing != nil {
			if strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
				failing.Message = append(failing.Message, strings.TrimSpace(line))
				continue
			}
			out.Failures = append(out.Failures, *failing)
			failing = nil
		}
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		// A failure after the name line reads "BenchmarkX-2  --- FAIL: BenchmarkX-2".
		if _, after, ok := strings.Cut(line, "--- FAIL: "); ok &&
			(strings.HasPrefix(line, "--- FAIL: ") || strings.HasPrefix(line, "Benchmark")) {
			name, _ := splitProcs(strings.TrimSpace(after))
			failing = &Failure{Pkg: pkg, Name: name}
			continue
		}
		if strings.HasPrefix(line, "panic: ") {
			out.Panics = append(out.Panics, line)
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		res, ok, err := parseResult(line)
		if err != nil {
			return nil, fmt.Errorf("benchmark output line %d: %w", lineNo, err)
		}
		if ok && res.Iters > 0 {
			res.Pkg = pkg
			out.Results = append(out.Results, res)
		}
	}
	if failing != nil {
		out.Failures = append(out.Failures, *failing)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading benchmark output: %w", err)
	}
	return out, nil
}

// parseResult parses one result line. ok is false for a line that starts
// with "Benchmark" but is not a result (its second field is no count); a
// line with a count but malformed value/unit pairs is an error.
func parseResult(line string) (res Result, ok bool, err error) {
	f := strings.Fields(line)
	if len(f) < 2 {
		return Result{}, false, nil
	}
	iters, convErr := strconv.ParseInt(f[1], 10, 64)
	if convErr != nil {
		return Result{}, false, nil
	}
	pairs := f[2:]
	if len(pairs)%2 != 0 {
		return Result{}, false, fmt.Errorf("%q: values and units do not pair up", line)
	}
	res = Result{Iters: iters, Metrics: make(map[string]float64, len(pairs)/2)}
	res.Name, res.Procs = splitProcs(f[0])
	for i := 0; i < len(pairs); i += 2 {
		v, err := strconv.ParseFloat(pairs[i], 64)
		if err != nil {
			return Result{}, false, fmt.Errorf("%q: value %q: %w", line, pairs[i], err)
		}
		res.Metrics[pairs[i+1]] = v
	}
	return res, true, nil
}

// splitProcs splits "BenchmarkX/sub-8" into "BenchmarkX/sub" and 8. A name
// without the suffix (GOMAXPROCS=1, or a --- FAIL line) has procs 1.
func splitProcs(s string) (string, int) {
	i := strings.LastIndexByte(s, '-')
	if i < 0 {
		return s, 1
	}
	p, err := strconv.Atoi(s[i+1:])
	if err != nil || p <= 0 {
		return s, 1
	}
	return s[:i], p
}
