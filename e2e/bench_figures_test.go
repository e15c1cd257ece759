package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// The benchmarks in this file produce the benchmark figures that need a
// real aurad: unary Submit against the gRPC floor, memory and goroutines.
// bench/report runs them and writes BENCHMARKS.md.

// ghzConcurrency is the number of ghz workers: enough callers to keep the
// daemon's two cores busy: BENCHMARKS.md states the Submit/Check ratio
// at `ghz -c 50`.
const ghzConcurrency = 50

// BenchmarkUnarySubmitVsCheck measures unary Submit with ghz against a
// durable aurad (`--sync always`, the tasks running meanwhile) and, on the
// same daemon in the same run, grpc.health.v1.Health/Check: the floor of a
// unary call here. b.N is the number of requests of each ghz run. The runs
// alternate Check, Submit, Check (the daemon idle before each) so that drift
// in the machine's load hits both sides; the figure is the ratio of Submit's
// requests/s to the mean of the two Checks. AURA_GHZ names the ghz binary.
func BenchmarkUnarySubmitVsCheck(b *testing.B) {
	ghz := os.Getenv("AURA_GHZ")
	if ghz == "" {
		b.Fatal("AURA_GHZ is unset: it must name a ghz binary, e.g. " +
			"`GOBIN=$PWD/bin go install github.com/bojand/ghz/cmd/ghz@v0.93.0` then AURA_GHZ=$PWD/bin/ghz (make bench does this)")
	}
	if fi, err := os.Stat(ghz); err != nil || fi.IsDir() {
		b.Fatalf("AURA_GHZ=%s is not a ghz binary: %v", ghz, err)
	}
	d := startDaemonB(b, "--sync", "always", "--max-concurrent", "64")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	n := max(b.N, ghzConcurrency)
	b.ResetTimer()
	check1 := runGhz(b, ghz, d.addr, "grpc.health.v1.Health/Check", `{}`, n)
	submit := runGhz(b, ghz, d.addr, "aura.v1.ExecutionService/Submit", `{"task":"e2e/quick"}`, n)
	waitIdleB(b, ctx, d, int64(n))
	check2 := runGhz(b, ghz, d.addr, "grpc.health.v1.Health/Check", `{}`, n)
	b.StopTimer()
	check := (check1 + check2) / 2
	b.ReportMetric(check, "check-rps")
	b.ReportMetric(submit, "submit-rps")
	b.ReportMetric(submit/check, "ratio")
}

// ghzReport is the part of ghz's JSON report the benchmark reads.
type ghzReport struct {
	Count          uint64         `json:"count"`
	Rps            float64        `json:"rps"`
	ErrorDist      map[string]int `json:"errorDistribution"`
	StatusCodeDist map[string]int `json:"statusCodeDistribution"`
}

// runGhz runs n unary calls of method with ghz and returns requests/s; any
// call that did not return OK fails the benchmark.
func runGhz(b *testing.B, ghz, addr, method, data string, n int) float64 {
	b.Helper()
	cmd := exec.Command(ghz, "--insecure", "--call", method, "-d", data,
		"-c", strconv.Itoa(min(ghzConcurrency, n)), "-n", strconv.Itoa(n), "--format", "json", addr)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("ghz %s: %v\n%s", method, err, stderr.String())
	}
	var r ghzReport
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		b.Fatalf("ghz %s: reading its JSON report: %v", method, err)
	}
	if len(r.ErrorDist) > 0 || r.StatusCodeDist["OK"] != n {
		b.Fatalf("ghz %s: %d of %d calls OK; status codes %v, errors %v", method, r.StatusCodeDist["OK"], n, r.StatusCodeDist, r.ErrorDist)
	}
	return r.Rps
}

