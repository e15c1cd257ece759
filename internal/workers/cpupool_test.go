package workers

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aura-dev/aura/internal/testbin"
)

func TestCPUPoolEchoRoundTripsValues(t *testing.T) {
	p := newTestPool(t, testConfig(t, 1))
	params := map[string]any{
		"int":     int64(math.MaxInt64),
		"neg":     int64(math.MinInt64),
		"float":   3.25,
		"str":     "héllo\x00wörld",
		"empty":   "",
		"t":       true,
		"f":       false,
		"null":    nil,
		"list":    []any{int64(1), "two", []any{}, map[string]any{}},
		"nested":  map[string]any{"a": map[string]any{"b": []any{nil, 1.5}}},
		"bigfrac": 1e300,
	}
	out, err := p.Run(context.Background(), Job{Action: "echo", Params: params})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !reflect.DeepEqual(out, params) {
		t.Fatalf("echo changed the params:\n got %#v\nwant %#v", out, params)
	}
}

func TestCPUPoolCarriesLargeValues(t *testing.T) {
	p := newTestPool(t, testConfig(t, 1))
	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB: far more than a pipe holds
	for range 3 {
		params := map[string]any{"blob": big, "list": make([]any, 10_000)}
		out, err := p.Run(context.Background(), Job{Action: "echo", Params: params, Timeout: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(out, params) {
			t.Fatal("a large value did not round-trip")
		}
	}
}

func TestCPUPoolActionErrorKeepsWorker(t *testing.T) {
	p := newTestPool(t, testConfig(t, 1))
	ctx := context.Background()
	before, _ := p.Run(ctx, Job{Action: "pid"})
	_, err := p.Run(ctx, Job{Action: "fail"})
	var je *JobError
	if !errors.As(err, &je) {
		t.Fatalf("got %v (%T), want *JobError", err, err)
	}
	if je.Msg != "it failed on purpose" || !reflect.DeepEqual(je.Output, map[string]any{"partial": int64(7)}) {
		t.Fatalf("JobError = %+v", je)
	}
	_, err = p.Run(ctx, Job{Action: "unencodable"})
	if !errors.As(err, &je) || !strings.Contains(je.Msg, "cannot be sent back") {
		t.Fatalf("unencodable output gave %v, want a JobError saying so", err)
	}
	_, err = p.Run(ctx, Job{Action: "echo", Params: map[string]any{"c": make(chan int)}})
	if !errors.Is(err, ErrUnsupportedValue) {
		t.Fatalf("unencodable params gave %v, want ErrUnsupportedValue", err)
	}
	after, _ := p.Run(ctx, Job{Action: "pid"})
	if before != after {
		t.Fatalf("the worker was replaced (pid %v -> %v) after failures that were not crashes", before, after)
	}
	if s := p.Stats(); s.Crashes != 0 || s.Restarts != 0 {
		t.Fatalf("stats after action errors: %+v", s)
	}
}

func TestCPUPoolSpinKilledAtTimeout(t *testing.T) {
	p := newTestPool(t, testConfig(t, 1))
	ctx := context.Background()
	pidfile := filepath.Join(t.TempDir(), "pid")
	_, err := p.Run(ctx, Job{Action: "spin", Params: map[string]any{"pidfile": pidfile}, Timeout: 300 * time.Millisecond})
	if !errors.Is(err, ErrJobTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("spin gave %v, want ErrJobTimeout", err)
	}
	spinner := readPID(t, pidfile)
	if _, exists := processState(spinner); exists {
		t.Fatalf("the spinning worker %d still exists after Run returned", spinner)
	}
	out, err := p.Run(ctx, Job{Action: "echo", Params: map[string]any{"x": int64(1)}})
	if err != nil || !reflect.DeepEqual(out, map[string]any{"x": int64(1)}) {
		t.Fatalf("next job: %v, %v", out, err)
	}
	if s := p.Stats(); s.Restarts != 1 || s.Crashes != 0 || s.Live != 1 {
		t.Fatalf("stats: %+v, want 1 restart, 0 crashes, 1 live", s)
	}
}

func TestCPUPoolCancelKillsWorker(t *testing.T) {
	p := newTestPool(t, testConfig(t, 1))
	pidfile := filepath.Join(t.TempDir(), "pid")
	cause := errors.New("operator cancelled the task")
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := p.Run(ctx, Job{Action: "sleep", Params: map[string]any{"ms": int64(60_000), "pidfile": pidfile}})
		done <- err
	}()
	pid := readPID(t, pidfile)
	cancel(cause)
	select {
	case err := <-done:
		if !errors.Is(err, cause) {
			t.Fatalf("cancelled Run gave %v, want the cause", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
	if _, exists := processState(pid); exists {
		t.Fatalf("worker %d still exists after its job was cancelled", pid)
	}
	waitLive(t, p, 1)
	if _, err := p.Run(context.Background(), Job{Action: "noop"}); err != nil {
		t.Fatalf("job after cancellation: %v", err)
	}
}

func TestCPUPoolCrashes(t *testing.T) {
	const size = 2
	p := newTestPool(t, testConfig(t, size))
	cases := []struct {
		name   string
		job    Job
		code   int
		signal string
		text   string
	}{
		{"os.Exit(3)", Job{Action: "exit", Params: map[string]any{"code": int64(3)}}, 3, "", "exit code 3"},
		{"SIGSEGV", Job{Action: "segv"}, -1, "SIGSEGV", "SIGSEGV"},
		{"panic", Job{Action: "panic"}, 2, "", "panic: boom"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := p.Run(context.Background(), tc.job)
			var ce *CrashError
			if !errors.As(err, &ce) {
				t.Fatalf("got %v (%T), want *CrashError", err, err)
			}
			if ce.ExitCode != tc.code || ce.Signal != tc.signal {
				t.Fatalf("CrashError = %+v, want exit code %d signal %q", ce, tc.code, tc.signal)
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("error %q does not mention %q", err, tc.text)
			}
			waitLive(t, p, size)
			if s := p.Stats(); s.Crashes != uint64(i+1) {
				t.Fatalf("crashes = %d, want %d", s.Crashes, i+1)
			}
			if _, err := p.Run(context.Background(), Job{Action: "noop"}); err != nil {
				t.Fatalf("job after the crash: %v", err)
			}
		})
	}
}

func TestCPUPoolExternalSIGKILL(t *testing.T) {
	const size = 2
	p := newTestPool(t, testConfig(t, size))
	pidfile := filepath.Join(t.TempDir(), "pid")
	done := make(chan error, 1)
	go func() {
		_, err := p.Run(context.Background(), Job{Action: "sleep", Params: map[string]any{"ms": int64(60_000), "pidfile": pidfile}})
		done <- err
	}()
	pid := readPID(t, pidfile)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its worker was killed")
	}
	var ce *CrashError
	if !errors.As(err, &ce) || ce.Signal != "SIGKILL" || ce.PID != pid {
		t.Fatalf("got %v, want a CrashError for SIGKILL of %d", err, pid)
	}
	waitLive(t, p, size)
	if slices.Contains(p.PIDs(), pid) {
		t.Fatalf("the killed worker %d is still listed", pid)
	}
}

func TestCPUPoolIdleWorkerDeathIsReplaced(t *testing.T) {
	p := newTestPool(t, testConfig(t, 1))
	pid := p.PIDs()[0]
	syscall.Kill(pid, syscall.SIGKILL)
	testbin.WaitFor(t, "the dead worker to be replaced", 20*time.Second, func() bool {
		pids := p.PIDs()
		return len(pids) == 1 && pids[0] != pid
	})
	out, err := p.Run(context.Background(), Job{Action: "pid"})
	if err != nil || out == int64(pid) {
		t.Fatalf("job after the idle worker died: %v, %v", out, err)
	}
}

func TestCPUPoolThousandJobsTwoWorkers(t *testing.T) {
	p := newTestPool(t, testConfig(t, 2))
	const jobs, callers = 1000, 8
	var wg sync.WaitGroup
	errs := make(chan error, jobs)
	pids := make(chan int64, jobs)
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; i < jobs; i += callers {
				want := map[string]any{"i": int64(i), "s": fmt.Sprint("job-", i), "l": []any{float64(i) / 2}}
				out, err := p.Run(context.Background(), Job{Action: "echo", Params: want})
				if err != nil {
					errs <- fmt.Errorf("job %d: %w", i, err)
					continue
				}
				if !reflect.DeepEqual(out, want) {
					errs <- fmt.Errorf("job %d: got %#v, want %#v", i, out, want)
				}
				if i%10 == 0 {
					pid, _ := p.Run(context.Background(), Job{Action: "pid"})
					pids <- pid.(int64)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	close(pids)
	for err := range errs {
		t.Error(err)
	}
	seen := map[int64]bool{}
	for pid := range pids {
		seen[pid] = true
	}
	if len(seen) != 2 {
		t.Errorf("jobs ran on %d distinct workers, want 2", len(seen))
	}
	if s := p.Stats(); s.Jobs != jobs+jobs/10 || s.Busy != 0 || s.Queued != 0 || s.Restarts != 0 {
		t.Errorf("stats: %+v", s)
	}
}

func TestCPUPoolRecyclesAfterMaxJobs(t *testing.T) {
	cfg := testConfig(t, 1)
	cfg.MaxJobs = 3
	p := newTestPool(t, cfg)
	var pids []int64
	for range 7 {
		out, err := p.Run(context.Background(), Job{Action: "pid"})
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, out.(int64))
	}
	for i := range pids {
		sameAsPrev := i > 0 && pids[i] == pids[i-1]
		if wantSame := i%3 != 0; sameAsPrev != wantSame {
			t.Fatalf("worker pids %v: want a new worker every 3 jobs", pids)
		}
	}
	if s := p.Stats(); s.Restarts != 2 || s.Crashes != 0 {
		t.Fatalf("stats: %+v, want 2 restarts and no crashes", s)
	}
}

func TestCPUPoolRecyclesOverMaxRSS(t *testing.T) {
	cfg := testConfig(t, 1)
	cfg.MaxRSS = 200 << 20
	p := newTestPool(t, cfg)
	ctx := context.Background()
	first, _ := p.Run(ctx, Job{Action: "pid"})
	if again, _ := p.Run(ctx, Job{Action: "pid"}); again != first {
		t.Fatalf("a worker under MaxRSS was recycled (%v -> %v)", first, again)
	}
	if _, err := p.Run(ctx, Job{Action: "alloc", Params: map[string]any{"mb": int64(300)}}); err != nil {
		t.Fatal(err)
	}
	next, err := p.Run(ctx, Job{Action: "pid"})
	if err != nil {
		t.Fatal(err)
	}
	if next == first {
		t.Fatalf("the worker kept running with 300 MiB resident over a 200 MiB MaxRSS")
	}
	if s := p.Stats(); s.Restarts != 1 || s.Crashes != 0 {
		t.Fatalf("stats: %+v, want 1 restart and no crashes", s)
	}
}

func TestCPUPoolWorkerEnvIsExactlyConfigured(t *testing.T) {
	t.Setenv("AURA_PARENT_SECRET", "s3cret")
	cfg := testConfig(t, 1)
	cfg.Env = append(cfg.Env, "LANG=C")
	p := newTestPool(t, cfg)
	out, err := p.Run(context.Background(), Job{Action: "env"})
	if err != nil {
		t.Fatal(err)
	}
	want := []any{}
	for _, kv := range cfg.Env {
		want = append(want, kv)
	}
	if !reflect.DeepEqual(out, want) {
		t.Fatalf("worker environment = %v, want exactly %v", out, want)
	}
}

func TestCPUPoolWorkerInheritsNoDescriptors(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "listening-socket-stand-in")
	if err := os.WriteFile(secret, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(secret)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Dup drops close-on-exec: a descriptor opened by non-Go code looks
	// like this, and would otherwise leak into the workers.
	leaky, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(leaky)

	p := newTestPool(t, testConfig(t, 1))
	out, err := p.Run(context.Background(), Job{Action: "fds"})
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range out.([]any) {
		if strings.Contains(fd.(string), secret) {
			t.Fatalf("the worker holds the parent's descriptor: %v", out)
		}
	}
}

func TestCPUPoolKillsTheJobsChildrenToo(t *testing.T) {
	sleepPath, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep command")
	}
	p := newTestPool(t, testConfig(t, 1))
	childpidfile := filepath.Join(t.TempDir(), "child")
	_, err = p.Run(context.Background(), Job{Action: "grandchild", Params: map[string]any{"sleep": sleepPath, "childpidfile": childpidfile}, Timeout: 500 * time.Millisecond})
	if !errors.Is(err, ErrJobTimeout) {
		t.Fatalf("got %v, want ErrJobTimeout", err)
	}
	child := readPID(t, childpidfile)
	// The orphan is reaped by init (or lingers as its zombie); it must not run.
	testbin.WaitFor(t, "the action's child to die", 10*time.Second, func() bool {
		state, exists := processState(child)
		return !exists || state == 'Z'
	})
}

func TestCPUPoolCPUTimeLimit(t *testing.T) {
	cfg := testConfig(t, 1)
	cfg.RLimitCPU = time.Second
	p := newTestPool(t, cfg)
	ctx := context.Background()
	_, err := p.Run(ctx, Job{Action: "spin", Timeout: 30 * time.Second})
	var je *JobError
	if !errors.As(err, &je) || !strings.Contains(je.Msg, "CPU time limit") {
		t.Fatalf("got %v, want a JobError about the CPU time limit", err)
	}
	if _, err := p.Run(ctx, Job{Action: "noop"}); err != nil {
		t.Fatalf("job after the limit: %v", err)
	}
	if s := p.Stats(); s.Crashes != 0 || s.Restarts != 1 {
		t.Fatalf("stats: %+v, want the worker replaced without a crash", s)
	}
}

func TestCPUPoolQueuedRunHonoursContext(t *testing.T) {
	p := newTestPool(t, testConfig(t, 1))
	pidfile := filepath.Join(t.TempDir(), "pid")
	busy := make(chan error, 1)
	go func() {
		_, err := p.Run(context.Background(), Job{Action: "sleep", Params: map[string]any{"ms": int64(500), "pidfile": pidfile}})
		busy <- err
	}()
	readPID(t, pidfile)
	ctx, cancel := context.WithCancel(context.Background())
	queued := make(chan error, 1)
	go func() {
		_, err := p.Run(ctx, Job{Action: "noop"})
		queued <- err
	}()
	testbin.WaitFor(t, "a queued Run", 10*time.Second, func() bool { return p.Stats().Queued == 1 })
	cancel()
	if err := <-queued; !errors.Is(err, context.Canceled) {
		t.Fatalf("queued Run gave %v, want context.Canceled", err)
	}
	if q := p.Stats().Queued; q != 0 {
		t.Fatalf("queued = %d after the cancelled caller left", q)
	}
	if err := <-busy; err != nil {
		t.Fatalf("the running job: %v", err)
	}
	if _, err := p.Run(context.Background(), Job{Action: "noop"}); err != nil {
		t.Fatalf("job after the queue: %v", err)
	}
}

func TestCPUPoolCloseReapsEveryWorker(t *testing.T) {
	var mu sync.Mutex
	var started []int
	cfg := testConfig(t, 2)
	cfg.MaxJobs = 2
	cfg.onStart = func(pid int) {
		mu.Lock()
		started = append(started, pid)
		mu.Unlock()
	}
	p, err := startPool(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 5 {
		p.Run(ctx, Job{Action: "noop"})
	}
	p.Run(ctx, Job{Action: "exit", Params: map[string]any{"code": int64(1)}})
	p.Run(ctx, Job{Action: "spin", Timeout: 50 * time.Millisecond})
	waitLive(t, p, 2)

	pidfile := filepath.Join(t.TempDir(), "pid")
	running := make(chan error, 1)
	go func() {
		_, err := p.Run(ctx, Job{Action: "sleep", Params: map[string]any{"ms": int64(60_000), "pidfile": pidfile}})
		running <- err
	}()
	readPID(t, pidfile)
	p.Shutdown()
	if err := <-running; !errors.Is(err, ErrClosed) {
		t.Fatalf("job running at Shutdown gave %v, want ErrClosed", err)
	}
	if _, err := p.Run(ctx, Job{Action: "noop"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Shutdown gave %v, want ErrClosed", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(started) < 5 {
		t.Fatalf("only %d workers started; the test meant to churn through more", len(started))
	}
	for _, pid := range started {
		if state, exists := processState(pid); exists {
			t.Errorf("worker %d still exists after Shutdown (state %c)", pid, state)
		}
	}
	if s := p.Stats(); s.Live != 0 {
		t.Errorf("live = %d after Shutdown", s.Live)
	}
}

func TestCPUPoolRejectsANonWorkerCommand(t *testing.T) {
	cfg := testConfig(t, 1)
	cfg.Command = []string{"/bin/true"}
	cfg.StartTimeout = 5 * time.Second
	if _, err := startPool(context.Background(), cfg); err == nil {
		t.Fatal("a pool of /bin/true started")
	}
	cfg.Command = nil
	if _, err := startPool(context.Background(), cfg); err == nil {
		t.Fatal("a pool with no command started")
	}
	cfg.Command = []string{os.Args[0]}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := startPool(ctx, cfg); !errors.Is(err, context.Canceled) {
		t.Fatalf("a pool started under a cancelled context: %v", err)
	}
}

func TestWorkerMainRefusesToRunByHand(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = []string{childEnv + "=1"}
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitNotWorker {
		t.Fatalf("worker started without its pipes: %v, want exit code %d", err, exitNotWorker)
	}
}

func TestCPUPoolAddressSpaceLimit(t *testing.T) {
	if raceEnabled {
		t.Skip("the race runtime's shadow memory does not fit an address-space limit")
	}
	cfg := testConfig(t, 1)
	// An idle Go worker already reserves about 1.3 GiB of address space.
	cfg.RLimitAS = 2 << 30
	p := newTestPool(t, cfg)
	ctx := context.Background()
	if _, err := p.Run(ctx, Job{Action: "alloc", Params: map[string]any{"mb": int64(64)}}); err != nil {
		t.Fatalf("an allocation within the limit failed: %v", err)
	}
	_, err := p.Run(ctx, Job{Action: "alloc", Params: map[string]any{"mb": int64(1536)}})
	var ce *CrashError
	if !errors.As(err, &ce) || ce.ExitCode != 2 {
		t.Fatalf("an allocation over the limit gave %v, want the worker to crash out of memory", err)
	}
	waitLive(t, p, 1)
	if _, err := p.Run(ctx, Job{Action: "noop"}); err != nil {
		t.Fatalf("job after the out-of-memory crash: %v", err)
	}
}

func TestCPUPoolBacksOffAWorkerThatCannotStart(t *testing.T) {
	crashFile := filepath.Join(t.TempDir(), "crash")
	var mu sync.Mutex
	var starts []time.Time
	cfg := testConfig(t, 1)
	cfg.Env = append(cfg.Env, crashFileEnv+"="+crashFile)
	cfg.RestartBackoff = 20 * time.Millisecond
	cfg.MaxRestartBackoff = 80 * time.Millisecond
	cfg.onStart = func(int) {
		mu.Lock()
		starts = append(starts, time.Now())
		mu.Unlock()
	}
	p := newTestPool(t, cfg)
	if err := os.WriteFile(crashFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(p.PIDs()[0], syscall.SIGKILL)
	testbin.WaitFor(t, "six crashes", 20*time.Second, func() bool { return p.Stats().Crashes >= 6 })
	os.Remove(crashFile)
	waitLive(t, p, 1)
	if _, err := p.Run(context.Background(), Job{Action: "noop"}); err != nil {
		t.Fatalf("job after the crash loop: %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	// starts[0] is the first worker; each later start followed a crash
	// and waited at least the backoff: 20, 40, 80, 80, ... ms.
	want := []time.Duration{20, 40, 80, 80, 80}
	for i, w := range want {
		if gap := starts[i+2].Sub(starts[i+1]); gap < w*time.Millisecond {
			t.Errorf("restart %d came %s after the previous one, want at least %dms", i+2, gap, w)
		}
	}
}

func TestWorkersDieWithTheirParent(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = []string{parentEnv + "=1", "GORACE=atexit_sleep_ms=0"}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pids []int
	for range 2 {
		var pid int
		if _, err := fmt.Fscanln(stdout, &pid); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("reading the stand-in parent's worker pids: %v", err)
		}
		pids = append(pids, pid)
	}
	cmd.Process.Kill() // SIGKILL: no chance to clean up
	cmd.Wait()
	for _, pid := range pids {
		testbin.WaitFor(t, fmt.Sprintf("orphaned worker %d to die", pid), 10*time.Second, func() bool {
			state, exists := processState(pid)
			return !exists || state == 'Z'
		})
	}
}

func TestCPUPoolSIGKILLsAWorkerThatIgnoresSIGTERM(t *testing.T) {
	cfg := testConfig(t, 1)
	cfg.KillGrace = 200 * time.Millisecond
	p := newTestPool(t, cfg)
	pidfile := filepath.Join(t.TempDir(), "pid")
	_, err := p.Run(context.Background(), Job{Action: "ignore-sigterm", Params: map[string]any{"pidfile": pidfile}, Timeout: 200 * time.Millisecond})
	if !errors.Is(err, ErrJobTimeout) {
		t.Fatalf("got %v, want ErrJobTimeout", err)
	}
	if _, exists := processState(readPID(t, pidfile)); exists {
		t.Fatal("the worker that ignored SIGTERM outlived Run")
	}
	if _, err := p.Run(context.Background(), Job{Action: "noop"}); err != nil {
		t.Fatalf("job after the kill: %v", err)
	}
}

func TestCPUPoolKillsAWorkerThatBreaksTheProtocol(t *testing.T) {
	p := newTestPool(t, testConfig(t, 1))
	for name, bytes := range map[string]string{
		"unknown message": "\x01\x00\x00\x00Z",
		"absurd length":   "\xff\xff\xff\xff",
	} {
		_, err := p.Run(context.Background(), Job{Action: "garbage", Params: map[string]any{"bytes": bytes}, Timeout: 20 * time.Second})
		var ce *CrashError
		if !errors.As(err, &ce) || ce.Signal != "SIGKILL" {
			t.Fatalf("%s: got %v, want the worker killed", name, err)
		}
		waitLive(t, p, 1)
	}
	if _, err := p.Run(context.Background(), Job{Action: "noop"}); err != nil {
		t.Fatalf("job after the protocol errors: %v", err)
	}
}

// startPool builds a pool and starts it.
func startPool(ctx context.Context, cfg CPUConfig) (*CPUPool, error) {
	p, err := NewCPUPool(cfg)
	if err != nil {
		return nil, err
	}
	if err := p.Start(ctx); err != nil {
		return nil, err
	}
	return p, nil
}
