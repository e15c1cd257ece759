package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/health/grpc_health_v1"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

var adminRE = regexp.MustCompile(`msg="admin endpoints serving" listen=(\S+)`)

func adminAddr(t *testing.T, d *daemon) string {
	t.Helper()
	var addr string
	waitFor(t, "the admin endpoint", 10*time.Second, func() bool {
		m := adminRE.FindStringSubmatch(d.logs())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	})
	return "http://" + addr
}

func httpGet(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// metricValue finds one sample in the text exposition format.
func metricValue(body, name string, labels ...string) (float64, bool) {
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		return v, err == nil
	}
	return 0, false
}

func TestMetricsMoveWhenTasksRun(t *testing.T) {
	d := startDaemon(t, daemonOpts{args: []string{"--admin-listen", "127.0.0.1:0"}})
	base := adminAddr(t, d)
	ctx := ctxT(t, time.Minute)
	_, before := httpGet(t, base+"/metrics")
	if v, ok := metricValue(before, "aura_tasks_finished_total", `task="demo/hello"`); ok && v != 0 {
		t.Fatalf("finished before anything ran: %v", v)
	}
	for range 3 {
		d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: "demo/hello"}))
	}
	d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: "demo/fail"}))
	// Local after hooks (metrics among them) run just after the terminal
	// status is recorded, so the last count may trail Wait by a moment.
	var after string
	waitFor(t, "the failed task to be counted", 10*time.Second, func() bool {
		code, body := httpGet(t, base+"/metrics")
		after = body
		v, _ := metricValue(body, "aura_tasks_finished_total", `task="demo/fail"`, `status="failed"`)
		return code == 200 && v == 1
	})
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"aura_tasks_submitted_total", []string{`task="demo/hello"`}, 3},
		{"aura_tasks_finished_total", []string{`task="demo/hello"`, `status="succeeded"`}, 3},
		{"aura_tasks_finished_total", []string{`task="demo/fail"`, `status="failed"`}, 1},
		{"aura_task_run_seconds_count", []string{`plan="demo"`, `status="succeeded"`}, 3},
		{"aura_admission_global", []string{`what="limit"`}, 32},
		{"grpc_server_handled_total", []string{`grpc_method="Submit"`, `grpc_code="OK"`}, 4},
	}
	for _, c := range checks {
		if v, ok := metricValue(after, c.name, c.labels...); !ok || v != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, v, ok, c.want)
		}
	}
	if v, ok := metricValue(after, "aura_store_commit_ops_count"); !ok || v < 1 {
		t.Errorf("no store commits observed")
	}
	if strings.Contains(after, "task_id") {
		t.Errorf("a metric carries a task id label")
	}
}

func TestReadinessFlipsWhileDraining(t *testing.T) {
	d := startDaemon(t, daemonOpts{args: []string{"--admin-listen", "127.0.0.1:0", "--shutdown-grace", "20s"}})
	base := adminAddr(t, d)
	ctx := ctxT(t, time.Minute)
	if code, _ := httpGet(t, base+"/readyz"); code != 200 {
		t.Fatalf("/readyz before drain: %d", code)
	}
	if code, _ := httpGet(t, base+"/healthz"); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
	id := d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/sleeper"})
	waitFor(t, "the sleeper to run", 20*time.Second, func() bool {
		task, _ := d.client.Get(ctx, id)
		return task.GetStatus() == aurav1.TaskStatus_TASK_STATUS_RUNNING
	})
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "/readyz to report draining", 10*time.Second, func() bool {
		code, body := httpGet(t, base+"/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "draining")
	})
	h, err := grpc_health_v1.NewHealthClient(d.client.Conn()).Check(ctx, &grpc_health_v1.HealthCheckRequest{})
	if err != nil || h.Status != grpc_health_v1.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("gRPC health while draining: %v %v", h, err)
	}
	if _, err := d.client.Cancel(ctx, id, "end the test"); err != nil {
		t.Fatal(err)
	}
}

// goroutines reads the daemon's goroutine count from pprof.
func goroutines(t *testing.T, base string) int {
	t.Helper()
	_, body := httpGet(t, base+"/debug/pprof/goroutine?debug=1")
	first, _, _ := strings.Cut(body, "\n")
	var n int
	if _, err := fmt.Sscanf(first, "goroutine profile: total %d", &n); err != nil {
		t.Fatalf("goroutine profile header %q: %v", first, err)
	}
	return n
}

// Running many tasks, streams and subscriptions leaves no goroutines
// behind: the count returns to where it started.
func TestGoroutinesReturnToBaseline(t *testing.T) {
	d := startDaemon(t, daemonOpts{args: []string{"--admin-listen", "127.0.0.1:0"}})
	base := adminAddr(t, d)
	ctx := ctxT(t, 2*time.Minute)
	// Warm up: the first task starts the pools' and store's long-lived goroutines.
	d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: "demo/hello"}))
	before := goroutines(t, base)

	stream, err := d.client.Exec.SubmitStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	go func() {
		for range n {
			if stream.Send(&aurav1.SubmitRequest{Task: "e2e/quick"}) != nil {
				return
			}
		}
		stream.CloseSend()
	}()
	var last string
	for range n {
		r, err := stream.Recv()
		if err != nil || r.Error != nil {
			t.Fatalf("submit: %v %v", err, r.GetError())
		}
		last = r.TaskId
	}
	for _, task := range []string{"demo/hello", "demo/fail", "demo/count", "e2e/chatty"} {
		d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: task}))
	}
	d.wait(ctx, last)
	after := 0
	waitFor(t, "the goroutine count to return to its baseline", 20*time.Second, func() bool {
		after = goroutines(t, base)
		return after <= before
	})
	t.Logf("goroutines: %d before, %d after %d tasks", before, after, n+4)
}

// When the store cannot make a commit durable (here: its write-ahead log
// was removed under it, so the sync after the commit fails), the submitter
// gets an error, later submissions are refused too, and /readyz says why,
// so an orchestrator stops sending traffic.
func TestReadinessReportsAStoreThatCannotSync(t *testing.T) {
	d := startDaemon(t, daemonOpts{args: []string{"--admin-listen", "127.0.0.1:0"}})
	base := adminAddr(t, d)
	ctx := ctxT(t, time.Minute)
	if code, body := httpGet(t, base+"/readyz"); code != 200 {
		t.Fatalf("/readyz before: %d %s", code, body)
	}
	if err := os.Remove(filepath.Join(d.data, "aura.db-wal")); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := d.client.Submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"}); err == nil {
			t.Fatal("a submission whose commit could not be synced was acknowledged")
		}
	}
	code, body := httpGet(t, base+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "store refuses writes") {
		t.Fatalf("/readyz after a failed sync: %d %q", code, body)
	}
}