// waitIdleB waits until the daemon has finished `finished` tasks in all and
// holds none queued or running.
func waitIdleB(b *testing.B, ctx context.Context, d *daemon, finished int64) {
	b.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, err := d.client.Exec.GetStats(ctx, &aurav1.GetStatsRequest{})
		if err != nil {
			b.Fatal(err)
		}
		c := st.CountsByStatus
		done := c["TASK_STATUS_SUCCEEDED"] + c["TASK_STATUS_FAILED"] + c["TASK_STATUS_CANCELLED"] + c["TASK_STATUS_TIMED_OUT"]
		if done >= finished && st.Global.GetInUse() == 0 && st.Global.GetWaiting() == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("the daemon did not become idle: %d of %d tasks finished, global %v", done, finished, st.Global)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// submitStream submits n copies of req over one pipelined SubmitStream and
// returns once every one is acknowledged. It reports failure as an error,
// so benchmarks can run several streams from goroutines of their own.
func submitStream(ctx context.Context, d *daemon, req *aurav1.SubmitRequest, n int) error {
	stream, err := d.client.Exec.SubmitStream(ctx)
	if err != nil {
		return err
	}
	sent := make(chan error, 1)
	go func() {
		for range n {
			if err := stream.Send(req); err != nil {
				sent <- err
				return
			}
		}
		sent <- stream.CloseSend()
	}()
	for i := range n {
		r, err := stream.Recv()
		if err != nil || r.Error != nil {
			return fmt.Errorf("submission %d of %d: %v %v", i+1, n, err, r.GetError())
		}
	}
	return <-sent
}

const mib = 1 << 20

// BenchmarkDaemonMemory reports aurad's resident memory idle, just started
// (idle-rss-MB), and with b.N tasks queued behind one running task under
// `--max-concurrent 1` (queued-rss-MB), plus the live heap then
// (queued-heap-MB: the Go heap after a forced collection, from /metrics).
// RSS is VmRSS of the aurad process (CPU workers are separate processes),
// read once it has settled; MB here is 2^20 bytes.
func BenchmarkDaemonMemory(b *testing.B) {
	d := startDaemonB(b, "--max-concurrent", "1", "--admin-listen", "127.0.0.1:0")
	base := adminBaseB(b, d)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	pid := d.cmd.Process.Pid
	idle := settledRSS(b, pid)

	// The blocking task holds the only slot for longer than the benchmark
	// can take (the daemon is killed at the end, so it never finishes).
	inputs, err := structpb.NewStruct(map[string]any{"ms": 240_000})
	if err != nil {
		b.Fatal(err)
	}
	hold := d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/hold", Inputs: inputs})
	waitStatusB(b, ctx, d, hold, aurav1.TaskStatus_TASK_STATUS_RUNNING)
	b.ResetTimer()
	if err := submitStream(ctx, d, &aurav1.SubmitRequest{Task: "e2e/quick"}, b.N); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	st, err := d.client.Exec.GetStats(ctx, &aurav1.GetStatsRequest{})
	if err != nil {
		b.Fatal(err)
	}
	if q := st.CountsByStatus["TASK_STATUS_QUEUED"]; q != int64(b.N) {
		b.Fatalf("%d tasks queued, want %d", q, b.N)
	}
	queued := settledRSS(b, pid)
	// A heap profile with gc=1 runs a collection first, so the heap figure
	// that follows is live memory, not garbage awaiting collection.
	if code, body := httpGet(b, base+"/debug/pprof/heap?gc=1"); code != http.StatusOK {
		b.Fatalf("heap profile: %d %s", code, body)
	}
	_, metrics := httpGet(b, base+"/metrics")
	heap, ok := metricValue(metrics, "go_memstats_heap_alloc_bytes")
	if !ok {
		b.Fatal("/metrics has no go_memstats_heap_alloc_bytes")
	}
	d.kill() // 100,000 queued tasks need not be drained
	b.ReportMetric(float64(idle)/mib, "idle-rss-MB")
	b.ReportMetric(float64(queued)/mib, "queued-rss-MB")
	b.ReportMetric(heap/mib, "queued-heap-MB")
}

// BenchmarkGoroutinesFlat runs b.N no-op tasks through a warmed-up aurad
// and reports its goroutine count (go_goroutines on /metrics) before and
// after, once the daemon is idle again. Like TestGoroutinesReturnToBaseline
// it gives the count up to 20 s to come back down; what it reports is the
// count it last saw.
func BenchmarkGoroutinesFlat(b *testing.B) {
	d := startDaemonB(b, "--max-concurrent", "64", "--admin-listen", "127.0.0.1:0")
	base := adminBaseB(b, d)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// Warm up: the first tasks start the pools' and store's long-lived goroutines.
	for _, task := range []string{"demo/hello", "e2e/quick"} {
		d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: task}))
	}
	waitIdleB(b, ctx, d, 2)
	before := settledGoroutines(b, base)
	b.ResetTimer()
	if err := submitStream(ctx, d, &aurav1.SubmitRequest{Task: "e2e/quick"}, b.N); err != nil {
		b.Fatal(err)
	}
	waitIdleB(b, ctx, d, int64(b.N)+2)
	b.StopTimer()
	after := goroutinesB(b, base)
	for deadline := time.Now().Add(20 * time.Second); after > before && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		after = goroutinesB(b, base)
	}
	b.ReportMetric(float64(before), "goroutines-before")
	b.ReportMetric(float64(after), "goroutines-after")
}

