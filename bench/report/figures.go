package main

import (
	"fmt"
	"strconv"
	"strings"
)

// Group is one `go test -bench` invocation; it measures one or more
// figures.
type Group struct {
	Name    string // what -only matches
	Pkg     string // "./internal/engine"
	Pattern string // the -bench regexp
	// Benchtime and Count for `make bench`; the Quick ones for -quick. An
	// empty benchtime leaves go test's default (1s).
	Benchtime, QuickBenchtime string
	Count, QuickCount         int
	Timeout                   string // go test -timeout; "" keeps the default
	Benchmem                  bool
	NeedsGhz                  bool // the benchmark reads AURA_GHZ
	Figures                   []Figure
}

// Args returns the go test arguments of the group.
func (g Group) Args(quick bool) []string {
	benchtime, count := g.Benchtime, g.Count
	if quick {
		benchtime, count = g.QuickBenchtime, g.QuickCount
	}
	args := []string{"test", "-run", "^$", "-bench", g.Pattern}
	if benchtime != "" {
		args = append(args, "-benchtime", benchtime)
	}
	args = append(args, "-count", strconv.Itoa(count))
	if g.Benchmem {
		args = append(args, "-benchmem")
	}
	if g.Timeout != "" {
		args = append(args, "-timeout", g.Timeout)
	}
	return append(args, g.Pkg)
}

// Command returns the shell command that reproduces the group's figures.
func (g Group) Command(quick bool) string {
	var b strings.Builder
	if g.NeedsGhz {
		// go test runs the benchmark in the package directory, so the path
		// must be absolute.
		b.WriteString("AURA_GHZ=$PWD/bin/ghz ")
	}
	b.WriteString("go")
	for _, a := range g.Args(quick) {
		b.WriteByte(' ')
		b.WriteString(shellQuote(a))
	}
	return b.String()
}

// shellQuote quotes a for a POSIX shell when it needs it.
func shellQuote(a string) string {
	if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=") == "" {
		return a
	}
	return "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
}

// Figure is one row of the report: a value computed from each run of one
// benchmark, summarised over the runs and held against a bar.
type Figure struct {
	// Area names what a group of figures measures and the bars are about
	// (Manager throughput, End to end, ...); "" for figures that explain
	// others (ceilings, the manager's own cost) and have no bar.
	Area  string
	What  string
	Bench string // the full benchmark name, "BenchmarkX/sub"
	Value Measure
	Bar   Bar
	// Also lists further values of the same runs shown beside the figure.
	Also []Also
}

// Also is a secondary value shown in a figure's cell.
type Also struct {
	Label string
	Value Measure
}

// Measure computes one value from the metrics of one run, so a ratio or a
// difference always pairs two metrics of the same run.
type Measure struct {
	Unit    string   // the unit shown; "" for a ratio
	Whole   bool     // a count: shown without decimals
	Metrics []string // the benchmark metrics it reads, in the order fn takes them
	fn      func(v []float64) float64
}

// Of computes the measure for one run.
func (m Measure) Of(r Result) (float64, error) {
	vs := make([]float64, len(m.Metrics))
	for i, name := range m.Metrics {
		v, ok := r.Metrics[name]
		if !ok {
			return 0, fmt.Errorf("%s reported no %q metric", r.Name, name)
		}
		vs[i] = v
	}
	return m.fn(vs), nil
}

// metric is a benchmark metric multiplied by scale and shown in unit.
func metric(name string, scale float64, unit string) Measure {
	return Measure{Unit: unit, Metrics: []string{name}, fn: func(v []float64) float64 { return v[0] * scale }}
}

// perSecond turns ns/op into operations per second.
func perSecond(unit string) Measure {
	return Measure{Unit: unit, Metrics: []string{"ns/op"}, fn: func(v []float64) float64 { return 1e9 / v[0] }}
}

// ratio is num/den of the same run.
func ratio(num, den string) Measure {
	return Measure{Metrics: []string{num, den}, fn: func(v []float64) float64 { return v[0] / v[1] }}
}

// count is a benchmark metric that counts things.
func count(name, unit string) Measure {
	m := metric(name, 1, unit)
	m.Whole = true
	return m
}

