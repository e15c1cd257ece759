package execmgr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/aura-dev/aura/internal/actions"
	"github.com/aura-dev/aura/internal/engine"
	"github.com/aura-dev/aura/internal/hooks"
	"github.com/aura-dev/aura/internal/plan"
	"github.com/aura-dev/aura/internal/store"
	"github.com/aura-dev/aura/internal/testbin"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// builtins adapts the real builtin actions, plus one that panics.
type builtins struct{ reg *actions.Registry }

func (b builtins) Lookup(name string) (engine.Action, bool) {
	if name == "explode" {
		return explode{}, true
	}
	s, ok := b.reg.Lookup(name)
	return act{s}, ok
}

type act struct{ s actions.Spec }

func (a act) Portable() bool { return a.s.Portable }
func (a act) Run(ctx context.Context, env *engine.ActionEnv, p map[string]any) (any, error) {
	return a.s.Run(ctx, &actions.Env{PlanDir: env.Plan.Dir}, p)
}

type explode struct{}

func (explode) Portable() bool { return false }
func (explode) Run(context.Context, *engine.ActionEnv, map[string]any) (any, error) {
	panic("an action bug")
}

// finishCounter is a local after_task_run hook that counts finished tasks
// and, once a test watches, lets it wait for one (whether it finished
// already or not). Benchmarks only count.
type finishCounter struct {
	mu       sync.Mutex
	done     map[string]chan struct{}
	bound    map[string]map[string]string // task id -> the TaskContext's Resources
	n        atomic.Int64
	watching atomic.Bool
}

func (f *finishCounter) Name() string { return "counter" }
func (f *finishCounter) AfterTaskRun(ctx context.Context, req *hooks.AfterRunRequest) error {
	f.n.Add(1)
	if f.watching.Load() {
		if req.Resources != nil {
			f.mu.Lock()
			if f.bound == nil {
				f.bound = map[string]map[string]string{}
			}
			f.bound[req.ID] = req.Resources
			f.mu.Unlock()
		}
		close(f.channel(req.ID))
	}
	return nil
}

func (f *finishCounter) channel(id string) chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := f.done[id]
	if ch == nil {
		ch = make(chan struct{})
		f.done[id] = ch
	}
	return ch
}

func (f *finishCounter) watch(id string) <-chan struct{} { return f.channel(id) }

// resources is what the after_task_run hook of task id was told it held.
func (f *finishCounter) resources(id string) map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bound[id]
}

func newManager(tb testing.TB, limit int, opts ...func(*Config)) (*Manager, *finishCounter) {
	tb.Helper()
	st := store.NewMemory(store.Options{Logger: quiet})
	tb.Cleanup(func() { st.Close() })
	_, bench := tb.(*testing.B)
	return newManagerOn(tb, st, limit, !bench, opts...)
}

var quiet = slog.New(slog.DiscardHandler)

// newManagerOn builds a Manager over st with the test plans and a
// finishCounter (watching: tests can wait for single tasks), and shuts it
// down at the end of the test. opts adjust its Config.
func newManagerOn(tb testing.TB, st store.DB, limit int, watching bool, opts ...func(*Config)) (*Manager, *finishCounter) {
	tb.Helper()
	reg := actions.Builtin()
	set, err := plan.Load("testdata/plans", plan.Options{ActionKnown: func(n string) bool {
		_, ok := builtins{reg}.Lookup(n)
		return ok
	}})
	if err != nil {
		tb.Fatal(err)
	}
	hr := hooks.NewRegistry(quiet)
	fc := &finishCounter{done: map[string]chan struct{}{}}
	fc.watching.Store(watching)
	hr.Register(fc)
	cfg := Config{Plans: set, Store: st, Hooks: hr, Engine: engine.New(engine.Config{Actions: builtins{reg}, Logger: quiet}),
		GlobalLimit: limit, Logger: quiet}
	for _, o := range opts {
		o(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		m.Shutdown(context.Background())
		reg.Close()
	})
	return m, fc
}

