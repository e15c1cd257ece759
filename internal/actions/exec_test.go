package actions

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aura-dev/aura/internal/containment"
	"github.com/aura-dev/aura/internal/testbin"
)

func execOut(t *testing.T, out any) (code int64, stdout, stderr string) {
	t.Helper()
	m, ok := out.(map[string]any)
	if !ok {
		t.Fatalf("exec output = %#v, want a map", out)
	}
	return m["exit_code"].(int64), m["stdout"].(string), m["stderr"].(string)
}

func TestExecCapturesOutput(t *testing.T) {
	tp := newTestPlan(t)
	out := mustRun(t, tp.env, "exec", map[string]any{"argv": []any{"sh", "-c", "echo out; echo err >&2"}})
	code, stdout, stderr := execOut(t, out)
	if code != 0 || stdout != "out\n" || stderr != "err\n" {
		t.Fatalf("got %d %q %q", code, stdout, stderr)
	}
	if out.(map[string]any)["stdout_truncated"] != false {
		t.Fatal("short output marked truncated")
	}
}

// Arguments are passed as they are: no shell ever sees them.
func TestExecNeverUsesAShell(t *testing.T) {
	tp := newTestPlan(t)
	evil := "$(touch pwned); `touch pwned2` && echo $HOME | rm -rf ."
	out := mustRun(t, tp.env, "exec", map[string]any{"argv": []any{"echo", evil}})
	if _, stdout, _ := execOut(t, out); stdout != evil+"\n" {
		t.Fatalf("stdout = %q", stdout)
	}
	for _, f := range []string{"pwned", "pwned2"} {
		if _, err := os.Stat(filepath.Join(tp.work, f)); err == nil {
			t.Fatalf("%s was created: an argument reached a shell", f)
		}
	}
}

func TestExecEnvironmentIsClean(t *testing.T) {
	tp := newTestPlan(t)
	t.Setenv("AURA_TEST_SECRET", "hunter2")
	out := mustRun(t, tp.env, "exec", map[string]any{
		"argv": []any{"env"},
		"env":  map[string]any{"GREETING": "hi", "COUNT": int64(3)},
	})
	_, stdout, _ := execOut(t, out)
	if strings.Contains(stdout, "AURA_TEST_SECRET") || strings.Contains(stdout, "hunter2") {
		t.Fatalf("aurad's environment leaked into the child:\n%s", stdout)
	}
	for _, want := range []string{"GREETING=hi\n", "COUNT=3\n", "PATH=" + os.Getenv("PATH") + "\n"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("child env lacks %q:\n%s", want, stdout)
		}
	}

	env := *tp.env
	env.EnvAllow = []string{"AURA_TEST_SECRET", "PATH"}
	out = mustRun(t, &env, "exec", map[string]any{"argv": []any{"env"}})
	if _, stdout, _ := execOut(t, out); !strings.Contains(stdout, "AURA_TEST_SECRET=hunter2\n") || strings.Contains(stdout, "HOME=") {
		t.Fatalf("EnvAllow not honoured:\n%s", stdout)
	}
}

func TestExecOkCodes(t *testing.T) {
	tp := newTestPlan(t)
	out, err := run(t, tp.env, "exec", map[string]any{"argv": []any{"sh", "-c", "echo partial; echo 'line1\nfatal: disk full' >&2; exit 3"}})
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 3 || ee.Stdout != "partial\n" {
		t.Fatalf("err = %#v", err)
	}
	if !strings.Contains(err.Error(), "exit code 3") || !strings.Contains(err.Error(), "fatal: disk full") {
		t.Fatalf("message lacks exit code or stderr tail: %q", err)
	}
	if code, stdout, _ := execOut(t, out); code != 3 || stdout != "partial\n" {
		t.Fatalf("output alongside the error = %#v", out)
	}

	for _, ok := range []any{[]any{int64(0), int64(3)}, float64(3), int64(3)} {
		out := mustRun(t, tp.env, "exec", map[string]any{"argv": []any{"sh", "-c", "exit 3"}, "ok_codes": ok})
		if code, _, _ := execOut(t, out); code != 3 {
			t.Fatalf("ok_codes %v: exit_code %d", ok, code)
		}
	}
	_, err = run(t, tp.env, "exec", map[string]any{"argv": []any{"true"}, "ok_codes": []any{1.5}})
	asParamError(t, err, "ok_codes")
	// Zero is no longer ok when ok_codes does not list it.
	if _, err := run(t, tp.env, "exec", map[string]any{"argv": []any{"true"}, "ok_codes": []any{int64(1)}}); !errors.As(err, &ee) {
		t.Fatalf("exit 0 with ok_codes [1]: %v", err)
	}
}