// increase is after-before of the same run, a count.
func increase(after, before, unit string) Measure {
	return Measure{Unit: unit, Whole: true, Metrics: []string{after, before}, fn: func(v []float64) float64 { return v[0] - v[1] }}
}

// Bar is the target a figure is held against.
type Bar struct {
	kind  barKind
	limit float64
	text  string // how the report states it
}

type barKind int

const (
	noBar    barKind = iota
	atLeast          // the median must be ≥ limit
	atMost           // the median must be ≤ limit
	mustPass         // the benchmark checks the bar itself and fails when it is missed
)

func minimum(limit float64, text string) Bar { return Bar{kind: atLeast, limit: limit, text: text} }
func maximum(limit float64, text string) Bar { return Bar{kind: atMost, limit: limit, text: text} }
func checked(text string) Bar                { return Bar{kind: mustPass, text: text} }

// Met reports whether a measured median meets the bar, and whether the bar
// says anything at all.
func (b Bar) Met(median float64) (met, has bool) {
	switch b.kind {
	case atLeast:
		return median >= b.limit, true
	case atMost:
		return median <= b.limit, true
	case mustPass:
		return true, true // measured means the benchmark's own check passed
	default:
		return false, false
	}
}

// String returns the bar as the report states it.
func (b Bar) String() string {
	if b.kind == noBar {
		return "—"
	}
	return b.text
}

