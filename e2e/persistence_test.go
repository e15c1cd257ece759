package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aura-dev/aura/client"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// Submissions from 8 clients race a SIGKILL of aurad. After a restart on
// the same data dir, every acknowledged submission exists and ends, and no
// task ran twice.
func TestKillNineLosesNoAcknowledgedSubmission(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	ctx := ctxT(t, 3*time.Minute)
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
	)
	killed := make(chan struct{})
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 250; i++ {
				resp, err := d.client.Submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick", Labels: map[string]string{"w": fmt.Sprint(w)}})
				if err != nil {
					return // the daemon died under us
				}
				mu.Lock()
				acked = append(acked, resp.TaskId)
				n := len(acked)
				mu.Unlock()
				if n == 800 {
					d.kill()
					close(killed)
				}
			}
		}()
	}
	wg.Wait()
	select {
	case <-killed:
	default:
		t.Fatalf("only %d submissions before the clients stopped; the kill never happened", len(acked))
	}
	t.Logf("%d submissions acknowledged before SIGKILL", len(acked))

	d2 := startDaemonIn(t, d.plans, d.data)
	seen := map[string]bool{}
	for _, id := range acked {
		if seen[id] {
			t.Fatalf("task id %s acknowledged twice", id)
		}
		seen[id] = true
		task := d2.wait(ctx, id)
		if task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED && task.Status != aurav1.TaskStatus_TASK_STATUS_INTERRUPTED {
			t.Fatalf("task %s ended %s (%v)", id, task.Status, task.Error)
		}
	}
	// The hook log shows at most one before_task_run per task.
	runs := hookCounts(t, d2, acked, "before_task_run")
	for id, n := range runs {
		if n > 1 {
			t.Fatalf("task %s ran %d times", id, n)
		}
	}
}

// hookCounts replays the hook log from the start until every task in ids
// has its after_task_run, and counts the given hook per task.
func hookCounts(t *testing.T, d *daemon, ids []string, hook string) map[string]int {
	t.Helper()
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	counts := map[string]int{}
	zero := uint64(0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	errDone := errors.New("done")
	err := d.client.Subscribe(ctx, client.SubscribeOptions{After: &zero}, func(ev *aurav1.HookEvent) error {
		id := ev.Task.GetId()
		if ev.Hook == hook {
			counts[id]++
		}
		if ev.Hook == "after_task_run" && want[id] {
			delete(want, id)
			if len(want) == 0 {
				return errDone
			}
		}
		return nil
	})
	if !errors.Is(err, errDone) {
		t.Fatalf("replaying hooks: %v (%d tasks never finished)", err, len(want))
	}
	return counts
}

func TestRestartInterruptsRunningAndResumesQueued(t *testing.T) {
	d := startDaemon(t, daemonOpts{args: []string{"--max-concurrent", "2"}})
	ctx := ctxT(t, 2*time.Minute)
	plain := d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/sleeper"})
	requeue := d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/requeue_hold", Inputs: mustStruct(t, map[string]any{"ms": 3000})})
	var queued []string
	for range 5 {
		queued = append(queued, d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"}))
	}
	waitFor(t, "both long tasks to run", 20*time.Second, func() bool {
		a, _ := d.client.Get(ctx, plain)
		b, _ := d.client.Get(ctx, requeue)
		return a.GetStatus() == aurav1.TaskStatus_TASK_STATUS_RUNNING && b.GetStatus() == aurav1.TaskStatus_TASK_STATUS_RUNNING
	})
	d.kill()

	d2 := startDaemonIn(t, d.plans, d.data, "--max-concurrent", "1")
	task := d2.wait(ctx, plain)
	if task.Status != aurav1.TaskStatus_TASK_STATUS_INTERRUPTED || task.Error.GetKind() != "interrupted" {
		t.Fatalf("running task after the crash: %s %v, want INTERRUPTED", task.Status, task.Error)
	}
	hooks := hookCounts(t, d2, []string{plain}, "after_task_failure")
	if hooks[plain] != 1 {
		t.Fatalf("interrupted task fired after_task_failure %d times, want 1", hooks[plain])
	}
	rq := d2.wait(ctx, requeue)
	if rq.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED || rq.Attempt != 2 {
		t.Fatalf("requeue task: %s attempt %d, want SUCCEEDED on attempt 2", rq.Status, rq.Attempt)
	}
	// The queued tasks ran after the restart, one at a time, in the order
	// they were submitted.
	var starts []time.Time
	for _, id := range queued {
		q := d2.wait(ctx, id)
		if q.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
			t.Fatalf("queued task %s: %s", id, q.Status)
		}
		starts = append(starts, q.StartedAt.AsTime())
	}
	if !slices.IsSortedFunc(starts, func(a, b time.Time) int { return a.Compare(b) }) {
		t.Fatalf("queued tasks did not start in arrival order: %v", starts)
	}
}

func TestGracefulShutdownLetsRunningFinishAndKeepsQueued(t *testing.T) {
	d := startDaemon(t, daemonOpts{args: []string{"--max-concurrent", "1"}})
	ctx := ctxT(t, 2*time.Minute)
	running := d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/hold", Inputs: mustStruct(t, map[string]any{"ms": 800})})
	waitFor(t, "the task to run", 20*time.Second, func() bool {
		a, _ := d.client.Get(ctx, running)
		return a.GetStatus() == aurav1.TaskStatus_TASK_STATUS_RUNNING
	})
	queued := d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"})
	d.stop()
	if d.exitErr != nil {
		t.Fatalf("aurad exited with %v after SIGTERM", d.exitErr)
	}
	d2 := startDaemonIn(t, d.plans, d.data)
	if task := d2.wait(ctx, running); task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("running task: %s, want SUCCEEDED within the shutdown grace", task.Status)
	}
	q := d2.wait(ctx, queued)
	if q.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("queued task: %s", q.Status)
	}
	if !strings.Contains(d.logs(), "draining") {
		t.Errorf("no drain logged")
	}
}