// waitStatusB polls a task until it reaches status.
func waitStatusB(b *testing.B, ctx context.Context, d *daemon, id string, status aurav1.TaskStatus) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		task, err := d.client.Get(ctx, id)
		if err != nil {
			b.Fatal(err)
		}
		if task.Status == status {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("task %s is %s after 30s, want %s", id, task.Status, status)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// adminBaseB returns the http:// base of the daemon's admin endpoint.
func adminBaseB(b *testing.B, d *daemon) string {
	b.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := adminRE.FindStringSubmatch(d.logs()); m != nil {
			return "http://" + m[1]
		}
		if time.Now().After(deadline) {
			b.Fatalf("the admin endpoint did not start within 10s:\n%s", d.logs())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func goroutinesB(b *testing.B, base string) int {
	b.Helper()
	code, body := httpGet(b, base+"/metrics")
	v, ok := metricValue(body, "go_goroutines")
	if code != http.StatusOK || !ok {
		b.Fatalf("/metrics: %d, go_goroutines found: %v", code, ok)
	}
	return int(v)
}

// settledGoroutines returns the daemon's goroutine count once five
// readings 100 ms apart agree: the streams that just ended (the warm-up's
// Watch calls) take a moment to unwind, and counting them would flatter
// the figure after.
func settledGoroutines(b *testing.B, base string) int {
	b.Helper()
	n, same := goroutinesB(b, base), 1
	for deadline := time.Now().Add(10 * time.Second); same < 5 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		if m := goroutinesB(b, base); m == n {
			same++
		} else {
			n, same = m, 1
		}
	}
	return n
}

// settledRSS samples pid's VmRSS every 200 ms and returns it once the last
// 2 s of samples lie within 1 % of each other (the runtime returns freed
// memory to the system gradually).
func settledRSS(b *testing.B, pid int) int64 {
	b.Helper()
	const window = 10
	var samples []int64
	deadline := time.Now().Add(60 * time.Second)
	for {
		rss, err := vmRSS(pid)
		if err != nil {
			b.Fatal(err)
		}
		samples = append(samples, rss)
		if len(samples) >= window {
			last := samples[len(samples)-window:]
			lo, hi := last[0], last[0]
			for _, s := range last {
				lo, hi = min(lo, s), max(hi, s)
			}
			if hi-lo <= hi/100 {
				return rss
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("VmRSS of aurad did not settle within 60s; last samples %v", samples[max(0, len(samples)-window):])
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// vmRSS reads a process's resident set size in bytes from /proc.
func vmRSS(pid int) (int64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest) // "123456 kB"
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("/proc/%d/status: unexpected VmRSS line %q", pid, line)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/status: %w", pid, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmRSS line", pid)
}