// Numbers and bools from templates become argv elements as JSON prints them.
func TestExecFormatsScalarArguments(t *testing.T) {
	tp := newTestPlan(t)
	out := mustRun(t, tp.env, "exec", map[string]any{"argv": []any{"echo", int64(3), float64(2.5), float64(4), true}})
	if _, stdout, _ := execOut(t, out); stdout != "3 2.5 4 true\n" {
		t.Fatalf("stdout = %q", stdout)
	}
}

func TestExecReportsKillingSignal(t *testing.T) {
	tp := newTestPlan(t)
	out, err := run(t, tp.env, "exec", map[string]any{"argv": []any{"sh", "-c", "kill -KILL $$"}})
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 128+9 || ee.Signal != "killed" {
		t.Fatalf("err = %#v", err)
	}
	if !strings.Contains(err.Error(), "killed by signal: killed") {
		t.Fatalf("message = %q", err)
	}
	if code, _, _ := execOut(t, out); code != 137 {
		t.Fatalf("exit_code = %d", code)
	}
}

func TestExecStdin(t *testing.T) {
	tp := newTestPlan(t)
	out := mustRun(t, tp.env, "exec", map[string]any{"argv": []any{"tr", "a-z", "A-Z"}, "stdin": "hello\n"})
	if _, stdout, _ := execOut(t, out); stdout != "HELLO\n" {
		t.Fatalf("stdout = %q", stdout)
	}
	// A child that exits without reading a large stdin does not hang the step.
	out = mustRun(t, tp.env, "exec", map[string]any{"argv": []any{"true"}, "stdin": strings.Repeat("x", 4<<20)})
	if code, _, _ := execOut(t, out); code != 0 {
		t.Fatalf("exit_code = %d", code)
	}
	// Without stdin the child reads end-of-file instead of hanging.
	out = mustRun(t, tp.env, "exec", map[string]any{"argv": []any{"cat"}})
	if _, stdout, _ := execOut(t, out); stdout != "" {
		t.Fatalf("stdout = %q", stdout)
	}
}

func TestExecTruncatesLargeOutput(t *testing.T) {
	tp := newTestPlan(t)
	out := mustRun(t, tp.env, "exec", map[string]any{
		"argv": []any{"sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' a; echo done >&2"},
	})
	m := out.(map[string]any)
	if len(m["stdout"].(string)) != maxCapture || m["stdout_truncated"] != true {
		t.Fatalf("stdout len %d truncated %v", len(m["stdout"].(string)), m["stdout_truncated"])
	}
	if m["stderr"] != "done\n" || m["stderr_truncated"] != false || m["exit_code"] != int64(0) {
		t.Fatalf("stderr %q truncated %v exit %v", m["stderr"], m["stderr_truncated"], m["exit_code"])
	}
}

func TestExecInvalidUTF8OutputIsReplaced(t *testing.T) {
	tp := newTestPlan(t)
	out := mustRun(t, tp.env, "exec", map[string]any{"argv": []any{"printf", `a\377b`}})
	if _, stdout, _ := execOut(t, out); stdout != "a\uFFFDb" {
		t.Fatalf("stdout = %q", stdout)
	}
}

func TestExecDir(t *testing.T) {
	tp := newTestPlan(t)
	writeFile(t, filepath.Join(tp.work, "work/marker"), "x")
	out := mustRun(t, tp.env, "exec", map[string]any{"argv": []any{"ls"}, "dir": "work"})
	if _, stdout, _ := execOut(t, out); stdout != "marker\n" {
		t.Fatalf("ls in work = %q", stdout)
	}
	out = mustRun(t, tp.env, "exec", map[string]any{"argv": []any{"pwd"}})
	if _, stdout, _ := execOut(t, out); strings.TrimSpace(stdout) != tp.work {
		t.Fatalf("default dir = %q, want the plan's workspace %q", stdout, tp.work)
	}
	if _, err := run(t, tp.env, "exec", map[string]any{"argv": []any{"pwd"}, "dir": "missing"}); err == nil {
		t.Fatal("missing dir accepted")
	}
	if _, err := run(t, tp.env, "exec", map[string]any{"argv": []any{"pwd"}, "dir": "work/marker"}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("file as dir: %v", err)
	}
}

func TestExecDirRefusesEscapes(t *testing.T) {
	tp := newTestPlan(t)
	for name, dir := range escapeCases(t, tp) {
		if name == "through dir symlink" || name == "symlink to /etc" {
			dir = filepath.Dir(dir) // the symlinked directories themselves
		}
		_, err := run(t, tp.env, "exec", map[string]any{"argv": []any{"touch", "pwned"}, "dir": dir})
		if !errors.Is(err, ErrOutsidePlan) {
			t.Errorf("%s: dir %q: err = %v, want ErrOutsidePlan", name, dir, err)
		}
	}
	for _, sib := range []string{tp.sibling, tp.workSibling} {
		if entries, _ := os.ReadDir(sib); len(entries) != 1 {
			t.Fatalf("a command ran in the sibling %s: %v", sib, entries)
		}
	}
}

