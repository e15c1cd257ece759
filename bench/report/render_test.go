package main

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func run1(name string, metrics map[string]float64) Result {
	return Result{Name: name, Procs: 2, Iters: 1, Metrics: metrics}
}

var (
	unaryGroup = Group{Name: "unary", Pkg: "./e2e", Pattern: "BenchmarkUnarySubmitVsCheck", Benchtime: "20000x", Count: 3, NeedsGhz: true}
	unaryFig   = Figure{
		Area: "Submit under load", What: "Submit/Check", Bench: "BenchmarkUnarySubmitVsCheck",
		Value: ratio("submit-rps", "check-rps"), Bar: minimum(0.85, "≥ 0.85"),
		Also: []Also{{"Submit", metric("submit-rps", 1, "req/s")}},
	}
	tputFig = Figure{Area: "Manager throughput", What: "tasks", Bench: "BenchmarkM/keys=0", Value: metric("tasks/s", 1, "tasks/s"), Bar: minimum(500000, "≥ 500,000 tasks/s")}
)

func TestEvaluate(t *testing.T) {
	tests := []struct {
		name       string
		run        GroupRun
		fig        Figure
		wantFigure string // a substring of the Figure cell
		wantMet    string
	}{
		{
			// Ratios of the same run: 0.5, 1.0, 0.8 -> median 0.8. The ratio
			// of the medians (10/20 = 0.5) would be wrong.
			name: "a ratio is the median of per-run ratios",
			run: GroupRun{Group: unaryGroup, Out: &Output{Results: []Result{
				run1("BenchmarkUnarySubmitVsCheck", map[string]float64{"submit-rps": 10, "check-rps": 20}),
				run1("BenchmarkUnarySubmitVsCheck", map[string]float64{"submit-rps": 30, "check-rps": 30}),
				run1("BenchmarkUnarySubmitVsCheck", map[string]float64{"submit-rps": 8, "check-rps": 10}),
			}}},
			fig:        unaryFig,
			wantFigure: "**0.80** (0.50–1.00, 3 runs); Submit 10.0 req/s",
			wantMet:    metNo,
		},
		{
			name: "met: the median clears the bar though one run does not",
			run: GroupRun{Group: unaryGroup, Out: &Output{Results: []Result{
				run1("BenchmarkM/keys=0", map[string]float64{"tasks/s": 400000}),
				run1("BenchmarkM/keys=0", map[string]float64{"tasks/s": 520000}),
				run1("BenchmarkM/keys=0", map[string]float64{"tasks/s": 610000}),
				run1("BenchmarkM/keys=1", map[string]float64{"tasks/s": 1}),
			}}},
			fig:        tputFig,
			wantFigure: "**520,000 tasks/s** (400,000–610,000, 3 runs)",
			wantMet:    metYes,
		},
		{
			name: "a missing sub-benchmark is not measured, and says so",
			run: GroupRun{Group: unaryGroup, Out: &Output{Results: []Result{
				run1("BenchmarkM/bench/noop", map[string]float64{"tasks/s": 40000}),
			}}},
			fig:        tputFig,
			wantFigure: "not measured: BenchmarkM/keys=0 did not run (no benchmark of that name)",
			wantMet:    metMissing,
		},
		{
			name:       "a failed benchmark gives its message",
			run:        GroupRun{Group: unaryGroup, Err: errors.New("exit status 1"), Out: &Output{Failures: []Failure{{Name: "BenchmarkUnarySubmitVsCheck", Message: []string{"x_test.go:1: AURA_GHZ is unset", "more"}}}}},
			fig:        unaryFig,
			wantFigure: "not measured: BenchmarkUnarySubmitVsCheck failed: x_test.go:1: AURA_GHZ is unset",
			wantMet:    metMissing,
		},
		{
			name:       "a parent's failure covers its sub-benchmarks",
			run:        GroupRun{Group: unaryGroup, Err: errors.New("exit status 1"), Out: &Output{Failures: []Failure{{Name: "BenchmarkM", Message: []string{"setup failed"}}}}},
			fig:        tputFig,
			wantFigure: "not measured: BenchmarkM failed: setup failed",
			wantMet:    metMissing,
		},
		{
			name:       "a build failure",
			run:        GroupRun{Group: unaryGroup, Err: errors.New("exit status 1: undefined: foo"), Out: &Output{}},
			fig:        tputFig,
			wantFigure: "not measured: go test failed: exit status 1: undefined: foo",
			wantMet:    metMissing,
		},
		{
			name:       "a panic",
			run:        GroupRun{Group: unaryGroup, Err: errors.New("exit status 2"), Out: &Output{Panics: []string{"panic: test timed out after 30m0s"}}},
			fig:        tputFig,
			wantFigure: "not measured: the run died: panic: test timed out after 30m0s",
			wantMet:    metMissing,
		},
		{
			name:       "left out by -only",
			run:        GroupRun{Group: unaryGroup, Skipped: "left out by -only"},
			fig:        tputFig,
			wantFigure: "not measured: not run (left out by -only)",
			wantMet:    metMissing,
		},
		{
			name: "a metric the benchmark did not report",
			run: GroupRun{Group: unaryGroup, Out: &Output{Results: []Result{
				run1("BenchmarkUnarySubmitVsCheck", map[string]float64{"submit-rps": 10}),
			}}},
			fig:        unaryFig,
			wantFigure: `not measured: BenchmarkUnarySubmitVsCheck reported no "check-rps" metric`,
			wantMet:    metMissing,
		},
		{
			name: "a checked bar is met when the benchmark passed",
			run: GroupRun{Group: unaryGroup, Out: &Output{Results: []Result{
				run1("BenchmarkF", map[string]float64{"events/s": 150000}),
			}}},
			fig:        Figure{Bench: "BenchmarkF", Value: metric("events/s", 1, "events/s"), Bar: checked("zero missing")},
			wantFigure: "**150,000 events/s** (1 run)",
			wantMet:    metYes,
		},
		{
			name: "a checked bar is not met when one repetition failed",
			run: GroupRun{Group: unaryGroup, Err: errors.New("exit status 1"), Out: &Output{
				Results:  []Result{run1("BenchmarkF", map[string]float64{"events/s": 150000})},
				Failures: []Failure{{Name: "BenchmarkF", Message: []string{"subscribers disagree"}}},
			}},
			fig:        Figure{Bench: "BenchmarkF", Value: metric("events/s", 1, "events/s"), Bar: checked("zero missing")},
			wantFigure: "; a run failed: subscribers disagree",
			wantMet:    metNo,
		},
		{
			name: "no bar",
			run: GroupRun{Group: unaryGroup, Out: &Output{Results: []Result{
				run1("BenchmarkQ", map[string]float64{"ns/op": 2500}),
			}}},
			fig:        Figure{Bench: "BenchmarkQ", Value: perSecond("ops/s")},
			wantFigure: "**400,000 ops/s** (1 run)",
			wantMet:    metNoBar,
		},
		{
			name: "a difference of two metrics, scaled units",
			run: GroupRun{Group: unaryGroup, Out: &Output{Results: []Result{
				run1("BenchmarkG", map[string]float64{"goroutines-before": 18, "goroutines-after": 30}),
			}}},
			fig: Figure{Bench: "BenchmarkG", Value: increase("goroutines-after", "goroutines-before", "goroutines"), Bar: maximum(5, "≤ 5"),
				Also: []Also{{"before", count("goroutines-before", "")}}},
			wantFigure: "**12 goroutines** (1 run); before 18",
			wantMet:    metNo,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			row := Evaluate(tt.run, tt.fig, false)
			if !strings.Contains(row.Figure, tt.wantFigure) {
				t.Errorf("Figure = %q, want it to contain %q", row.Figure, tt.wantFigure)
			}
			if row.Met != tt.wantMet {
				t.Errorf("Met = %q, want %q", row.Met, tt.wantMet)
			}
			if row.Command != tt.run.Group.Command(false) {
				t.Errorf("Command = %q, want the group's", row.Command)
			}
		})
	}
}