// suite is every figure the project tracks, in the order of the report:
// manager throughput, Submit under load, acknowledged submissions, end to
// end, the CPU pool, hook fan-out and memory, then the engine's per-step
// cost.
func suite() []Group {
	// A hung benchmark fails its group at the timeout instead of stalling
	// the whole run for go test's default 10 minutes.
	const e2eTimeout, inProcessTimeout = "30m", "5m"
	return []Group{
		{
			// Not the sqlite case: the store's figures are the store groups'.
			Name: "manager", Pkg: "./internal/execmgr", Pattern: "BenchmarkManagerNoopTasks/(keys|hooks)=",
			Benchtime: "100000x", QuickBenchtime: "20000x", Count: 3, QuickCount: 1, Benchmem: true, Timeout: inProcessTimeout,
			Figures: []Figure{
				managerFigure("keys=0", "In-process ExecutionManager, no-op tasks, no resource keys"),
				managerFigure("keys=1", "In-process ExecutionManager, no-op tasks, 1 resource key"),
				managerFigure("keys=8", "In-process ExecutionManager, no-op tasks, 8 resource keys"),
				managerFigure("hooks=4", "In-process ExecutionManager, no-op tasks, 4 local hooks"),
				{
					What:  "In-process ExecutionManager, no-op tasks, over a store that keeps nothing: the manager's own cost",
					Bench: "BenchmarkManagerNoopTasks/keys=0/unrecorded", Value: metric("tasks/s", 1, "tasks/s"),
				},
			},
		},
		{
			Name: "admission", Pkg: "./internal/admission", Pattern: "BenchmarkQueueCycle1000Resources10000Waiters",
			QuickBenchtime: "200ms", Count: 3, QuickCount: 1, Benchmem: true, Timeout: inProcessTimeout,
			Figures: []Figure{{
				Area: "Manager throughput", What: "Admission queue: one cycle (release, push, admit) with 1,000 resources and 10,000 waiters",
				Bench: "BenchmarkQueueCycle1000Resources10000Waiters", Value: perSecond("ops/s"),
			}},
		},
		{
			Name: "admission-pools", Pkg: "./internal/admission", Pattern: "BenchmarkQueueCycle(Pools1000Instances|10Pools100Instances)10000Waiters",
			QuickBenchtime: "200ms", Count: 3, QuickCount: 1, Benchmem: true, Timeout: inProcessTimeout,
			Figures: []Figure{{
				Area: "Manager throughput", What: "Admission queue: one cycle with a pool of 1,000 instances busier than it has instances and 10,000 waiters asking for any instance (a third also for a plain key)",
				Bench: "BenchmarkQueueCyclePools1000Instances10000Waiters", Value: perSecond("ops/s"),
			}, {
				Area: "Manager throughput", What: "Admission queue: one cycle with ten pools of 100 instances and 10,000 waiters (one in ten names an instance)",
				Bench: "BenchmarkQueueCycle10Pools100Instances10000Waiters", Value: perSecond("ops/s"),
			}},
		},
		{
			Name: "manager-pools", Pkg: "./internal/execmgr", Pattern: "BenchmarkManagerPoolTasks",
			Benchtime: "100000x", QuickBenchtime: "20000x", Count: 3, QuickCount: 1, Benchmem: true, Timeout: inProcessTimeout,
			Figures: []Figure{
				{
					Area: "Manager throughput", What: "In-process ExecutionManager, no-op tasks asking for any instance (`device:*`) of a pool of 64 instances",
					Bench: "BenchmarkManagerPoolTasks/instances=64", Value: metric("tasks/s", 1, "tasks/s"),
				},
				{
					Area: "Manager throughput", What: "In-process ExecutionManager, no-op tasks asking for any instance of a pool of 16 instances (tasks wait for one)",
					Bench: "BenchmarkManagerPoolTasks/instances=16", Value: metric("tasks/s", 1, "tasks/s"),
				},
			},
		},
		{
			Name: "unary", Pkg: "./e2e", Pattern: "BenchmarkUnarySubmitVsCheck",
			Benchtime: "20000x", QuickBenchtime: "5000x", Count: 3, QuickCount: 1, Timeout: e2eTimeout, NeedsGhz: true,
			Figures: []Figure{{
				Area: "Submit under load", What: "Unary Submit / grpc.health.v1 Check, ghz `-c 50` on the same aurad (`--sync always`, tasks running), Check-Submit-Check",
				Bench: "BenchmarkUnarySubmitVsCheck", Value: ratio("submit-rps", "check-rps"),
				Bar: minimum(0.85, "≥ 0.85"),
				Also: []Also{
					{"Submit", metric("submit-rps", 1, "req/s")},
					{"Check", metric("check-rps", 1, "req/s")},
				},
			}},
		},
		{
			Name: "submitstream", Pkg: "./e2e", Pattern: "BenchmarkSubmitStream/sync=(always|batch)",
			Benchtime: "20000x", QuickBenchtime: "5000x", Count: 3, QuickCount: 1, Timeout: e2eTimeout,
			Figures: []Figure{
				streamFigure("always", 1), streamFigure("always", 8),
				streamFigure("batch", 1), streamFigure("batch", 8),
			},
		},
		// What the embedded store can record with nothing else running: the
		// ceilings of acknowledged submissions and of end to end, measured in
		// the same report.
		{
			Name: "store-create", Pkg: "./internal/store", Pattern: "BenchmarkCreateTask/sync=batch/goroutines=1024$",
			Benchtime: "100000x", QuickBenchtime: "20000x", Count: 3, QuickCount: 1, Benchmem: true, Timeout: inProcessTimeout,
			Figures: []Figure{{
				What:  "Ceiling of acknowledged submissions: the SQLite store alone recording submissions (task row, label, task.queued), 1,024 writers, `--sync batch`; no gRPC, no task runs",
				Bench: "BenchmarkCreateTask/sync=batch/goroutines=1024", Value: metric("creates/s", 1, "creates/s"),
				Also: []Also{{"per commit", metric("ops/commit", 1, "ops")}},
			}},
		},
		{
			Name: "store-lifecycle", Pkg: "./internal/store", Pattern: "BenchmarkTaskLifecycle/sync=(always|batch)/tasks=1024$",
			Benchtime: "100000x", QuickBenchtime: "20000x", Count: 3, QuickCount: 1, Benchmem: true, Timeout: inProcessTimeout,
			Figures: []Figure{lifecycleFigure("always"), lifecycleFigure("batch")},
		},
		{
			Name: "endtoend", Pkg: "./e2e", Pattern: "BenchmarkEndToEnd",
			Benchtime: "100000x", QuickBenchtime: "20000x", Count: 2, QuickCount: 1, Timeout: e2eTimeout,
			Figures: []Figure{endToEndFigure("always"), endToEndFigure("batch")},
		},
		{
			Name: "idle", Pkg: "./e2e", Pattern: "BenchmarkIdleSubmitToStart",
			Benchtime: "1000x", QuickBenchtime: "300x", Count: 3, QuickCount: 1, Timeout: e2eTimeout,
			Figures: []Figure{
				idleFigure("p50", "p50-µs", Bar{}),
				idleFigure("p99", "p99-µs", maximum(1, "≤ 1 ms")),
			},
		},
		{
			Name: "cpupool", Pkg: "./internal/workers", Pattern: "BenchmarkCPUPool",
			QuickBenchtime: "300ms", Count: 3, QuickCount: 1, Benchmem: true, Timeout: inProcessTimeout,
			Figures: []Figure{
				{
					Area: "CPU pool", What: "CPU pool no-op round trip, 2 workers, one caller (p50)",
					Bench: "BenchmarkCPUPoolRoundTrip", Value: metric("p50-µs", 1, "µs"),
					Bar:  maximum(50, "≤ 50 µs"),
					Also: []Also{{"p99", metric("p99-µs", 1, "µs")}},
				},
				{
					Area: "CPU pool", What: "CPU pool throughput, 2 workers",
					Bench: "BenchmarkCPUPoolThroughput", Value: metric("jobs/s", 1, "jobs/s"),
					Bar: minimum(30000, "≥ 30,000 jobs/s"),
				},
			},
		},
		{
			Name: "fanout", Pkg: "./e2e", Pattern: "BenchmarkHookFanout",
			Benchtime: "20000x", QuickBenchtime: "2000x", Count: 1, QuickCount: 1, Timeout: e2eTimeout,
			Figures: []Figure{{
				Area: "Hook fan-out", What: "Hook fan-out: 100 Subscribe streams following every hook event while no-op tasks run (`--sync batch`); every stream must get the identical gap-free log",
				Bench: "BenchmarkHookFanout", Value: metric("events/s", 1, "events/s"),
				Bar:  checked("zero missing"),
				Also: []Also{{"tasks meanwhile", metric("tasks/s", 1, "tasks/s")}},
			}},
		},
		{
			Name: "hub", Pkg: "./internal/hooks", Pattern: "BenchmarkFanout/followers=100$",
			Benchtime: "200000x", QuickBenchtime: "50000x", Count: 3, QuickCount: 1, Benchmem: true, Timeout: inProcessTimeout,
			Figures: []Figure{{
				What:  "The hook hub alone (no gRPC): events delivered to 100 followers that keep up, published in commits of 64",
				Bench: "BenchmarkFanout/followers=100", Value: metric("events/s", 1, "events/s"),
			}},
		},
		{
			Name: "hub-tasks", Pkg: "./internal/hooks", Pattern: "BenchmarkTaskFollowers",
			Benchtime: "200000x", QuickBenchtime: "50000x", Count: 3, QuickCount: 1, Benchmem: true, Timeout: inProcessTimeout,
			Figures: []Figure{{
				What:  "The hook hub alone: events published per second while 1,000 followers each wait for one task of their own (clients waiting for their tasks)",
				Bench: "BenchmarkTaskFollowers", Value: metric("events/s", 1, "events/s"),
			}},
		},
		{
			Name: "ui-tasklist", Pkg: "./e2e", Pattern: "BenchmarkUITaskList",
			Benchtime: "500x", QuickBenchtime: "100x", Count: 3, QuickCount: 1, Timeout: e2eTimeout,
			Figures: []Figure{{
				Area: "Web UI", What: "Web UI task list (newest 50 of 100,000 stored tasks, rendered as HTML) beside gRPC ListTasks for the same page",
				Bench: "BenchmarkUITaskList", Value: metric("pages/s", 1, "pages/s"),
				Also: []Also{
					{"ListTasks", metric("listtasks/s", 1, "pages/s")},
					{"page / ListTasks", ratio("pages/s", "listtasks/s")},
				},
			}},
		},
		{
			Name: "ui-events", Pkg: "./e2e", Pattern: "BenchmarkUIEventStream",
			Benchtime: "5000x", QuickBenchtime: "1000x", Count: 3, QuickCount: 1, Timeout: e2eTimeout,
			Figures: []Figure{{
				Area: "Web UI", What: "Web UI live updates: task events delivered to 50 open pages' event streams (Server-Sent Events) together, while no-op tasks run; every stream must get the identical sequence",
				Bench: "BenchmarkUIEventStream", Value: metric("events/s", 1, "events/s"),
				Bar: checked("zero missing"),
			}},
		},
		{
			Name: "memory", Pkg: "./e2e", Pattern: "BenchmarkDaemonMemory",
			Benchtime: "100000x", QuickBenchtime: "100000x", Count: 2, QuickCount: 1, Timeout: e2eTimeout,
			Figures: []Figure{
				{
					Area: "Memory", What: "aurad RSS, idle (just started, settled)",
					Bench: "BenchmarkDaemonMemory", Value: metric("idle-rss-MB", 1, "MB"),
					Bar: maximum(40, "≤ 40 MB"),
				},
				{
					Area: "Memory", What: "aurad RSS with 100,000 tasks queued behind one running (`--max-concurrent 1`)",
					Bench: "BenchmarkDaemonMemory", Value: metric("queued-rss-MB", 1, "MB"),
					Bar:  maximum(200, "≤ 200 MB"),
					Also: []Also{{"live heap", metric("queued-heap-MB", 1, "MB")}},
				},
			},
		},
		{
			Name: "goroutines", Pkg: "./e2e", Pattern: "BenchmarkGoroutinesFlat",
			Benchtime: "100000x", QuickBenchtime: "20000x", Count: 1, QuickCount: 1, Timeout: e2eTimeout,
			Figures: []Figure{{
				Area: "Memory", What: "aurad goroutines after a no-op task run, minus before (idle both times)",
				Bench: "BenchmarkGoroutinesFlat", Value: increase("goroutines-after", "goroutines-before", "goroutines"),
				Bar: maximum(goroutineSlack, fmt.Sprintf("≤ %d (flat)", goroutineSlack)),
				Also: []Also{
					{"before", count("goroutines-before", "")},
					{"after", count("goroutines-after", "")},
				},
			}},
		},
		{
			Name: "engine", Pkg: "./internal/engine", Pattern: "BenchmarkNoopSteps",
			Benchtime: "2000x", QuickBenchtime: "500x", Count: 3, QuickCount: 1, Benchmem: true, Timeout: inProcessTimeout,
			Figures: []Figure{
				engineFigure("noop100", "Engine: 100-step no-op task, steps as a list", maximum(2, "≤ 2 µs/step")),
				engineFigure("noop100_chain", "Engine: 100-step no-op task, a dependency chain", Bar{}),
				engineFigure("noop100_wide", "Engine: 100 independent no-op steps", Bar{}),
			},
		},
		{
			Name: "cluster-slot", Pkg: "./internal/cluster", Pattern: "BenchmarkClusterSlot",
			Benchtime: "500x", QuickBenchtime: "100x", Count: 3, QuickCount: 1, Timeout: inProcessTimeout,
			Figures: []Figure{
				clusterSlotFigure("limit=64", "Cluster-scope slot acquire+release, 2 nodes x 4 tasks, 3 etcd members, never refused"),
				clusterSlotFigure("limit=1", "Cluster-scope slot acquire+release, 2 nodes x 4 tasks, 3 etcd members, limit 1 (waiters in line)"),
				{
					What:  "etcd put+delete of a key on the lease, same tasks and members: the floor of the cluster-slot figures",
					Bench: "BenchmarkClusterSlot/etcd-put-delete", Value: metric("cycles/s", 1, "cycles/s"),
					Also: []Also{{"put p50", metric("p50-ms", 1, "ms")}},
				},
			},
		},
		{
			Name: "cluster-endtoend", Pkg: "./e2e", Pattern: "BenchmarkClusterEndToEnd",
			Benchtime: "20000x", QuickBenchtime: "3000x", Count: 3, QuickCount: 1, Timeout: e2eTimeout,
			Figures: []Figure{{
				Area: "Cluster", What: "End to end: no-op tasks/s with three aurad nodes on this machine (9 SubmitStreams spread over them) / one node (9 SubmitStreams to it, measured before and after the three), 3 etcd members, `--sync always`",
				Bench: "BenchmarkClusterEndToEnd/three-vs-one", Value: ratio("three-tasks/s", "one-tasks/s"),
				Also: []Also{
					{"three nodes", metric("three-tasks/s", 1, "tasks/s")},
					{"one node", metric("one-tasks/s", 1, "tasks/s")},
				},
			}},
		},
		{
			Name: "interrupts", Pkg: "./e2e", Pattern: "BenchmarkInterruptPolling",
			Benchtime: "10x", QuickBenchtime: "3x", Count: 3, QuickCount: 1, Timeout: e2eTimeout,
			Figures: []Figure{
				{
					Area: "Interrupts", What: "aurad CPU with 100 interrupt rules polled every 2s on each of 50 busy phones (2,500 checks/s, none firing)",
					Bench: "BenchmarkInterruptPolling/rules=100", Value: metric("cpu-ms/s", 1, "ms CPU/s"),
					Also: []Also{{"checks", metric("checks/s", 1, "checks/s")}, {"per check", metric("cpu-µs/check", 1, "µs CPU")}},
				},
				{
					Area: "Interrupts", What: "aurad CPU with the same 50 busy phones and no rules",
					Bench: "BenchmarkInterruptPolling/rules=0", Value: metric("cpu-ms/s", 1, "ms CPU/s"),
				},
			},
		},
	}
}