func TestExecRunAsDropsPrivileges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch users")
	}
	tp := newTestPlan(t)
	// t.TempDir directories are private; let the unprivileged child enter.
	for d := tp.dir; d != filepath.Clean(os.TempDir()) && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	env := *tp.env
	env.RunAs = &syscall.Credential{Uid: 65534, Gid: 65534}
	out := mustRun(t, &env, "exec", map[string]any{"argv": []any{"id", "-u"}})
	if _, stdout, _ := execOut(t, out); strings.TrimSpace(stdout) != "65534" {
		t.Fatalf("child uid = %q, want 65534", stdout)
	}
	out = mustRun(t, &env, "exec", map[string]any{"argv": []any{"id", "-G"}})
	if _, stdout, _ := execOut(t, out); strings.TrimSpace(stdout) != "65534" {
		t.Fatalf("child groups = %q, want only 65534", stdout)
	}
}

func TestExecProgramNotFound(t *testing.T) {
	tp := newTestPlan(t)
	_, err := run(t, tp.env, "exec", map[string]any{"argv": []any{"aura-no-such-program"}})
	if !errors.Is(err, exec.ErrNotFound) {
		t.Fatalf("err = %v", err)
	}
}

func TestExecParamErrors(t *testing.T) {
	tp := newTestPlan(t)
	for param, params := range map[string]map[string]any{
		"argv":    {"argv": []any{"echo", map[string]any{}}},
		"env":     {"argv": []any{"true"}, "env": map[string]any{"A=B": "c"}},
		"dir":     {"argv": []any{"true"}, "dir": true},
		"stdin":   {"argv": []any{"true"}, "stdin": int64(1)},
		"timeout": {"argv": []any{"true"}, "timeout": "forever"},
	} {
		_, err := run(t, tp.env, "exec", params)
		asParamError(t, err, param)
	}
	_, err := run(t, tp.env, "exec", map[string]any{})
	asParamError(t, err, "argv")
}

// The test's own inherited descriptor (opened without close-on-exec, as C
// code might) must not reach the child.
func TestExecDoesNotLeakDescriptors(t *testing.T) {
	tp := newTestPlan(t)
	leaked := filepath.Join(t.TempDir(), "leaked-descriptor-marker")
	writeFile(t, leaked, "x")
	fd, err := syscall.Open(leaked, syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	out := mustRun(t, tp.env, "exec", map[string]any{"argv": []any{"sh", "-c", "ls -l /proc/$$/fd"}})
	_, stdout, _ := execOut(t, out)
	if strings.Contains(stdout, "leaked-descriptor-marker") {
		t.Fatalf("child inherited fd %d:\n%s", fd, stdout)
	}
}

// startGroup runs script (which must write the pids to watch, one per line,
// to the file "pids") under exec in the background and returns those pids
// once they are written, plus a channel with the call's result.
func startGroup(t *testing.T, ctx context.Context, env *Env, params map[string]any) ([]int, <-chan error) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		reg := Builtin()
		defer reg.Close()
		spec, _ := reg.Lookup("exec")
		_, err := spec.Run(ctx, env, params)
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(env.WorkDir, "pids"))
		lines := strings.Fields(string(b))
		if len(lines) >= 2 && strings.HasSuffix(string(b), "\n") {
			pids := make([]int, len(lines))
			for i, l := range lines {
				pid, err := strconv.Atoi(l)
				if err != nil {
					t.Fatalf("bad pid %q", l)
				}
				pids[i] = pid
			}
			return pids, done
		}
		select {
		case err := <-done:
			t.Fatalf("exec ended before writing its pids: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("exec did not write its pids within 10s")
		}
	}
}

// processGone reports whether pid no longer runs: absent, or a zombie
// waiting for a reaper (it runs no code and holds no resources but a slot).
func processGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] == 'Z' || s[i+2] == 'X'
	}
	return false
}

func waitGone(t *testing.T, pids []int) {
	t.Helper()
	for _, pid := range pids {
		testbin.WaitFor(t, fmt.Sprintf("process %d to be gone", pid), 5*time.Second, func() bool { return processGone(pid) })
	}
}

func waitResult(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("exec did not return")
		return nil
	}
}

