package main

import (
	"reflect"
	"strings"
	"testing"
)

// Real go test output: sub-benchmarks (with a slash in the sub name),
// -count repeats, custom metrics with non-ASCII units, b.Log output, a
// failure before the result line, one after it, and a parent failing with
// its child.
const sampleOutput = `goos: linux
goarch: amd64
pkg: github.com/aura-dev/aura/internal/workers
cpu: Intel(R) Xeon(R) Processor
BenchmarkCPUPoolRoundTrip-2   	   80652	     14313 ns/op	         9.817 p50-µs	        63.54 p99-µs	     256 B/op	       5 allocs/op
BenchmarkCPUPoolRoundTrip-2   	   82110	     13900 ns/op	         9.500 p50-µs	        60.00 p99-µs	     256 B/op	       5 allocs/op
PASS
ok  	github.com/aura-dev/aura/internal/workers	3.210s
goos: linux
goarch: amd64
pkg: github.com/aura-dev/aura/e2e
cpu: Intel(R) Xeon(R) Processor
BenchmarkSubmitStream/sync=always/streams=8-2         	   20000	     36000 ns/op	     27000 acks/s
--- BENCH: BenchmarkSubmitStream/sync=always/streams=8-2
    bench_test.go:60: a log line
BenchmarkUnarySubmitVsCheck-2   	    2000	    394308 ns/op	     14940 check-rps	         0.3223 ratio	      4816 submit-rps
--- FAIL: BenchmarkDaemonMemory
    bench_figures_test.go:140: 99999 tasks queued, want 100000
        a continuation line
BenchmarkGoroutinesFlat-2     	--- FAIL: BenchmarkGoroutinesFlat-2
    bench_figures_test.go:200: late failure
BenchmarkEndToEnd/sync=always-2     	       1	  52000000 ns/op	      5200 tasks/s
--- FAIL: BenchmarkEndToEnd/sync=batch
    bench_test.go:229: submit: EOF
--- FAIL: BenchmarkEndToEnd
FAIL
exit status 1
FAIL	github.com/aura-dev/aura/e2e	120.5s
`

func TestParse(t *testing.T) {
	out, err := Parse(strings.NewReader(sampleOutput))
	if err != nil {
		t.Fatal(err)
	}
	const workers, e2e = "github.com/aura-dev/aura/internal/workers", "github.com/aura-dev/aura/e2e"
	wantResults := []Result{
		{Pkg: workers, Name: "BenchmarkCPUPoolRoundTrip", Procs: 2, Iters: 80652, Metrics: map[string]float64{
			"ns/op": 14313, "p50-µs": 9.817, "p99-µs": 63.54, "B/op": 256, "allocs/op": 5}},
		{Pkg: workers, Name: "BenchmarkCPUPoolRoundTrip", Procs: 2, Iters: 82110, Metrics: map[string]float64{
			"ns/op": 13900, "p50-µs": 9.5, "p99-µs": 60, "B/op": 256, "allocs/op": 5}},
		{Pkg: e2e, Name: "BenchmarkSubmitStream/sync=always/streams=8", Procs: 2, Iters: 20000, Metrics: map[string]float64{
			"ns/op": 36000, "acks/s": 27000}},
		{Pkg: e2e, Name: "BenchmarkUnarySubmitVsCheck", Procs: 2, Iters: 2000, Metrics: map[string]float64{
			"ns/op": 394308, "check-rps": 14940, "ratio": 0.3223, "submit-rps": 4816}},
		{Pkg: e2e, Name: "BenchmarkEndToEnd/sync=always", Procs: 2, Iters: 1, Metrics: map[string]float64{
			"ns/op": 52000000, "tasks/s": 5200}},
	}
	if !reflect.DeepEqual(out.Results, wantResults) {
		t.Errorf("results:\n got %+v\nwant %+v", out.Results, wantResults)
	}
	wantFailures := []Failure{
		{Pkg: e2e, Name: "BenchmarkDaemonMemory", Message: []string{"bench_figures_test.go:140: 99999 tasks queued, want 100000", "a continuation line"}},
		{Pkg: e2e, Name: "BenchmarkGoroutinesFlat", Message: []string{"bench_figures_test.go:200: late failure"}},
		{Pkg: e2e, Name: "BenchmarkEndToEnd/sync=batch", Message: []string{"bench_test.go:229: submit: EOF"}},
		{Pkg: e2e, Name: "BenchmarkEndToEnd"},
	}
	if !reflect.DeepEqual(out.Failures, wantFailures) {
		t.Errorf("failures:\n got %+v\nwant %+v", out.Failures, wantFailures)
	}
	if runs := out.Runs("BenchmarkCPUPoolRoundTrip"); len(runs) != 2 {
		t.Errorf("Runs(BenchmarkCPUPoolRoundTrip) = %d runs, want the 2 repetitions", len(runs))
	}
	if runs := out.Runs("BenchmarkSubmitStream/sync=always"); len(runs) != 0 {
		t.Errorf("Runs matched a prefix of a name: %+v", runs)
	}
}

func TestParseLines(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []Result
		panics  []string
		wantErr bool
	}{
		{
			name: "no GOMAXPROCS suffix when it is 1",
			in:   "BenchmarkX 	 100	 7.5 ns/op\n",
			want: []Result{{Name: "BenchmarkX", Procs: 1, Iters: 100, Metrics: map[string]float64{"ns/op": 7.5}}},
		},
		{
			name: "a sub-benchmark name with a dash keeps it",
			in:   "BenchmarkX/a-b-8 	 3	 1e+06 ns/op\n",
			want: []Result{{Name: "BenchmarkX/a-b", Procs: 8, Iters: 3, Metrics: map[string]float64{"ns/op": 1e6}}},
		},
		{
			name:   "a panicking benchmark prints 0 iterations and NaN; it is dropped and the panic kept",
			in:     "BenchmarkP-2   	       0	               NaN ns/op\npanic: oops\n\ngoroutine 18 [running]:\n",
			panics: []string{"panic: oops"},
		},
		{
			name: "lines that only look like results are skipped",
			in:   "Benchmarks are below\nBenchmarkX-2 some words\nok  \tpkg\t1s\n",
		},
		{
			name:    "a value without its unit is an error",
			in:      "BenchmarkX-2 	 10	 5 ns/op	 7\n",
			wantErr: true,
		},
		{
			name:    "a value that is no number is an error",
			in:      "BenchmarkX-2 	 10	 five ns/op\n",
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Parse(strings.NewReader(tt.in))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Parse succeeded with %+v, want an error", out)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(out.Results, tt.want) {
				t.Errorf("results: got %+v, want %+v", out.Results, tt.want)
			}
			if !reflect.DeepEqual(out.Panics, tt.panics) {
				t.Errorf("panics: got %q, want %q", out.Panics, tt.panics)
			}
		})
	}
}