func TestActionPanicFailsOnlyThatTask(t *testing.T) {
	m, fc := newManager(t, 4)
	ctx := context.Background()
	resp, err := m.Submit(ctx, &aurav1.SubmitRequest{Task: "bench/panics"})
	if err != nil {
		t.Fatal(err)
	}
	done := fc.watch(resp.TaskId)
	<-done
	task, err := m.Get(ctx, resp.TaskId)
	if err != nil {
		t.Fatal(err)
	}
	if task.Status != aurav1.TaskStatus_TASK_STATUS_FAILED || task.Error.GetStep() == "" {
		t.Fatalf("panicking task: %s %v", task.Status, task.Error)
	}
	// The manager still runs other tasks.
	resp, err = m.Submit(ctx, &aurav1.SubmitRequest{Task: "bench/noop"})
	if err != nil {
		t.Fatal(err)
	}
	<-fc.watch(resp.TaskId)
	if task, _ := m.Get(ctx, resp.TaskId); task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("next task: %s", task.Status)
	}
}

func TestGetUnknownIsNotFound(t *testing.T) {
	m, _ := newManager(t, 1)
	_, err := m.Get(context.Background(), "nope")
	var nf *NotFoundError
	if !errors.As(err, &nf) || !errors.Is(err, ErrNotFound) {
		t.Fatalf("got %v", err)
	}
	if _, err := m.Cancel(context.Background(), "nope", ""); !errors.As(err, &nf) {
		t.Fatalf("cancel unknown: %v", err)
	}
}

func TestDrainingRefusesSubmissions(t *testing.T) {
	m, _ := newManager(t, 1)
	m.Shutdown(context.Background())
	if _, err := m.Submit(context.Background(), &aurav1.SubmitRequest{Task: "bench/noop"}); !errors.Is(err, ErrDraining) {
		t.Fatalf("got %v, want ErrDraining", err)
	}
}

// countHook is a local hook on before_task_run and after_task_run that
// counts; the benchmark registers four of them.
type countHook struct {
	name          string
	before, after atomic.Int64
}

func (h *countHook) Name() string { return h.name }
func (h *countHook) BeforeTaskRun(context.Context, *hooks.BeforeRunRequest, *hooks.BeforeRunResponse) error {
	h.before.Add(1)
	return nil
}
func (h *countHook) AfterTaskRun(context.Context, *hooks.AfterRunRequest) error {
	h.after.Add(1)
	return nil
}

// BenchmarkManagerNoopTasks pushes no-op tasks through the whole in-process
// lifecycle (validate, record, admit, hooks, engine, finish) with the
// in-memory store; the figure is tasks/s. Sub-benchmarks vary the resource
// keys each task holds (keys=0, 1, 8; limits high enough that admission
// never waits on them) and the local hooks (hooks=4, each on
// before_task_run and after_task_run); keys=0/unrecorded runs over a store
// that keeps nothing, to show what the manager itself costs, and sqlite
// runs keys=0 over the SQLite store with --sync always (its submitters
// are 32 a core, as many as fill its group commits). The tasks are
// submitted from GOMAXPROCS goroutines and run with a global limit of 64.
func BenchmarkManagerNoopTasks(b *testing.B) {
	cases := []struct {
		name, task string
		hooks      int
		unrecorded bool
		sqlite     bool
	}{
		{"keys=0", "bench/noop", 0, false, false},
		{"keys=1", "bench/noop_tagged", 0, false, false},
		{"keys=8", "bench/noop_keys8", 0, false, false},
		{"hooks=4", "bench/noop", 4, false, false},
		// The manager's own cost: the same tasks with a store that keeps
		// no record (writes are answered at once and dropped).
		{"keys=0/unrecorded", "bench/noop", 0, true, false},
		{"sqlite", "bench/noop", 0, false, true},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var st store.DB = store.NewMemory(store.Options{Logger: quiet})
			b.Cleanup(func() { st.Close() })
			if c.unrecorded {
				st = unrecorded{st}
			}
			if c.sqlite {
				sq, err := store.Open(context.Background(), b.TempDir(), store.Options{Logger: quiet, Sync: store.SyncAlways})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { sq.Close() })
				st = sq
				b.SetParallelism(32)
			}
			m, fc := newManagerOn(b, st, 64, false)
			var hs []*countHook
			for i := range c.hooks {
				h := &countHook{name: fmt.Sprint("count", i)}
				m.hooks.Register(h)
				hs = append(hs, h)
			}
			submitParallel(b, m, fc, &aurav1.SubmitRequest{Task: c.task})
			b.StopTimer()
			m.Shutdown(context.Background()) // the other hooks of the last tasks may still be running
			for _, h := range hs {
				if h.before.Load() != int64(b.N) || h.after.Load() != int64(b.N) {
					b.Fatalf("hook %s saw %d before, %d after; want %d each", h.name, h.before.Load(), h.after.Load(), b.N)
				}
			}
		})
	}
}

