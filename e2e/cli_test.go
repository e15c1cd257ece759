package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/health/grpc_health_v1"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/aura-dev/aura/client"
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
		{"get", resp.TaskID}, {"list", "-l", "team=qa"}, {"plans"}, {"plans", "demo"}, {"plans", "show", "demo/hello"}, {"stats"}, {"cancel", resp.TaskID},
	} {
		stdout, _, code := auractlSplit(t, d, append([]string{"-o", "json"}, args...)...)
		// Cancelling the finished task prints it and exits 7 (nothing to cancel).
		wantCode := 0
		if args[0] == "cancel" {
			wantCode = 7
		}
		var v map[string]any
		if code != wantCode || json.Unmarshal([]byte(stdout), &v) != nil {
			t.Fatalf("auractl -o json %v: exit %d, not a JSON object:\n%s", args, code, stdout)
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

// auractlSplit runs auractl and returns stdout and stderr apart, as a
// shell's $(...) would see them.
func auractlSplit(t *testing.T, d *daemon, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin.auractl, append([]string{"--addr", d.addr}, args...)...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return o.String(), e.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("auractl %v: %v", args, err)
	}
	return o.String(), e.String(), 0
}

// id=$(auractl submit -q ...) holds just the id, so the next command can
// use it.
func TestAuractlSubmitQuietPrintsOnlyTheID(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	id, stderr, code := auractlSplit(t, d, "submit", "-q", "demo/slow")
	id = strings.TrimSuffix(id, "\n")
	if code != 0 || strings.ContainsAny(id, " \t\n") || id == "" || stderr != "" {
		t.Fatalf("submit -q: exit %d, stdout %q, stderr %q", code, id, stderr)
	}
	// What plain submit prints, pasted whole, is explained.
	if out, code := auractl(t, d, "cancel", id, "QUEUED"); code != 1 || !strings.Contains(out, "auractl submit -q") {
		t.Fatalf("cancel ID QUEUED: exit %d\n%s", code, out)
	}
	if out, code := auractl(t, d, "cancel", id); code != 0 || !strings.Contains(out, "CANCELLED") {
		t.Fatalf("cancel $(submit -q): exit %d\n%s", code, out)
	}
	// With --wait: the id, then the exit code says how the task ended.
	stdout, _, code := auractlSplit(t, d, "submit", "-q", "--wait", "e2e/quick")
	if code != 0 || strings.Count(stdout, "\n") != 1 || strings.Contains(stdout, "SUCCEEDED") {
		t.Fatalf("submit -q --wait: exit %d, stdout %q", code, stdout)
	}
	if _, _, code := auractlSplit(t, d, "submit", "-q", "--wait", "demo/fail"); code != 2 {
		t.Fatalf("submit -q --wait of a failing task: exit %d, want 2", code)
	}
}

// --input values are read by the input's declared type: text for a string
// input stays text whatever it looks like.
func TestAuractlInputsFollowDeclaredTypes(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	for _, tc := range []struct {
		word, want string
	}{{"123", `"123"`}, {"true", `"true"`}, {"0042", `"0042"`}, {"[1,2]", `"[1,2]"`}, {"a=b", `"a=b"`}} {
		stdout, stderr, code := auractlSplit(t, d, "-o", "json", "submit", "e2e/echo", "--input", "n=5", "--input", "word="+tc.word, "--wait")
		if code != 0 {
			t.Fatalf("--input word=%s: exit %d\n%s%s", tc.word, code, stdout, stderr)
		}
		var task struct {
			Result map[string]json.RawMessage `json:"result"`
		}
		if err := json.Unmarshal([]byte(stdout), &task); err != nil {
			t.Fatalf("--input word=%s: %v\n%s", tc.word, err, stdout)
		}
		if got := string(task.Result["word"]); got != tc.want || string(task.Result["n"]) != "5" {
			t.Errorf("--input word=%s: result %s, want word %s and n 5", tc.word, stdout, tc.want)
		}
	}
	// Raw JSON goes through --inputs-json as written.
	if out, code := auractl(t, d, "submit", "e2e/echo", "--inputs-json", `{"n": 2, "word": "x"}`, "--wait"); code != 0 || !strings.Contains(out, `"word":"x"`) {
		t.Fatalf("--inputs-json: exit %d\n%s", code, out)
	}
	// A value that is not of the type, or an input the task does not
	// have, is refused before anything is submitted, saying why.
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--input", "n=three"}, []string{"n is an int input", "whole number"}},
		{[]string{"--input", "n=1", "--input", "wrod=x"}, []string{`no input "wrod"`, `did you mean "word"`, "n, word"}},
	} {
		out, code := auractl(t, d, append([]string{"submit", "e2e/echo"}, tc.args...)...)
		for _, w := range tc.want {
			if code != 1 || !strings.Contains(out, w) {
				t.Errorf("submit %v: exit %d, want 1 and %q:\n%s", tc.args, code, w, out)
			}
		}
	}
	if list, _ := d.client.Exec.ListTasks(ctxT(t, time.Minute), &aurav1.ListTasksRequest{Plan: "e2e"}); len(list.GetTasks()) != 6 {
		t.Errorf("%d tasks exist, want the 6 accepted ones", len(list.GetTasks()))
	}
}

