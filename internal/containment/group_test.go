package containment

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// modes runs f once per mode this machine supports.
func modes(t *testing.T, f func(t *testing.T, tr *Tree)) {
	for _, m := range []Mode{ModeCgroup, ModeSubreaper} {
		t.Run(string(m), func(t *testing.T) {
			tr, err := New(Config{Mode: m})
			if err != nil {
				if m == ModeCgroup {
					t.Skipf("cgroup mode unavailable here: %v", err)
				}
				t.Fatal(err)
			}
			t.Cleanup(func() { tr.Close() })
			if tr.Mode() != m {
				t.Fatalf("Mode() = %s, want %s", tr.Mode(), m)
			}
			f(t, tr)
		})
	}
}

// gone waits until pid no longer exists: killed and reaped.
func gone(t *testing.T, pid int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := syscall.Kill(pid, 0)
		if errors.Is(err, syscall.ESRCH) {
			return
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("process %d still exists %s later (kill(pid, 0) = %v)", pid, within, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startEscaper starts sh printing the pid of a grandchild that left the
// process group and session with setsid; keep says whether sh stays (as a
// sleep) or exits at once, orphaning the grandchild.
func startEscaper(t *testing.T, g *Group, keep bool) (*exec.Cmd, int) {
	t.Helper()
	script := `setsid sleep 300 >/dev/null 2>&1 </dev/null & echo $!`
	if keep {
		script += `; exec sleep 300`
	}
	cmd := exec.Command("sh", "-c", script)
	var out bytes.Buffer
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := g.Start(cmd); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	buf := make([]byte, 64)
	for !bytes.Contains(out.Bytes(), []byte("\n")) {
		n, err := pr.Read(buf)
		if err != nil {
			t.Fatalf("reading the grandchild's pid: %v (got %q)", err, out.String())
		}
		out.Write(buf[:n])
	}
	pr.Close()
	pid, err := strconv.Atoi(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	return cmd, pid
}

func TestGroupKillsEscapedGrandchildOnSignal(t *testing.T) {
	modes(t, func(t *testing.T, tr *Tree) {
		g, err := tr.NewGroup("exec")
		if err != nil {
			t.Fatal(err)
		}
		cmd, pid := startEscaper(t, g, true)
		if !g.Running() {
			t.Fatal("Running() = false with the step still running")
		}
		g.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
		gone(t, pid, 5*time.Second)
	})
}

func TestGroupKillsOrphanLeftBehind(t *testing.T) {
	modes(t, func(t *testing.T, tr *Tree) {
		g, err := tr.NewGroup("exec")
		if err != nil {
			t.Fatal(err)
		}
		cmd, pid := startEscaper(t, g, false)
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		// A cgroup holds the orphan until its step ends. In subreaper mode
		// it was reparented to this process and any sweep may kill it
		// early (the escaper's own exit triggers one), so only its end is
		// certain there.
		if tr.Mode() == ModeCgroup {
			if err := syscall.Kill(pid, 0); err != nil {
				t.Fatalf("the orphan should still run before Close: %v", err)
			}
		}
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
		gone(t, pid, 5*time.Second)
	})
}

func TestTreeLeavesItsOwnChildrenToOSExec(t *testing.T) {
	modes(t, func(t *testing.T, tr *Tree) {
		g, err := tr.NewGroup("exec")
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("sh", "-c", "sleep 0.2; exit 3")
		if err := g.Start(cmd); err != nil {
			t.Fatal(err)
		}
		// Sweeps while it runs must neither kill nor reap it.
		for range 5 {
			tr.Sweep()
		}
		err = cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 {
			t.Fatalf("Wait = %v, want exit code 3", err)
		}
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestDetachedProcessDuringTheStep pins the documented difference between
// the modes for a process that detaches while its step still runs: a cgroup
// holds it until the group is closed; a subreaper kills it at its next sweep.
func TestDetachedProcessDuringTheStep(t *testing.T) {
	modes(t, func(t *testing.T, tr *Tree) {
		g, err := tr.NewGroup("exec")
		if err != nil {
			t.Fatal(err)
		}
		cmd, pid := startEscaper(t, g, false)
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		tr.Sweep()
		if tr.Mode() == ModeCgroup {
			if err := syscall.Kill(pid, 0); err != nil {
				t.Fatalf("cgroup mode: the detached process should live until its group closes: %v", err)
			}
		} else {
			gone(t, pid, 5*time.Second)
		}
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
		gone(t, pid, 5*time.Second)
	})
}

// TestDeadProcessGroupsAreKilledAtStart plays a process that was killed
// with SIGKILL and left its cgroup, with a process still in it, behind: the
// next Tree made in the same cgroup kills and removes it.
func TestDeadProcessGroupsAreKilledAtStart(t *testing.T) {
	probe, err := New(Config{Mode: ModeCgroup})
	if err != nil {
		t.Skipf("cgroup mode unavailable here: %v", err)
	}
	base := filepath.Dir(probe.dir)
	probe.Close()

	// A pid that is certainly dead: a child that exited and was reaped.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(base, cgroupDirPrefix+strconv.Itoa(dead.Process.Pid))
	if err := os.MkdirAll(filepath.Join(stale, "exec-1"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = removeCgroup(stale, probe.log) })
	fd, err := os.Open(filepath.Join(stale, "exec-1"))
	if err != nil {
		t.Fatal(err)
	}
	left := exec.Command("sleep", "300")
	left.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd())}
	err = left.Start()
	fd.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = left.Process.Kill() })
	exited := make(chan struct{})
	go func() { _ = left.Wait(); close(exited) }()

	tr, err := New(Config{Mode: ModeCgroup})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the process left in a dead process's cgroup is still running")
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the dead process's cgroup %s is still there: %v", stale, err)
	}
}

// TestGroupKillsOrphanedSubtrees starts five orphaned session leaders, each
// with a child of its own, and exits: every one of the ten is gone once the
// group is closed.
func TestGroupKillsOrphanedSubtrees(t *testing.T) {
	modes(t, func(t *testing.T, tr *Tree) {
		g, err := tr.NewGroup("exec")
		if err != nil {
			t.Fatal(err)
		}
		pidFile := filepath.Join(t.TempDir(), "pids")
		script := `for i in 1 2 3 4 5; do
  (setsid sh -c 'sleep 300 & echo $! >> "$1"; echo $$ >> "$1"; wait' sh "$1" </dev/null >/dev/null 2>&1 &)
done
while [ "$(cat "$1" 2>/dev/null | wc -l)" -lt 10 ]; do sleep 0.01; done`
		cmd := exec.Command("sh", "-c", script, "sh", pidFile)
		if err := g.Start(cmd); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(pidFile)
		if err != nil {
			t.Fatal(err)
		}
		pids := appendPIDs(nil, b)
		if len(pids) != 10 {
			t.Fatalf("recorded %d pids, want 10: %q", len(pids), b)
		}
		t.Cleanup(func() {
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		})
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
		for _, pid := range pids {
			gone(t, pid, 5*time.Second)
		}
	})
}