func TestShutdownGraceInterruptsStragglers(t *testing.T) {
	d := startDaemon(t, daemonOpts{args: []string{"--shutdown-grace", "300ms"}})
	ctx := ctxT(t, time.Minute)
	id := d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/sleeper"})
	waitFor(t, "the sleeper to run", 20*time.Second, func() bool {
		a, _ := d.client.Get(ctx, id)
		return a.GetStatus() == aurav1.TaskStatus_TASK_STATUS_RUNNING
	})
	d.stop()
	d2 := startDaemonIn(t, d.plans, d.data)
	if task := d2.wait(ctx, id); task.Status != aurav1.TaskStatus_TASK_STATUS_INTERRUPTED {
		t.Fatalf("straggler: %s %v, want INTERRUPTED", task.Status, task.Error)
	}
}

func TestIdempotencyKeyMakesOneTask(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	ctx := ctxT(t, time.Minute)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		ids   = map[string]int{}
		fresh int
	)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := d.client.Submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick", IdempotencyKey: "order-42"})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			ids[resp.TaskId]++
			if !resp.Deduplicated {
				fresh++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(ids) != 1 || fresh != 1 {
		t.Fatalf("20 concurrent submissions with one key gave ids %v and %d fresh ones; want one id, one fresh", ids, fresh)
	}
	var id string
	for k := range ids {
		id = k
	}
	d.wait(ctx, id)
	d.stop()
	d2 := startDaemonIn(t, d.plans, d.data)
	resp, err := d2.client.Submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick", IdempotencyKey: "order-42"})
	if err != nil || resp.TaskId != id || !resp.Deduplicated || resp.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("after restart: %v, %v; want the original %s, deduplicated, SUCCEEDED", resp, err, id)
	}
	list, _ := d2.client.Exec.ListTasks(ctx, &aurav1.ListTasksRequest{})
	if len(list.Tasks) != 1 {
		t.Fatalf("%d tasks exist, want 1", len(list.Tasks))
	}
}

// A plugin disconnects mid-run and resumes from its last sequence: it gets
// exactly the hook events it missed, in order.
func TestSubscriberResumesWithoutGapOrDuplicate(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	ctx := ctxT(t, 2*time.Minute)
	var first []uint64
	sctx, stop := context.WithCancel(ctx)
	zero := uint64(0)
	errStop := errors.New("stop")
	for range 5 {
		d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"})
	}
	err := d.client.Subscribe(sctx, client.SubscribeOptions{After: &zero}, func(ev *aurav1.HookEvent) error {
		first = append(first, ev.Sequence)
		if len(first) == 7 {
			return errStop
		}
		return nil
	})
	stop()
	if !errors.Is(err, errStop) {
		t.Fatal(err)
	}
	last := first[len(first)-1]
	var later []string
	for range 5 {
		later = append(later, d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"}))
	}
	for _, id := range later {
		d.wait(ctx, id)
	}
	// What the resumed subscriber gets...
	resumed := collectHooks(t, d, &last, later)
	// ...is exactly the tail of the full log after `last`.
	full := collectHooks(t, d, &zero, later)
	var tail []uint64
	for _, s := range full {
		if s > last {
			tail = append(tail, s)
		}
	}
	if !slices.Equal(resumed, tail) {
		t.Fatalf("resumed after %d:\n got %v\nwant %v", last, resumed, tail)
	}
	if !slices.Equal(full[:len(first)], first) {
		t.Fatalf("first subscription %v is not the head of the log %v", first, full[:len(first)])
	}
}

func collectHooks(t *testing.T, d *daemon, after *uint64, until []string) []uint64 {
	t.Helper()
	pending := map[string]bool{}
	for _, id := range until {
		pending[id] = true
	}
	var seqs []uint64
	errDone := errors.New("done")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := d.client.Subscribe(ctx, client.SubscribeOptions{After: after}, func(ev *aurav1.HookEvent) error {
		if len(seqs) > 0 && ev.Sequence <= seqs[len(seqs)-1] {
			return fmt.Errorf("sequence %d after %d", ev.Sequence, seqs[len(seqs)-1])
		}
		seqs = append(seqs, ev.Sequence)
		if ev.Hook == "after_task_run" {
			delete(pending, ev.Task.GetId())
			if len(pending) == 0 {
				return errDone
			}
		}
		return nil
	})
	if !errors.Is(err, errDone) {
		t.Fatalf("subscribe: %v", err)
	}
	return seqs
}

func TestBadDataDirIsAClearStartupError(t *testing.T) {
	plans := t.TempDir()
	copyDir(t, "../examples/plans/demo", filepath.Join(plans, "demo"))
	corrupt := t.TempDir()
	if err := os.WriteFile(filepath.Join(corrupt, "aura.db"), []byte(strings.Repeat("this is not a database ", 400)), 0o600); err != nil {
		t.Fatal(err)
	}
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"corrupt database": corrupt, "data dir is a file": notADir} {
		cmd := exec.Command(bin.aurad, "serve", "--plans", plans, "--data", data, "--listen", "127.0.0.1:0", "--cpu-workers", "-1")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("%s: aurad exit %v, want exit code 1\n%s", name, err, out)
		}
		if strings.Contains(string(out), "panic") || !strings.Contains(string(out), data) {
			t.Fatalf("%s: want a clear error naming %s, got:\n%s", name, data, out)
		}
	}
}