// Ctrl-C while following stops auractl, not the task, and says so.
func TestAuractlCtrlCLeavesTheTaskRunning(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	ctx := ctxT(t, time.Minute)
	followers := func() int32 {
		s, err := d.client.Exec.GetStats(ctx, &aurav1.GetStatsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return s.HookSubscribers
	}
	for _, mode := range []string{"--follow", "--wait"} {
		t.Run(mode, func(t *testing.T) {
			waitFor(t, "no stream to be open", 10*time.Second, func() bool { return followers() == 0 })
			cmd := exec.Command(bin.auractl, "--addr", d.addr, "-o", "json", "submit", "demo/slow", mode)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// The task is running and auractl is following it before Ctrl-C.
			var id string
			waitFor(t, "the task to run, followed", 20*time.Second, func() bool {
				if followers() == 0 {
					return false
				}
				list, err := d.client.Exec.ListTasks(ctx, &aurav1.ListTasksRequest{Status: aurav1.TaskStatus_TASK_STATUS_RUNNING})
				if err != nil || len(list.Tasks) == 0 {
					return false
				}
				id = list.Tasks[0].Id
				return true
			})
			if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			err := cmd.Wait()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 130 {
				t.Fatalf("auractl after SIGINT: %v, want exit 130\nstderr: %s", err, stderr.String())
			}
			// The commands it suggests reach the same aurad: --addr was given.
			self := "auractl --addr " + d.addr
			for _, want := range []string{"task " + id + " goes on", "RUNNING", self + " cancel " + id, self + " watch " + id} {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
				}
			}
			if strings.Contains(stderr.String(), "context canceled") {
				t.Errorf("stderr shows a raw context error:\n%s", stderr.String())
			}
			if task, err := d.client.Get(ctx, id); err != nil || task.Status != aurav1.TaskStatus_TASK_STATUS_RUNNING {
				t.Fatalf("the task after auractl was interrupted: %v %v, want RUNNING", task.GetStatus(), err)
			}
			if _, err := d.client.Cancel(ctx, id, "test over"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Cancel says what it did: the running step ends CANCELLED, the reason is
// not buried in repeated "cancelled:", and a task that had already ended is
// reported as such with its own exit code.
func TestAuractlCancelSaysWhatHappened(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	ctx := ctxT(t, time.Minute)
	id := d.submit(ctx, &aurav1.SubmitRequest{Task: "demo/slow"})
	waitFor(t, "the nap step to run", 20*time.Second, func() bool {
		task, err := d.client.Get(ctx, id)
		return err == nil && len(task.Steps) > 0 && task.Steps[0].Status == aurav1.StepStatus_STEP_STATUS_RUNNING
	})
	out, code := auractl(t, d, "cancel", id)
	if code != 0 || !strings.Contains(out, "Status:    CANCELLED") || !strings.Contains(out, "Error:     cancelled: requested with auractl\n") {
		t.Fatalf("cancel: exit %d\n%s", code, out)
	}
	if !regexp.MustCompile(`(?m)^\s+nap\s+CANCELLED\s`).MatchString(out) || !regexp.MustCompile(`(?m)^\s+sleep\s+PENDING\s`).MatchString(out) {
		t.Errorf("the step running when cancelled should be CANCELLED, the next PENDING:\n%s", out)
	}
	task, err := d.client.Get(ctx, id)
	if err != nil || task.Steps[0].Status != aurav1.StepStatus_STEP_STATUS_CANCELLED || task.Error.GetMessage() != "requested with auractl" {
		t.Fatalf("GetTask after cancel: %v %v", task, err)
	}
	out, code = auractl(t, d, "cancel", id)
	if code != 7 || !strings.Contains(out, "had already ended CANCELLED") || !strings.Contains(out, "nothing to cancel") {
		t.Fatalf("cancel of a cancelled task: exit %d, want 7 and a note\n%s", code, out)
	}
	done := d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"}))
	out, code = auractl(t, d, "cancel", done.Id)
	if code != 7 || !strings.Contains(out, "had already ended SUCCEEDED") {
		t.Fatalf("cancel of a succeeded task: exit %d, want 7 and a note\n%s", code, out)
	}
	if task, _ := d.client.Get(ctx, done.Id); task.GetStatus() != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED || task.GetError() != nil {
		t.Fatalf("the succeeded task changed: %v", task)
	}
}

// --follow shows each retry as it is decided, with the attempt, the delay
// and the error, and numbers the task's events 1, 2, 3, ...
func TestAuractlFollowShowsRetries(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	out, code := auractl(t, d, "submit", "e2e/retry", "--follow")
	if code != 2 {
		t.Fatalf("exit %d, want 2\n%s", code, out)
	}
	for _, re := range []string{
		`step\.retrying  try  attempt 2/3 in 200ms  after: exec "sh": exit code 1; stderr: no luck`,
		`step\.retrying  try  attempt 3/3 in 200ms`,
		`(?m)^\s+try\s+FAILED\s+attempts=3`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("--follow output lacks %s:\n%s", re, out)
		}
	}
	if strings.Count(out, "step.retrying") != 2 {
		t.Errorf("want 2 step.retrying lines:\n%s", out)
	}
	var nums []int
	for _, m := range regexp.MustCompile(`(?m)^\S+  #(\d+)  `).FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[1])
		nums = append(nums, n)
	}
	for i, n := range nums {
		if n != i+1 {
			t.Fatalf("events numbered %v, want 1, 2, 3, ...:\n%s", nums, out)
		}
	}
	// The event itself, for programs: the delay and max attempts as fields.
	ctx := ctxT(t, time.Minute)
	id := d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/retry"})
	var retries []*aurav1.TaskEvent
	if err := d.client.Watch(ctx, id, func(ev *aurav1.TaskEvent) error {
		if ev.Type == "step.retrying" {
			retries = append(retries, ev)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(retries) != 2 || retries[0].Attempt != 2 || retries[0].MaxAttempts != 3 || retries[0].RetryDelay.AsDuration() != 200*time.Millisecond ||
		!strings.Contains(retries[0].Message, "no luck") || retries[0].Step != "try" {
		t.Fatalf("step.retrying events: %v", retries)
	}
}

// Errors say what to do next.
func TestAuractlErrorsSayWhatToDo(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	for _, tc := range []struct {
		args    []string
		want    []string
		wantNot string
	}{
		{[]string{"submit", "hello"}, []string{`"hello" is not a task name: want PLAN/TASK`, `did you mean "demo/hello"?`, "auractl plans"}, "regex"},
		{[]string{"submit", "demo/helo"}, []string{`unknown task "demo/helo" (did you mean "demo/hello"?)`}, ""},
		{[]string{"plans", "show", "e2e/ech"}, []string{`did you mean "e2e/echo"?`}, ""},
		{[]string{"plans", "dmeo"}, []string{`no plan "dmeo" (did you mean "demo"?)`}, ""},
	} {
		out, code := auractl(t, d, tc.args...)
		for _, w := range tc.want {
			if code != 1 || !strings.Contains(out, w) {
				t.Errorf("auractl %v: exit %d, want 1 and %q:\n%s", tc.args, code, w, out)
			}
		}
		if tc.wantNot != "" && strings.Contains(out, tc.wantNot) {
			t.Errorf("auractl %v says %q:\n%s", tc.args, tc.wantNot, out)
		}
	}

	// No daemon at the address: say so, and how to start one.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	out, err := exec.Command(bin.auractl, "--addr", addr, "plans").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "no aurad at "+addr) ||
		!strings.Contains(string(out), "aurad serve") || strings.Contains(string(out), "Error while dialing") {
		t.Fatalf("auractl with no daemon: %v\n%s", err, out)
	}

	// plan check: an unknown action names the likely one, or lists them all;
	// an unknown input type is one error, not two.
	plans := t.TempDir()
	if err := os.MkdirAll(filepath.Join(plans, "p", "tasks"), 0o755); err != nil {
		t.Fatal(err)
	}
	task := "inputs:\n  - {name: a, type: integer, default: 3}\nsteps:\n  - action: lgo\n  - action: teleport\n"
	if err := os.WriteFile(filepath.Join(plans, "p", "tasks", "t.yaml"), []byte(task), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ = exec.Command(bin.aurad, "plan", "check", plans).CombinedOutput()
	for _, want := range []string{`unknown action "lgo" (did you mean "log"?)`, `unknown action "teleport" (actions: `, "http.request", `unknown type "integer"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("plan check lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "bad default") {
		t.Errorf("plan check adds a follow-on error about the default of an input of unknown type:\n%s", out)
	}
}

// plans shows each plan's title and description; plans show describes one
// task: inputs with their defaults, settings and steps.
func TestAuractlPlansDescribeTasks(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	out, code := auractl(t, d, "plans")
	if code != 0 || !strings.Contains(out, "demo - Demo\n") || !strings.Contains(out, "Small tasks to try Aura with") ||
		!strings.Contains(out, "e2e - End-to-end test tasks") {
		t.Fatalf("plans: exit %d\n%s", code, out)
	}
	out, code = auractl(t, d, "plans", "show", "e2e/retry")
	for _, re := range []string{`Task:\s+e2e/retry`, `Title:\s+Fail every attempt, retrying`, `Timeout:\s+1m0s`, `Inputs:\s+none`,
		`Steps:\s+\(in order\)`, `(?m)^\s+try\s+exec\s+retry 3$`} {
		if code != 0 || !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("plans show e2e/retry lacks %s (exit %d):\n%s", re, code, out)
		}
	}
	out, _ = auractl(t, d, "plans", "show", "demo/slow")
	if !regexp.MustCompile(`(?m)^\s+seconds\s+int\s+default 30`).MatchString(out) || !regexp.MustCompile(`(?m)^\s+sleep\s+exec`).MatchString(out) {
		t.Errorf("plans show demo/slow:\n%s", out)
	}
}

// rerun submits the same task with the same inputs, extra tags and labels
// as a new task; the task's own tags are not added twice.
func TestAuractlRerun(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	ctx := ctxT(t, time.Minute)
	first := d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/tagged", Inputs: mustStruct(t, map[string]any{"word": "again"}),
		ResourceTags: []string{"extra:3"}, Labels: map[string]string{"team": "qa"}, Priority: 4, IdempotencyKey: "once"}))
	stdout, stderr, code := auractlSplit(t, d, "rerun", first.Id, "-q", "--wait")
	id := strings.TrimSpace(stdout)
	if code != 0 || id == "" || id == first.Id {
		t.Fatalf("rerun: exit %d, id %q (first %s)\n%s", code, id, first.Id, stderr)
	}
	again, err := d.client.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if again.Task != "e2e/tagged" || again.Inputs.AsMap()["word"] != "again" || again.Labels["team"] != "qa" || again.Priority != 4 ||
		strings.Join(again.ResourceTags, ",") != strings.Join(first.ResourceTags, ",") || again.IdempotencyKey != "" ||
		again.Result.GetStringValue() != "again" {
		t.Fatalf("rerun of %v\nmade %v", first, again)
	}
	if out, code := auractl(t, d, "rerun", "no-such-task"); code != 1 || !strings.Contains(out, "NotFound") {
		t.Fatalf("rerun of an unknown id: exit %d\n%s", code, out)
	}
}

// aurad logs what it loaded, and says loudly when that is nothing.
func TestAuradStartupLogCountsPlans(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	if !regexp.MustCompile(`msg="plans loaded" plans=2 tasks=\d+ dir=`).MatchString(d.logs()) {
		t.Errorf("startup log lacks the plan count:\n%s", d.logs())
	}
	empty := startDaemonIn(t, t.TempDir(), t.TempDir())
	if !strings.Contains(empty.logs(), `level=WARN msg="no plans found: every submission will be refused`) {
		t.Errorf("an empty --plans starts silently:\n%s", empty.logs())
	}
}

// Both binaries say which build they are, from the build information.
func TestVersionsComeFromTheBuild(t *testing.T) {
	for _, b := range []struct{ name, path string }{{"aurad", bin.aurad}, {"auractl", bin.auractl}} {
		out, err := exec.Command(b.path, "version").CombinedOutput()
		line := strings.TrimSpace(string(out))
		if err != nil || !strings.HasPrefix(line, b.name+" ") || line == b.name+" dev" || !strings.Contains(line, runtime.Version()) {
			t.Errorf("%s version: %v %q, want the module version and %s", b.name, err, line, runtime.Version())
		}
		// The commit, when the go command stamped one (a build from a git
		// clone; not from a worktree or with -buildvcs=false).
		info, err := exec.Command("go", "version", "-m", b.path).Output()
		if m := regexp.MustCompile(`vcs\.revision=([0-9a-f]{12})`).FindSubmatch(info); err == nil && m != nil && !strings.Contains(line, string(m[1])) {
			t.Errorf("%s version %q lacks the commit %s", b.name, line, m[1])
		}
	}
}

// A token with only the submit or only the cancel role is enough for
// submit --input and cancel: reading the task's definition or state first
// is a help, not a requirement.
func TestAuractlWithOneRoleTokens(t *testing.T) {
	d := startDaemon(t, daemonOpts{args: []string{"--auth-tokens", writeTokens(t, "")}})
	ctx := ctxT(t, time.Minute)
	ops := dialAs(t, d.addr, client.WithToken("ops"))
	tokenFile := func(tok string) string {
		p := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(p, []byte(tok), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	stdout, stderr, code := auractlSplit(t, d, "--token-file", tokenFile("tok-submit"), "submit", "-q", "e2e/echo", "--input", "n=5", "--input", "word=7")
	if code != 0 {
		t.Fatalf("submit with a submit-only token: exit %d\n%s", code, stderr)
	}
	task, err := ops.Wait(ctx, strings.TrimSpace(stdout))
	if err != nil || task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED || task.Result.GetStructValue().AsMap()["word"] != "7" {
		t.Fatalf("the task submitted with a submit-only token: %v %v", task, err)
	}
	resp, err := ops.Submit(ctx, &aurav1.SubmitRequest{Task: "demo/slow"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the task to run", 20*time.Second, func() bool {
		task, err := ops.Get(ctx, resp.TaskId)
		return err == nil && task.Status == aurav1.TaskStatus_TASK_STATUS_RUNNING
	})
	if out, code := auractl(t, d, "--token-file", tokenFile("tok-cancel"), "cancel", resp.TaskId); code != 0 || !strings.Contains(out, "CANCELLED") {
		t.Fatalf("cancel with a cancel-only token: exit %d\n%s", code, out)
	}
}

// Each mistake a newcomer makes on the command line is answered with what
// to do next: where the ids, task names, inputs or usage are found.
func TestAuractlMistakesNameTheNextStep(t *testing.T) {
	d := startDaemon(t, daemonOpts{plans: []string{"../examples/plans/demo", "testdata/plans/sandbox"}})
	for _, tc := range []struct {
		args []string
		want []string
	}{
		// An id aurad does not know, whatever the command.
		{[]string{"get", "no-such-id"}, []string{`no task "no-such-id"`, "auractl list shows the newest tasks"}},
		{[]string{"cancel", "no-such-id"}, []string{"auractl list shows the newest tasks"}},
		{[]string{"watch", "no-such-id"}, []string{"auractl list shows the newest tasks"}},
		{[]string{"logs", "no-such-id"}, []string{"auractl list shows the newest tasks"}},
		{[]string{"rerun", "no-such-id"}, []string{"auractl list shows the newest tasks"}},
		// The command line itself.
		{[]string{"submit"}, []string{"auractl submit needs a task name, PLAN/TASK (auractl plans lists them)", "auractl submit --help shows how to use it"}},
		{[]string{"submit", "demo/hello", "name=you"}, []string{"takes one task name", "--input NAME=VALUE"}},
		{[]string{"submit", "demo/hello", "--nmae", "x"}, []string{"unknown flag: --nmae", "auractl submit --help shows how to use it"}},
		{[]string{"submit", "demo/hello", "--wait", "--follow"}, []string{"auractl submit --help shows how to use it"}},
		{[]string{"sumbit", "demo/hello"}, []string{`unknown command "sumbit"`, "auractl --help shows how to use it"}},
		{[]string{"plans", "show"}, []string{"needs a task name", "auractl plans show --help"}},
		// Inputs aurad refuses, and inputs that are not an object.
		{[]string{"submit", "sandbox/cwd"}, []string{`input "dir": required input is missing`, "auractl plans show sandbox/cwd lists its inputs", "--input NAME=VALUE"}},
		{[]string{"submit", "demo/hello", "--inputs-json", `["you"]`}, []string{"--inputs-json: want a JSON object of input names to values", "got a JSON array"}},
		{[]string{"submit", "demo/hello", "--inputs-json", `{name: you}`}, []string{"--inputs-json: not JSON", `'{"n": 3}'`}},
		// A plan where a task was wanted.
		{[]string{"plans", "show", "demo"}, []string{`"demo" is a plan, not a task`, "auractl plans show demo/", "auractl plans demo lists them all"}},
	} {
		out, code := auractl(t, d, tc.args...)
		for _, w := range tc.want {
			if code != 1 || !strings.Contains(out, w) {
				t.Errorf("auractl %q: exit %d, want 1 and %q:\n%s", tc.args, code, w, out)
			}
		}
	}
}

// The help of the commands that wait for a task lists the exit codes that
// scripts branch on, and they are the codes auractl exits with.
func TestAuractlHelpListsExitCodes(t *testing.T) {
	for _, cmd := range []string{"submit", "rerun", "watch"} {
		out, err := exec.Command(bin.auractl, cmd, "--help").CombinedOutput()
		if err != nil {
			t.Fatalf("auractl %s --help: %v\n%s", cmd, err, out)
		}
		for _, re := range []string{`(?m)^\s+0\s+succeeded$`, `(?m)^\s+2\s+failed$`, `(?m)^\s+3\s+timed out$`, `(?m)^\s+4\s+cancelled$`,
			`(?m)^\s+5\s+state planning failed$`, `(?m)^\s+6\s+interrupted`, `(?m)^\s+130\s+Ctrl-C`} {
			if !regexp.MustCompile(re).MatchString(string(out)) {
				t.Errorf("auractl %s --help does not list %s:\n%s", cmd, re, out)
			}
		}
	}
	d := startDaemon(t, daemonOpts{})
	for _, tc := range []struct {
		task string
		args []string
		code int
	}{
		{"demo/hello", nil, 0}, {"demo/fail", nil, 2}, {"demo/slow", []string{"--timeout", "1s"}, 3},
	} {
		if _, code := auractl(t, d, append([]string{"submit", tc.task, "-q", "--wait"}, tc.args...)...); code != tc.code {
			t.Errorf("submit %s --wait: exit %d, the help says %d", tc.task, code, tc.code)
		}
	}
}

// aurad plan check (and serve) given something that is not a directory of
// plans says what one is, instead of a bare "no such file or directory" or
// a "tasks" plan without tasks.
func TestPlanCheckSaysWhatAPlansDirectoryIs(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "plans")
	one, err := filepath.Abs("../examples/plans/demo")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dir  string
		want []string
	}{
		{missing, []string{missing + " does not exist", "a plans directory holds one directory per plan", "docs/writing-plans.md"}},
		{one, []string{one + " looks like a single plan", "give the directory that holds the plans: " + filepath.Dir(one)}},
	} {
		out, err := exec.Command(bin.aurad, "plan", "check", tc.dir).CombinedOutput()
		for _, w := range tc.want {
			if err == nil || !strings.Contains(string(out), w) {
				t.Errorf("plan check %s: %v, want %q:\n%s", tc.dir, err, w, out)
			}
		}
	}
}

// make run builds both binaries stamped with VERSION, starts aurad on the
// example plans and prints what to try next; every command it prints works
// against the daemon it started.
func TestMakeRunSaysWhatToTry(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	binDir, data := t.TempDir(), t.TempDir()
	cmd := exec.Command("make", "--no-print-directory", "run", "BIN="+binDir, "DATA="+data, "LISTEN="+addr, "VERSION=v0.0.0-maketest")
	cmd.Dir = ".."
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var mu sync.Mutex
	var out strings.Builder
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			mu.Lock()
			out.WriteString(sc.Text() + "\n")
			mu.Unlock()
		}
	}()
	exited := make(chan struct{})
	var exitErr error
	go func() { exitErr = cmd.Wait(); pw.Close(); close(exited) }()
	t.Cleanup(func() {
		// make and the aurad it started are one process group.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		<-done
	})
	output := func() string { mu.Lock(); defer mu.Unlock(); return out.String() }
	waitFor(t, "make run to build and start aurad", 5*time.Minute, func() bool {
		select {
		case <-exited:
			t.Fatalf("make run ended: %v\n%s", exitErr, output())
		default:
		}
		return strings.Contains(output(), `msg="aurad serving"`)
	})
	// The next steps: the auractl command lines it printed, with --addr
	// since it does not listen on auractl's default address.
	var tries [][]string
	for line := range strings.Lines(output()) {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == binDir+"/auractl" {
			tries = append(tries, f)
		}
	}
	if len(tries) < 3 || !strings.Contains(output(), "docs/getting-started.md") {
		t.Fatalf("make run does not say what to try next:\n%s", output())
	}
	for _, f := range tries {
		if len(f) < 3 || f[1] != "--addr" || f[2] != addr {
			t.Fatalf("%q: not pointed at %s", f, addr)
		}
		c := exec.Command(f[0], f[1:]...)
		c.Env = append(os.Environ(), "AURA_ADDR=")
		got, err := c.CombinedOutput()
		want := 0
		if slices.Contains(f, "--timeout") {
			want = 3 // demo/slow with a short timeout: TIMED_OUT
		}
		if code := c.ProcessState.ExitCode(); code != want {
			t.Errorf("%q: exit %d (%v), want %d:\n%s", f, code, err, want, got)
		}
	}
	for _, b := range []string{"aurad", "auractl"} {
		v, err := exec.Command(filepath.Join(binDir, b), "version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(v), b+" v0.0.0-maketest") {
			t.Errorf("%s built by make run: version %q (%v), want VERSION", b, v, err)
		}
	}
}

// -o json is taken by every command that prints something to read,
// version included: scripts get the version and Go by name.
func TestAuractlVersionAsJSON(t *testing.T) {
	out, err := exec.Command(bin.auractl, "version", "-o", "json").Output()
	var v struct{ Version, Go string }
	if err != nil || json.Unmarshal(out, &v) != nil || v.Version == "" || v.Go != runtime.Version() {
		t.Fatalf("auractl version -o json: %v %q, want a JSON object with version and go %s", err, out, runtime.Version())
	}
}

// A daemon that wants a token, a token without the role, and TLS on one
// side only: auractl says which it is and what to give it.
func TestAuractlAuthAndTLSMistakesSayWhatToDo(t *testing.T) {
	run := func(addr string, env []string, args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(bin.auractl, append([]string{"--addr", addr}, args...)...)
		cmd.Env = append(os.Environ(), append([]string{"AURA_TOKEN=", "AURA_TLS=", "AURA_TLS_CA="}, env...)...)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("auractl %v: %v", args, err)
		}
		return string(out), cmd.ProcessState.ExitCode()
	}
	check := func(out string, code int, what string, want ...string) {
		t.Helper()
		for _, w := range want {
			if code != 1 || !strings.Contains(out, w) {
				t.Errorf("%s: exit %d, want 1 and %q:\n%s", what, code, w, out)
			}
		}
	}
	authed := startDaemon(t, daemonOpts{args: []string{"--auth-tokens", writeTokens(t, "")}})
	out, code := run(authed.addr, nil, "list")
	check(out, code, "no token", "Unauthenticated", "wants a token", "--token-file FILE or AURA_TOKEN", "aurad token new")
	out, code = run(authed.addr, []string{"AURA_TOKEN=not-a-token"}, "list")
	check(out, code, "a wrong token", "did not accept the token", "--auth-tokens file")
	out, code = run(authed.addr, []string{"AURA_TOKEN=tok-read"}, "submit", "demo/hello")
	check(out, code, "a read-only token submitting", "PermissionDenied", "do not allow auractl submit", "needs the submit role")
	out, code = run(authed.addr, []string{"AURA_TOKEN=tok-read"}, "--tls", "list")
	check(out, code, "--tls to a plaintext aurad", "does not use TLS", "leave those out")

	dir := t.TempDir()
	ca := newCA(t, "aura test CA")
	now := time.Now()
	cert, key := ca.issue(t, "aurad", true, now.Add(-time.Hour), now.Add(time.Hour))
	secure := startDaemon(t, daemonOpts{args: []string{
		"--tls-cert", writeFile(t, dir, "server.pem", cert), "--tls-key", writeFile(t, dir, "server-key.pem", key)}})
	out, code = run(secure.addr, nil, "list")
	check(out, code, "plaintext to a TLS aurad", "probably wants TLS", "--tls")
	out, code = run(secure.addr, nil, "--tls", "list")
	check(out, code, "a certificate from an unknown CA", "could not be verified", "x509: ", "--tls-ca FILE")
	if out, code = run(secure.addr, nil, "--tls-ca", writeFile(t, dir, "ca.pem", ca.pem), "list"); code != 0 {
		t.Errorf("--tls-ca with the right CA: exit %d\n%s", code, out)
	}
}

// A second aurad on a taken address or on a data directory in use says
// which flag to change.
func TestAuradSaysWhichFlagToChangeWhenTaken(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	for _, tc := range []struct {
		what, listen, data, want string
	}{
		{"a taken address", d.addr, t.TempDir(), "give this one another --listen"},
		{"a data directory in use", "127.0.0.1:0", d.data, "give this one another --data"},
	} {
		cmd := exec.Command(bin.aurad, "serve", "--plans", d.plans, "--data", tc.data, "--listen", tc.listen)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("aurad on %s: %v, want %q:\n%s", tc.what, err, tc.want, out)
		}
	}
}