func TestFormatNumber(t *testing.T) {
	for in, want := range map[float64]string{
		1234567.8: "1,234,568", 100: "100", 99.94: "99.9", 12.345: "12.3", 3.14159: "3.14",
		0.38: "0.38", 0.3223: "0.32", 0.0123: "0.0123", 0: "0", -4500: "-4,500",
	} {
		if got := formatNumber(in); got != want {
			t.Errorf("formatNumber(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestGroupCommand(t *testing.T) {
	g := Group{Pkg: "./e2e", Pattern: "BenchmarkSubmitStream/sync=(always|batch)", Benchtime: "20000x", QuickBenchtime: "5000x",
		Count: 2, QuickCount: 1, Timeout: "30m", NeedsGhz: true}
	if got, want := g.Command(false), `AURA_GHZ=$PWD/bin/ghz go test -run '^$' -bench 'BenchmarkSubmitStream/sync=(always|batch)' -benchtime 20000x -count 2 -timeout 30m ./e2e`; got != want {
		t.Errorf("Command(false) =\n %s\nwant\n %s", got, want)
	}
	g.QuickBenchtime = "" // go test's default
	if got, want := g.Command(true), `AURA_GHZ=$PWD/bin/ghz go test -run '^$' -bench 'BenchmarkSubmitStream/sync=(always|batch)' -count 1 -timeout 30m ./e2e`; got != want {
		t.Errorf("Command(true) =\n %s\nwant\n %s", got, want)
	}
	if got, want := shellQuote("it's"), `'it'\''s'`; got != want {
		t.Errorf("shellQuote = %s, want %s", got, want)
	}
}

func TestRender(t *testing.T) {
	rep := Report{
		Machine: Machine{CPU: "Intel(R) Xeon(R) Processor", Cores: 2, MemBytes: 24 << 30, Kernel: "6.1.0", GoVersion: "go1.26.8", LoadAvg: "1.00, 2.00, 3.00"},
		Date:    time.Date(2026, 11, 28, 17, 30, 0, 0, time.UTC),
		Commit:  "8d8d648 (internal/testbin: one TestMain)",
		Quick:   true,
		Elapsed: 90 * time.Second,
		Rows: []Row{
			{Area: "Acknowledged submissions", What: "SubmitStream | pipes", Figure: "**27,000 acks/s** (1 run)", Bar: "≥ 20,000 acks/s", Met: metYes,
				Command: "go test -run '^$' -bench 'BenchmarkSubmitStream/sync=(always|batch)' ./e2e"},
			{Area: "—", What: "engine", Figure: "not measured: not run", Bar: "—", Met: metMissing, Command: "go test ./internal/engine"},
		},
		Failures: []GroupFailure{{Command: "go test ./e2e", Err: "exit status 1", Details: []string{"BenchmarkX: boom"}}},
		Notes:    "- A note, kept verbatim.\n  Second line | with a pipe.\n",
		Raw:      "bin/bench-quick.txt",
		LoadEnd:  "4.00, 5.00, 6.00",
	}
	var b strings.Builder
	if err := Render(&b, rep); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	lines := strings.Split(md, "\n")
	if lines[0] != "# Aura benchmarks" || !strings.Contains(strings.Join(lines[1:4], "\n"), "generated by `make bench`") {
		t.Errorf("the first lines do not say the file is generated:\n%s", strings.Join(lines[:4], "\n"))
	}
	for _, want := range []string{
		"**Quick run**",
		"Intel(R) Xeon(R) Processor, 2 cores, 24.0 GiB memory; Linux 6.1.0",
		"go1.26.8",
		"2026-11-28 17:30 UTC (the run took 1m30s)",
		"8d8d648 (internal/testbin: one TestMain)",
		"1.00, 2.00, 3.00 at the start, 4.00, 5.00, 6.00 at the end",
		"The raw output is in bin/bench-quick.txt",
		"## Runs that failed\n\n- `go test ./e2e`: exit status 1\n  - BenchmarkX: boom\n",
		"## What the figures say\n\n- A note, kept verbatim.\n  Second line | with a pipe.\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	// The table: a header, a separator, one line per row, each with
	// exactly seven unescaped pipes (six cells), pipes inside cells escaped.
	var table []string
	for _, l := range lines {
		if strings.HasPrefix(l, "| ") || strings.HasPrefix(l, "|---") {
			table = append(table, l)
		}
	}
	if len(table) != 2+len(rep.Rows) {
		t.Fatalf("table has %d lines, want %d:\n%s", len(table), 2+len(rep.Rows), strings.Join(table, "\n"))
	}
	for _, l := range table {
		if n := strings.Count(l, "|") - strings.Count(l, `\|`); n != 7 {
			t.Errorf("%d cell separators in %q, want 7", n, l)
		}
	}
	if !strings.Contains(table[2], "`go test -run '^$' -bench 'BenchmarkSubmitStream/sync=(always\\|batch)' ./e2e`") {
		t.Errorf("command cell not escaped: %s", table[2])
	}
	if !strings.HasPrefix(table[0], "| Area | What | Figure (median) | Bar | Met | Command |") {
		t.Errorf("header: %s", table[0])
	}
}