func TestExecCancelKillsWholeProcessGroup(t *testing.T) {
	tp := newTestPlan(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pids, done := startGroup(t, ctx, tp.env, map[string]any{
		"argv": []any{"sh", "-c", "sleep 30 & echo $! > pids.tmp; sleep 30 & echo $! >> pids.tmp; mv pids.tmp pids; wait"},
	})
	cancel()
	err := waitResult(t, done)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	waitGone(t, pids)
}

// Children that ignore SIGTERM are killed with SIGKILL after KillGrace.
func TestExecTimeoutEscalatesToSIGKILL(t *testing.T) {
	tp := newTestPlan(t)
	env := *tp.env
	env.KillGrace = 200 * time.Millisecond
	pids, done := startGroup(t, context.Background(), &env, map[string]any{
		"argv":    []any{"sh", "-c", "trap '' TERM; sleep 30 & echo $! > pids.tmp; echo $$ >> pids.tmp; mv pids.tmp pids; wait"},
		"timeout": "300ms",
	})
	err := waitResult(t, done)
	var te *TimeoutError
	if !errors.As(err, &te) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want *TimeoutError", err)
	}
	if !strings.Contains(err.Error(), "timed out after 300ms") {
		t.Fatalf("message = %q", err)
	}
	waitGone(t, pids)
}

// A background process the command leaves behind is killed when it exits,
// and does not hold the step open through the inherited stdout pipe.
func TestExecKillsLeftoversOnExit(t *testing.T) {
	tp := newTestPlan(t)
	out, err := run(t, tp.env, "exec", map[string]any{
		"argv": []any{"sh", "-c", "sleep 30 & echo $! > pids; echo $$ >> pids; echo started"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, stdout, _ := execOut(t, out); stdout != "started\n" {
		t.Fatalf("stdout = %q", stdout)
	}
	b, _ := os.ReadFile(filepath.Join(tp.work, "pids"))
	var pids []int
	for _, l := range strings.Fields(string(b)) {
		pid, _ := strconv.Atoi(l)
		pids = append(pids, pid)
	}
	if len(pids) != 2 {
		t.Fatalf("pids file = %q", b)
	}
	waitGone(t, pids)
}

func TestExecRefusesCancelledContext(t *testing.T) {
	tp := newTestPlan(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := runCtx(t, ctx, tp.env, "exec", map[string]any{"argv": []any{"touch", "ran"}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(tp.work, "ran")); err == nil {
		t.Fatal("command ran with a cancelled context")
	}
}

// TestExecLeavesNothingBehind runs a command that starts a grandchild in a
// session of its own and exits at once: the grandchild is orphaned while
// the step still runs, outside the step's process group. With a containment
// tree it must be gone (killed and reaped) once exec returns.
func TestExecLeavesNothingBehind(t *testing.T) {
	for _, mode := range []containment.Mode{containment.ModeCgroup, containment.ModeSubreaper} {
		t.Run(string(mode), func(t *testing.T) {
			tree, err := containment.New(containment.Config{Mode: mode})
			if err != nil {
				if mode == containment.ModeCgroup {
					t.Skipf("cgroup mode unavailable here: %v", err)
				}
				t.Fatal(err)
			}
			defer tree.Close()
			tp := newTestPlan(t)
			tp.env.Processes = tree
			out := mustRun(t, tp.env, "exec", map[string]any{"argv": []any{"sh", "-c",
				"setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $!"}})
			pid, err := strconv.Atoi(strings.TrimSpace(out.(map[string]any)["stdout"].(string)))
			if err != nil {
				t.Fatal(err)
			}
			defer syscall.Kill(pid, syscall.SIGKILL)
			testbin.WaitFor(t, fmt.Sprintf("the setsid grandchild %d to end with its exec step", pid), 5*time.Second, func() bool {
				return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
			})
		})
	}
}

// BenchmarkExecTrue measures one exec step of `true`, without containment
// and in each containment mode this machine supports.
func BenchmarkExecTrue(b *testing.B) {
	for _, mode := range []containment.Mode{"", containment.ModeCgroup, containment.ModeSubreaper} {
		name := string(mode)
		if name == "" {
			name = "none"
		}
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			env := &Env{PlanDir: dir, WorkDir: filepath.Join(dir, "work")}
			if mode != "" {
				tree, err := containment.New(containment.Config{Mode: mode})
				if err != nil {
					b.Skipf("%s mode unavailable here: %v", mode, err)
				}
				defer tree.Close()
				env.Processes = tree
			}
			reg := Builtin()
			defer reg.Close()
			spec, _ := reg.Lookup("exec")
			params := map[string]any{"argv": []any{"true"}}
			ctx := context.Background()
			for b.Loop() {
				if _, err := spec.Run(ctx, env, params); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