func clusterSlotFigure(sub, what string) Figure {
	return Figure{
		Area: "Cluster", What: what, Bench: "BenchmarkClusterSlot/" + sub, Value: metric("cycles/s", 1, "cycles/s"),
		Also: []Also{{"grant p50", metric("p50-ms", 1, "ms")}, {"p99", metric("p99-ms", 1, "ms")}},
	}
}

// goroutineSlack is how many goroutines more than before still count as
// flat: the runtime and gRPC keep a few transient ones (a finishing
// connection, a timer) that are not a leak.
const goroutineSlack = 5

func managerFigure(sub, what string) Figure {
	return Figure{
		Area: "Manager throughput", What: what, Bench: "BenchmarkManagerNoopTasks/" + sub,
		Value: metric("tasks/s", 1, "tasks/s"), Bar: minimum(500000, "≥ 500,000 tasks/s"),
	}
}

func streamFigure(sync string, streams int) Figure {
	bar := minimum(20000, "≥ 20,000 acks/s")
	if sync == "batch" {
		bar = minimum(100000, "≥ 100,000 acks/s")
	}
	return Figure{
		Area: "Acknowledged submissions", What: fmt.Sprintf("SubmitStream: acknowledged submissions, `--sync %s`, %s, tasks running", sync, plural(streams, "stream")),
		Bench: fmt.Sprintf("BenchmarkSubmitStream/sync=%s/streams=%d", sync, streams),
		Value: metric("acks/s", 1, "acks/s"), Bar: bar,
	}
}

