package workers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"go.uber.org/goleak"

	"github.com/aura-dev/aura/internal/testbin"
)

// childEnv marks the test binary re-executed as a worker.
const childEnv = "AURA_WORKERS_TEST_CHILD"

// crashFileEnv names a file whose presence makes a test worker die at start.
const crashFileEnv = "AURA_WORKERS_TEST_CRASH_FILE"

// parentEnv marks the test binary re-executed as a stand-in aurad that
// starts a pool, prints its worker pids and waits to be killed.
const parentEnv = "AURA_WORKERS_TEST_PARENT"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		if path := os.Getenv(crashFileEnv); path != "" {
			if _, err := os.Stat(path); err == nil {
				os.Exit(7)
			}
		}
		os.Exit(WorkerMain(testHandler))
	}
	if os.Getenv(parentEnv) == "1" {
		os.Exit(standInParent())
	}
	goleak.VerifyTestMain(m)
}

// standInParent runs a pool of two workers until it is killed.
func standInParent() int {
	p, err := startPool(context.Background(), CPUConfig{
		Size:    2,
		Command: []string{os.Args[0]},
		Env:     []string{childEnv + "=1", "GORACE=atexit_sleep_ms=0"},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Busy workers would not notice the job pipe closing: only the
	// parent-death signal can end them.
	dir, err := os.MkdirTemp("", "aura-stand-in")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for i := range 2 {
		pidfile := filepath.Join(dir, strconv.Itoa(i))
		go p.Run(context.Background(), Job{Action: "sleep", Params: map[string]any{"ms": int64(120_000), "pidfile": pidfile}})
	}
	for i := range 2 {
		pidfile := filepath.Join(dir, strconv.Itoa(i))
		for {
			if b, err := os.ReadFile(pidfile); err == nil && len(b) > 0 {
				fmt.Println(string(b))
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	os.RemoveAll(dir)
	select {}
}

var retained [][]byte // memory the alloc action keeps

// testHandler implements the actions the tests drive workers with.
func testHandler(ctx context.Context, job Job) (any, error) {
	p := job.Params
	if path, ok := p["pidfile"].(string); ok {
		if err := os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			return nil, err
		}
	}
	switch job.Action {
	case "noop":
		return nil, nil
	case "echo":
		return p, nil
	case "pid":
		return int64(os.Getpid()), nil
	case "fail":
		return map[string]any{"partial": int64(7)}, errors.New("it failed on purpose")
	case "spin":
		var n atomic.Int64
		for {
			n.Add(1)
		}
	case "sleep":
		time.Sleep(time.Duration(p["ms"].(int64)) * time.Millisecond)
		return "slept", nil
	case "exit":
		os.Exit(int(p["code"].(int64)))
	case "panic":
		panic("boom")
	case "segv":
		segfault()
	case "alloc":
		b := make([]byte, p["mb"].(int64)<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		retained = append(retained, b)
		return int64(len(b)), nil
	case "env":
		env := []any{}
		for _, kv := range os.Environ() {
			env = append(env, kv)
		}
		return env, nil
	case "fds":
		entries, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			return nil, err
		}
		var targets []any
		for _, e := range entries {
			t, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
			targets = append(targets, e.Name()+" -> "+t)
		}
		return targets, nil
	case "grandchild":
		cmd := exec.CommandContext(ctx, p["sleep"].(string), "60")
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		os.WriteFile(p["childpidfile"].(string), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
		return nil, cmd.Wait()
	case "ignore-sigterm":
		signal.Ignore(syscall.SIGTERM)
		select {}
	case "garbage":
		// Write straight onto the result pipe, as a confused action might.
		out := os.NewFile(resultsFD, "results")
		_, err := out.Write([]byte(p["bytes"].(string)))
		return nil, err
	case "unencodable":
		return make(chan int), nil
	}
	return nil, fmt.Errorf("unknown action %q", job.Action)
}

// segfault dies of a real SIGSEGV: the Go runtime turns faults into panics
// or fatal errors, so the default disposition is restored first (straight
// through the kernel, behind the runtime's back) and then a nil write faults.
func segfault() {
	var sa struct {
		handler  uintptr
		flags    uint64
		restorer uintptr
		mask     uint64
	} // SIG_DFL
	syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(syscall.SIGSEGV), uintptr(unsafe.Pointer(&sa)), 0, 8, 0, 0)
	runtime.LockOSThread()
	var p *int
	*p = 1
}

// testConfig is a pool of test workers.
func testConfig(t testing.TB, size int) CPUConfig {
	t.Helper()
	// Crashing workers print stacks; keep them out of the test output
	// unless the test fails.
	stderr, err := os.Create(filepath.Join(t.TempDir(), "worker-stderr"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(stderr.Name())
			t.Logf("worker stderr:\n%s", b)
		}
		stderr.Close()
	})
	return CPUConfig{
		Stderr:  stderr,
		Size:    size,
		Command: []string{os.Args[0]},
		// A race-enabled binary otherwise sleeps a second on exit.
		Env:            []string{childEnv + "=1", "GORACE=atexit_sleep_ms=0"},
		KillGrace:      500 * time.Millisecond,
		RestartBackoff: 5 * time.Millisecond,
		StartTimeout:   20 * time.Second,
	}
}

func newTestPool(t testing.TB, cfg CPUConfig) *CPUPool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := startPool(ctx, cfg)
	if err != nil {
		t.Fatalf("starting the CPU pool: %v", err)
	}
	t.Cleanup(p.Shutdown)
	return p
}

// waitLive waits until the pool has n live workers and none queued for start.
func waitLive(t testing.TB, p *CPUPool, n int) {
	t.Helper()
	testbin.WaitFor(t, fmt.Sprintf("%d live workers", n), 20*time.Second, func() bool {
		return p.Stats().Live == n
	})
}

// readPID waits for a pid file written by a job and returns the pid.
func readPID(t testing.TB, path string) int {
	t.Helper()
	var pid int
	testbin.WaitFor(t, "pid file "+path, 20*time.Second, func() bool {
		b, err := os.ReadFile(path)
		if err != nil || len(b) == 0 {
			return false
		}
		pid, err = strconv.Atoi(string(b))
		return err == nil
	})
	return pid
}

// processGone reports whether pid has been reaped (or is a zombie of
// someone else's, when reaped is false).
func processState(pid int) (state byte, exists bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The state follows the parenthesised command name.
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == ')' && i+2 < len(b) {
			return b[i+2], true
		}
	}
	return 0, true
}
