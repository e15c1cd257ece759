package e2e

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// containmentKillGrace is the --kill-grace of these tests; a step's
// processes must be gone within it (plus containmentMargin for a loaded
// machine) after the task ends.
const (
	containmentKillGrace = time.Second
	containmentMargin    = 5 * time.Second
)

// TestEscapedProcessesEndWithTheirTask is the attack: an exec step starts
// grandchildren that leave its process group and session (setsid), one of
// them orphaned by its parent at once, and the task then times out, is
// cancelled, or (cpu lane) loses its worker to SIGKILL. Every one of those
// processes must be gone, reaped, within the kill grace, on both lanes and
// in both containment modes.
func TestEscapedProcessesEndWithTheirTask(t *testing.T) {
	for _, mode := range []string{"cgroup", "subreaper"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			if mode == "cgroup" {
				if why := cgroupUnwritable(); why != "" {
					t.Skipf("cgroup mode cannot work here: %s", why)
				}
			}
			d := startDaemon(t, daemonOpts{args: []string{"--process-containment", mode,
				"--kill-grace", containmentKillGrace.String(), "--cpu-workers", "2"}})
			if mode == "cgroup" && !strings.Contains(d.logs(), "mode=cgroup") {
				t.Fatalf("aurad did not start in cgroup mode:\n%s", d.logs())
			}
			for _, lane := range []aurav1.ExecutionMode{aurav1.ExecutionMode_EXECUTION_MODE_IO, aurav1.ExecutionMode_EXECUTION_MODE_CPU} {
				name := strings.ToLower(strings.TrimPrefix(lane.String(), "EXECUTION_MODE_"))
				t.Run(name+"/timeout", func(t *testing.T) { escapeTimeout(t, d, lane) })
				t.Run(name+"/cancel", func(t *testing.T) { escapeCancel(t, d, lane) })
			}
			t.Run("cpu/worker_killed", func(t *testing.T) { escapeWorkerKilled(t, d) })
		})
	}
}

// submitEscape starts e2e/escape and returns its id and the three pids it
// recorded: the exec child, a setsid'd grandchild and a setsid'd orphan.
func submitEscape(t *testing.T, d *daemon, lane aurav1.ExecutionMode, timeout time.Duration) (string, []int) {
	t.Helper()
	ctx := ctxT(t, time.Minute)
	pidFile := filepath.Join(t.TempDir(), "escape.pids")
	req := &aurav1.SubmitRequest{Task: "e2e/escape", ExecutionMode: lane,
		Inputs: mustStruct(t, map[string]any{"pidfile": pidFile})}
	if timeout > 0 {
		req.Timeout = durationpb.New(timeout)
	}
	id := d.submit(ctx, req)
	var pids []int
	waitFor(t, "the escape step to record its pids", 30*time.Second, func() bool {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return false
		}
		pids = pids[:0]
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil && n > 0 {
				pids = append(pids, n)
			}
		}
		return len(pids) == 3
	})
	// Whatever happens, this test leaves nothing running.
	t.Cleanup(func() {
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err != nil {
			t.Fatalf("process %d of the step is not running before the task ends: %v", pid, err)
		}
	}
	return id, pids
}