// unrecorded is a store whose writes succeed at once and keep nothing; it
// reads (nothing) from an empty in-memory store. Only for measuring what
// the manager costs without its records.
type unrecorded struct{ store.DB }

func (unrecorded) Write(context.Context, store.Batch) *store.Pending { return store.Finished(nil) }

// A task releases its slots before its terminal record commits, so the next
// task on the resource need not wait for that commit; the log must still
// never show two holders of a limit-1 resource: every task.finished comes
// before the next task.running. Real SQLite store, durable commits.
func TestLogNeverShowsAResourceOverItsLimit(t *testing.T) {
	sq, err := store.Open(context.Background(), t.TempDir(), store.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sq.Close() }) // cleanups run last first: this after the manager's shutdown
	st := &racingEnds{DB: sq}
	m, fc := newManagerOn(t, st, 8, true)
	ctx := context.Background()
	req := &aurav1.SubmitRequest{Task: "bench/noop", ResourceTags: []string{"dev:1"}}
	var ids []string
	// The first task's end (nothing else queued) lets a new submission in
	// while its terminal write is being queued, and gives the newcomer
	// time to start if its slot were free already.
	st.onEnd = func() {
		resp, err := m.Submit(ctx, req)
		if err != nil {
			t.Error(err)
			return
		}
		ids = append(ids, resp.TaskId)
		deadline := time.Now().Add(200 * time.Millisecond)
		for time.Now().Before(deadline) {
			if task, _ := m.Get(ctx, resp.TaskId); task.GetStatus() != aurav1.TaskStatus_TASK_STATUS_QUEUED {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
	resp, err := m.Submit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	first := resp.TaskId
	<-fc.watch(first)
	for range 20 {
		resp, err := m.Submit(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, resp.TaskId)
	}
	ids = append(ids, first)
	for i := 0; i < len(ids); i++ {
		select {
		case <-fc.watch(ids[i]):
		case <-time.After(time.Minute):
			t.Fatalf("task %s did not finish", ids[i])
		}
	}
	evs, err := sq.Events(ctx, 0, store.EventFilter{Types: []string{"task.running", "task.finished"}}, 10000)
	if err != nil {
		t.Fatal(err)
	}
	holders, runs := 0, 0
	for _, e := range evs {
		switch e.Type {
		case "task.running":
			runs++
			if holders++; holders > 1 {
				t.Fatalf("event %d: %s runs while another task holds dev:1", e.Seq, e.TaskID)
			}
		case "task.finished":
			holders--
		}
	}
	if runs != len(ids) || len(ids) != 22 {
		t.Fatalf("%d task.running events for %d tasks, want 22", runs, len(ids))
	}
}

// racingEnds is the SQLite store calling onEnd (once) as the first
// terminal write is about to be queued.
type racingEnds struct {
	store.DB
	once  sync.Once
	onEnd func()
}

func (s *racingEnds) Write(ctx context.Context, b store.Batch) *store.Pending {
	if b.Update != nil && b.Update.FinishedAt != (time.Time{}) {
		s.once.Do(s.onEnd)
	}
	return s.DB.Write(ctx, b)
}

// A submission whose creation fails to commit is an error to the caller and
// leaves no trace: it never runs, no hook hears of it, nothing counts it,
// even though it was admitted before the failure was known.
func TestUnrecordedSubmissionNeverRuns(t *testing.T) {
	mem := store.NewMemory(store.Options{Logger: quiet})
	t.Cleanup(func() { mem.Close() })
	st := &failingCreates{DB: mem, made: make(chan func(error), 1)}
	m, _ := newManagerOn(t, st, 4, true)
	h := &countHook{name: "count"}
	m.hooks.Register(h)
	submitted := make(chan error, 1)
	go func() {
		_, err := m.Submit(context.Background(), &aurav1.SubmitRequest{Task: "bench/noop"})
		submitted <- err
	}()
	fail := <-st.made
	// The task is admitted while its creation is still in flight ...
	testbin.WaitFor(t, "the task to be admitted while its creation is in flight", 10*time.Second, func() bool {
		s, _ := m.Stats()
		return s.InUse == 1
	})
	// ... and then the creation fails.
	fail(errors.New("disk full"))
	if err := <-submitted; err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Submit: %v, want the store's error", err)
	}
	m.Shutdown(context.Background()) // waits for the admitted task to be dropped
	if b, a := h.before.Load(), h.after.Load(); b != 0 || a != 0 {
		t.Fatalf("hooks heard of an unrecorded task: %d before, %d after", b, a)
	}
	if s, counts := m.Stats(); len(counts) != 0 || s.InUse != 0 {
		t.Fatalf("unrecorded task counted: %v, %d in use", counts, s.InUse)
	}
	if evs, _ := mem.Events(context.Background(), 0, store.EventFilter{}, 0); len(evs) != 0 {
		t.Fatalf("events recorded: %v", evs)
	}
}

// failingCreates is a store whose task creations never commit: it hands
// the test the function that ends each one.
type failingCreates struct {
	store.DB
	made chan func(error)
}

func (f *failingCreates) Write(ctx context.Context, b store.Batch) *store.Pending {
	if b.Create == nil {
		return f.DB.Write(ctx, b)
	}
	p, complete := store.NewPending()
	f.made <- func(err error) { complete(nil, err) }
	return p
}

// Cancel stops a running task and returns its terminal snapshot; asked
// again once it is over, it returns at once with the same answer.
func TestCancelRunningTaskWaitsForItsEnd(t *testing.T) {
	m, _ := newManager(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := m.Submit(ctx, &aurav1.SubmitRequest{Task: "bench/sleep"})
	if err != nil {
		t.Fatal(err)
	}
	testbin.WaitFor(t, "the task to run", 30*time.Second, func() bool {
		task, err := m.Get(ctx, resp.TaskId)
		return err == nil && task.Status == aurav1.TaskStatus_TASK_STATUS_RUNNING
	})
	for range 2 {
		task, err := m.Cancel(ctx, resp.TaskId, "enough")
		if err != nil {
			t.Fatal(err)
		}
		if task.Status != aurav1.TaskStatus_TASK_STATUS_CANCELLED || ctx.Err() != nil {
			t.Fatalf("Cancel returned %s (ctx %v), want CANCELLED at once", task.Status, ctx.Err())
		}
	}
}

// submitParallel submits req b.N times from parallel goroutines, waits
// until fc has heard every task end, and reports tasks/s.
func submitParallel(b *testing.B, m *Manager, fc *finishCounter, req *aurav1.SubmitRequest) {
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	cpu := processCPU()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := m.Submit(ctx, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
	for fc.n.Load() < int64(b.N) {
		time.Sleep(100 * time.Microsecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tasks/s")
	b.ReportMetric(float64(processCPU()-cpu)/float64(time.Microsecond)/float64(b.N), "cpu-µs/task")
}

// processCPU is the CPU time (user and system) the process has used: on a
// shared machine a rate mostly measures the share of the cores the run
// got, while the CPU time a task costs stays put.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
