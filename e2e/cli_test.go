package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/health/grpc_health_v1"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

func auractl(t *testing.T, d *daemon, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin.auractl, append([]string{"--addr", d.addr}, args...)...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("auractl %v: %v", args, err)
	}
	return string(out), 0
}

func TestAuractlSubmitWaitAndFollow(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	out, code := auractl(t, d, "submit", "demo/hello", "--input", "name=cli", "--wait")
	if code != 0 || !strings.Contains(out, "SUCCEEDED") || !strings.Contains(out, "hello, cli") {
		t.Fatalf("submit --wait: exit %d\n%s", code, out)
	}
	out, code = auractl(t, d, "submit", "demo/fail", "--follow")
	if code != 2 || !strings.Contains(out, "step.failed") || !strings.Contains(out, "explode") || !strings.Contains(out, "FAILED") {
		t.Fatalf("submit --follow of a failing task: exit %d (want 2)\n%s", code, out)
	}
	// --follow prints events as lines, the last being task.finished.
	lines := strings.Split(strings.TrimSpace(out), "\n")
	sawFinished := false
	for _, l := range lines {
		if strings.Contains(l, "task.finished") {
			sawFinished = true
		}
	}
	if !sawFinished {
		t.Fatalf("no task.finished line:\n%s", out)
	}
	out, code = auractl(t, d, "submit", "demo/slow", "--timeout", "1500ms", "--wait")
	if code != 3 || !strings.Contains(out, "TIMED_OUT") {
		t.Fatalf("timed-out task: exit %d (want 3)\n%s", code, out)
	}
}

func TestAuractlJSONOutput(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	out, code := auractl(t, d, "-o", "json", "submit", "e2e/quick", "--label", "team=qa")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	var resp struct {
		TaskID string `json:"taskId"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || resp.TaskID == "" {
		t.Fatalf("submit -o json: %v\n%s", err, out)
	}
	waitFor(t, "the task to finish", 20*time.Second, func() bool {
		out, _ := auractl(t, d, "-o", "json", "get", resp.TaskID)
		return strings.Contains(out, "TASK_STATUS_SUCCEEDED")
	})
	for _, args := range [][]string{
		{"get", resp.TaskID}, {"list", "-l", "team=qa"}, {"plans"}, {"plans", "demo"}, {"stats"}, {"cancel", resp.TaskID},
	} {
		out, code := auractl(t, d, append([]string{"-o", "json"}, args...)...)
		var v map[string]any
		if code != 0 || json.Unmarshal([]byte(out), &v) != nil {
			t.Fatalf("auractl -o json %v: exit %d, not a JSON object:\n%s", args, code, out)
		}
	}
	out, _ = auractl(t, d, "-o", "json", "list", "-l", "team=qa")
	if !strings.Contains(out, resp.TaskID) {
		t.Fatalf("list -l team=qa misses %s:\n%s", resp.TaskID, out)
	}
	out, code = auractl(t, d, "-o", "yaml", "get", resp.TaskID)
	if code != 0 || !strings.Contains(out, "status: TASK_STATUS_SUCCEEDED") {
		t.Fatalf("-o yaml: exit %d\n%s", code, out)
	}
	out, code = auractl(t, d, "get", "no-such-task")
	if code != 1 || !strings.Contains(out, "NotFound") {
		t.Fatalf("get unknown: exit %d\n%s", code, out)
	}
}

// What grpcurl needs: reflection lists both services; health answers.
func TestReflectionAndHealth(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	ctx := ctxT(t, 30*time.Second)
	stream, err := rpb.NewServerReflectionClient(d.client.Conn()).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.Name)
	}
	for _, want := range []string{"aura.v1.ExecutionService", "aura.v1.HookService", "grpc.health.v1.Health"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Fatalf("reflection lists %v, missing %s", names, want)
		}
	}
	h, err := grpc_health_v1.NewHealthClient(d.client.Conn()).Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: "aura.v1.ExecutionService"})
	if err != nil || h.Status != grpc_health_v1.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", h, err)
	}
}

func TestAuractlLogs(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	ctx := ctxT(t, time.Minute)
	id := d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/chatty"})
	out, code := auractl(t, d, "logs", id, "--prefix")
	if code != 0 {
		t.Fatalf("logs: exit %d\n%s", code, out)
	}
	// Each stream keeps its own order (the two pipes are independent, so
	// they may interleave either way).
	var stdout, stderr []string
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if l, ok := strings.CutPrefix(line, "talk stdout| "); ok {
			stdout = append(stdout, l)
		} else if l, ok := strings.CutPrefix(line, "talk stderr| "); ok {
			stderr = append(stderr, l)
		} else {
			t.Fatalf("unexpected line %q", line)
		}
	}
	var want []string
	for i := 1; i <= 300; i++ {
		want = append(want, "line "+strconv.Itoa(i))
	}
	want = append(want, "no newline at the end")
	if strings.Join(stdout, "|") != strings.Join(want, "|") || strings.Join(stderr, "|") != "to stderr" {
		t.Fatalf("stdout %d lines, stderr %v:\n%s", len(stdout), stderr, out)
	}
	plain, _ := auractl(t, d, "logs", id)
	// Unprefixed: the same lines (the streams may interleave anywhere).
	if !strings.HasPrefix(plain, "line 1\n") && !strings.HasPrefix(plain, "to stderr\n") ||
		!strings.Contains(plain, "\nline 300\n") || strings.Contains(plain, "talk stdout") {
		t.Fatalf("logs without --prefix:\n%.200s", plain)
	}
}

// Stream without a task id follows every new event; auractl watch and
// hooks tail print them until interrupted.
func TestFollowEverything(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	ctx := ctxT(t, time.Minute)
	before := d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"}))

	watch := startFollower(t, d, "watch")
	tail := startFollower(t, d, "hooks", "tail", "--from", "0", "--hook", "after_task_run")
	// The live watcher must be subscribed before the next task starts.
	waitFor(t, "both followers to connect", 10*time.Second, func() bool {
		s, err := d.client.Exec.GetStats(ctx, &aurav1.GetStatsRequest{})
		return err == nil && s.HookSubscribers >= 2
	})
	after := d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"}))
	w := watch.until(t, "task.finished  SUCCEEDED  task="+after.Id)
	tl := tail.until(t, after.Id)
	if strings.Contains(w, before.Id) || !strings.Contains(w, "task.queued") {
		t.Fatalf("watch (live from now) printed:\n%s", w)
	}
	if !strings.Contains(tl, before.Id) || strings.Contains(tl, "before_task_run") {
		t.Fatalf("hooks tail --from 0 --hook after_task_run printed:\n%s", tl)
	}
}

// follower is an auractl process whose output lines are collected.
type follower struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
}

func startFollower(t *testing.T, d *daemon, args ...string) *follower {
	t.Helper()
	f := &follower{cmd: exec.Command(bin.auractl, append([]string{"--addr", d.addr}, args...)...)}
	out, err := f.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f.mu.Lock()
			f.lines = append(f.lines, sc.Text())
			f.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = f.cmd.Process.Signal(syscall.SIGINT)
		_ = f.cmd.Wait()
	})
	return f
}

// until waits for a line containing want and returns everything so far.
func (f *follower) until(t *testing.T, want string) string {
	t.Helper()
	var all string
	waitFor(t, fmt.Sprintf("%v to print %q", f.cmd.Args[3:], want), 10*time.Second, func() bool {
		f.mu.Lock()
		all = strings.Join(f.lines, "\n")
		f.mu.Unlock()
		return strings.Contains(all, want)
	})
	return all
}