// allGone waits, within the kill grace and a margin, for every pid to be
// killed and reaped: kill(pid, 0) fails with ESRCH.
func allGone(t *testing.T, pids []int) {
	t.Helper()
	names := []string{"exec child", "setsid grandchild", "orphaned setsid grandchild"}
	deadline := time.Now().Add(containmentKillGrace + containmentMargin)
	for i, pid := range pids {
		for {
			err := syscall.Kill(pid, 0)
			if errors.Is(err, syscall.ESRCH) {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s %d still exists %s after its task ended (kill(pid, 0) = %v; %s)",
					names[i], pid, containmentKillGrace+containmentMargin, err, procState(pid))
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// procState describes a process for a failure message: its state and parent.
func procState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "no /proc entry"
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		f := strings.Fields(s[i+1:])
		if len(f) >= 2 {
			return "state " + f[0] + ", parent " + f[1]
		}
	}
	return s
}

func escapeTimeout(t *testing.T, d *daemon, lane aurav1.ExecutionMode) {
	ctx := ctxT(t, time.Minute)
	id, pids := submitEscape(t, d, lane, 3*time.Second)
	task := d.wait(ctx, id)
	if task.Status != aurav1.TaskStatus_TASK_STATUS_TIMED_OUT {
		t.Fatalf("status %s error %v, want TIMED_OUT", task.Status, task.Error)
	}
	allGone(t, pids)
}

func escapeCancel(t *testing.T, d *daemon, lane aurav1.ExecutionMode) {
	ctx := ctxT(t, time.Minute)
	id, pids := submitEscape(t, d, lane, 0)
	task, err := d.client.Cancel(ctx, id, "containment test")
	if err != nil {
		t.Fatal(err)
	}
	if task.Status != aurav1.TaskStatus_TASK_STATUS_CANCELLED {
		t.Fatalf("status %s error %v, want CANCELLED", task.Status, task.Error)
	}
	allGone(t, pids)
}

func escapeWorkerKilled(t *testing.T, d *daemon) {
	ctx := ctxT(t, time.Minute)
	id, pids := submitEscape(t, d, aurav1.ExecutionMode_EXECUTION_MODE_CPU, 0)
	worker, ok := parentPID(pids[0])
	if !ok {
		t.Fatalf("cannot read the parent of exec child %d", pids[0])
	}
	if cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(worker) + "/cmdline"); !strings.Contains(string(cmdline), "worker") {
		t.Fatalf("the exec child's parent %d is not a cpu worker: %q", worker, cmdline)
	}
	if err := syscall.Kill(worker, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	task := d.wait(ctx, id)
	if task.Status != aurav1.TaskStatus_TASK_STATUS_FAILED || task.Error.GetKind() != "worker_crashed" {
		t.Fatalf("status %s error %v, want FAILED/worker_crashed", task.Status, task.Error)
	}
	allGone(t, pids)
}

func parentPID(pid int) (int, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, false
	}
	n, err := strconv.Atoi(f[1])
	return n, err == nil
}

// TestCancelledExecGetsItsKillGrace cancels an exec step that needs a
// second after SIGTERM to stop cleanly: on both lanes it must get that
// second (SIGTERM, then SIGKILL only after --kill-grace), even on the cpu
// lane where the worker running it is itself stopped at once. (In subreaper
// mode a cpu-lane step's processes are killed as soon as their worker is
// gone, as docs/operations.md says.)
func TestCancelledExecGetsItsKillGrace(t *testing.T) {
	d := startDaemon(t, daemonOpts{args: []string{"--kill-grace", "20s", "--cpu-workers", "1"}})
	for _, lane := range []aurav1.ExecutionMode{aurav1.ExecutionMode_EXECUTION_MODE_IO, aurav1.ExecutionMode_EXECUTION_MODE_CPU} {
		t.Run(strings.ToLower(strings.TrimPrefix(lane.String(), "EXECUTION_MODE_")), func(t *testing.T) {
			if lane == aurav1.ExecutionMode_EXECUTION_MODE_CPU && !strings.Contains(d.logs(), "mode=cgroup") {
				t.Skip("cgroup mode unavailable here; in subreaper mode a cpu-lane step gets no grace once its worker is gone")
			}
			ctx := ctxT(t, time.Minute)
			marker := filepath.Join(t.TempDir(), "marker")
			id := d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/graceful", ExecutionMode: lane,
				Inputs: mustStruct(t, map[string]any{"marker": marker})})
			waitFor(t, "the step to set its SIGTERM trap", 30*time.Second, func() bool {
				b, _ := os.ReadFile(marker)
				return strings.TrimSpace(string(b)) == "started"
			})
			if _, err := d.client.Cancel(ctx, id, "graceful test"); err != nil {
				t.Fatal(err)
			}
			if task := d.wait(ctx, id); task.Status != aurav1.TaskStatus_TASK_STATUS_CANCELLED {
				t.Fatalf("status %s error %v, want CANCELLED", task.Status, task.Error)
			}
			waitFor(t, "the step to stop cleanly", 20*time.Second, func() bool {
				b, _ := os.ReadFile(marker)
				return strings.TrimSpace(string(b)) == "stopped"
			})
		})
	}
}

// cgroupUnwritable says why aurad, started by this test, could not make
// cgroups below its own (it inherits this process's cgroup), or "" when it
// can.
func cgroupUnwritable() string {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return err.Error()
	}
	var own string
	for line := range strings.SplitSeq(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			own = p
		}
	}
	if own == "" {
		return "no cgroup v2 hierarchy"
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err.Error()
	}
	for line := range strings.SplitSeq(string(mounts), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f := strings.Fields(pre)
		if !ok || !strings.HasPrefix(post, "cgroup2 ") || len(f) < 5 || f[3] != "/" {
			continue
		}
		dir, err := os.MkdirTemp(filepath.Join(f[4], own), "aura-e2e-probe-")
		if err != nil {
			return err.Error()
		}
		os.Remove(dir)
		return ""
	}
	return "no cgroup2 mount showing the whole hierarchy"
}