func TestCPULaneRunsInAWorkerProcess(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	ctx := ctxT(t, time.Minute)
	task := d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: "demo/count", Inputs: mustStruct(t, map[string]any{"text": "one two three"})}))
	if task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("count: %s %v", task.Status, task.Error)
	}
	res := task.GetResult().GetStructValue().AsMap()
	if res["words"] != float64(3) || res["sha256"] != "6899ee404683a14e8c2a03149860df25d67d34d9cd4dae7350cbe91e4b3976be" {
		t.Fatalf("result %v", res)
	}
	stats, err := d.client.Exec.GetStats(ctx, &aurav1.GetStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var cpu *aurav1.PoolStats
	for _, p := range stats.Pools {
		if p.Name == "cpu" {
			cpu = p
		}
	}
	if cpu == nil || cpu.Jobs < 2 || cpu.Live != 1 {
		t.Fatalf("cpu pool stats %v: want the two portable steps run there by the one live worker", cpu)
	}
}

// Children never see aurad's own environment beyond the allowlist: the
// daemon under test has AURA_E2E_SECRET set.
func TestChildrenGetACleanEnvironment(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	ctx := ctxT(t, time.Minute)
	task := d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/env"}))
	if task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("env task: %s %v", task.Status, task.Error)
	}
	res := task.GetResult().GetStructValue().AsMap()
	for _, lane := range []string{"io", "cpu"} {
		env, _ := res[lane].(string)
		if !strings.Contains(env, "PATH=") || strings.Contains(env, "AURA_E2E_SECRET") || strings.Contains(env, "GORACE") {
			t.Fatalf("%s lane child environment:\n%s", lane, env)
		}
	}
}

// The Go client's Subscribe outlives a daemon restart: it reconnects and
// resumes after the last sequence it delivered, so the plugin sees every
// task's after_task_run exactly once, in order.
func TestClientSubscribeResumesAcrossARestart(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	d := startDaemon(t, daemonOpts{args: []string{"--listen", addr}})
	ctx := ctxT(t, 2*time.Minute)
	c, err := client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var (
		mu  sync.Mutex
		got []*aurav1.HookEvent
	)
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }
	zero := uint64(0)
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- c.Subscribe(sctx, client.SubscribeOptions{After: &zero, Hooks: []string{"after_task_run"}}, func(ev *aurav1.HookEvent) error {
			mu.Lock()
			got = append(got, ev)
			mu.Unlock()
			return nil
		})
	}()
	var ids []string
	for range 3 {
		ids = append(ids, d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"})).Id)
	}
	waitFor(t, "the first three tasks' hooks", 20*time.Second, func() bool { return count() == 3 })
	d.stop()
	d2 := startDaemonIn(t, d.plans, d.data, "--listen", addr)
	for range 3 {
		ids = append(ids, d2.wait(ctx, d2.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"})).Id)
	}
	waitFor(t, "the resumed subscription to deliver the next three", 30*time.Second, func() bool { return count() >= 6 })
	stop()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 6 {
		t.Fatalf("got %d events, want 6", len(got))
	}
	for i, ev := range got {
		if ev.Task.GetId() != ids[i] || (i > 0 && ev.Sequence <= got[i-1].Sequence) {
			t.Fatalf("event %d: task %s seq %d; want task %s after seq %d", i, ev.Task.GetId(), ev.Sequence, ids[i], got[max(i-1, 0)].Sequence)
		}
	}
}