func endToEndFigure(sync string) Figure {
	return Figure{
		Area: "End to end", What: "End to end: no-op tasks submitted over 8 SubmitStreams and run to completion, `--sync " + sync + "`",
		Bench: "BenchmarkEndToEnd/sync=" + sync, Value: metric("tasks/s", 1, "tasks/s"),
		Bar:  minimum(50000, "≥ 50,000 tasks/s"),
		Also: []Also{{"submissions alone", metric("submits/s", 1, "acks/s")}},
	}
}

func lifecycleFigure(sync string) Figure {
	return Figure{
		What:  "Ceiling of end to end: the SQLite store alone recording whole no-op task lifecycles as aurad writes them (3 row writes, 8 events), 1,024 tasks at once, `--sync " + sync + "`",
		Bench: "BenchmarkTaskLifecycle/sync=" + sync + "/tasks=1024", Value: metric("tasks/s", 1, "tasks/s"),
	}
}

func idleFigure(p, m string, bar Bar) Figure {
	return Figure{
		Area: "End to end", What: "Idle aurad: submit-to-start (created_at → started_at), one task at a time, " + p,
		Bench: "BenchmarkIdleSubmitToStart", Value: metric(m, 1e-3, "ms"), Bar: bar,
	}
}

func engineFigure(sub, what string, bar Bar) Figure {
	return Figure{What: what, Bench: "BenchmarkNoopSteps/" + sub, Value: metric("µs/step", 1, "µs/step"), Bar: bar}
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
