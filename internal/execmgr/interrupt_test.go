package execmgr

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/aura-dev/aura/internal/actions"
	"github.com/aura-dev/aura/internal/engine"
	"github.com/aura-dev/aura/internal/hooks"
	"github.com/aura-dev/aura/internal/plan"
	"github.com/aura-dev/aura/internal/resources"
	"github.com/aura-dev/aura/internal/store"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// gates is an action set for tests that steer steps: the action gate
// counts its runs by name and blocks until the test opens that name (or
// the step's context ends); with pass: true it returns at once whether the
// name's flag is set. Every other action is a builtin.
type gates struct {
	reg  *actions.Registry
	mu   sync.Mutex
	runs map[string]int
	open map[string]chan struct{}
	flag map[string]bool
	all  bool // every gate is open (the test is over)
}

func (g *gates) Lookup(name string) (engine.Action, bool) {
	if name == "gate" {
		return gateAction{g}, true
	}
	s, ok := g.reg.Lookup(name)
	return act{s}, ok
}

type gateAction struct{ g *gates }

func (gateAction) Portable() bool { return false }
func (a gateAction) Run(ctx context.Context, _ *engine.ActionEnv, p map[string]any) (any, error) {
	name, _ := p["name"].(string)
	g := a.g
	g.mu.Lock()
	g.runs[name]++
	if pass, _ := p["pass"].(bool); pass {
		defer g.mu.Unlock()
		return g.flag[name], nil
	}
	ch := g.gate(name)
	g.mu.Unlock()
	select {
	case <-ch:
		return name, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

func (g *gates) gate(name string) chan struct{} {
	ch := g.open[name]
	if ch == nil {
		ch = make(chan struct{})
		g.open[name] = ch
		if g.all {
			close(ch)
		}
	}
	return ch
}

// openAll opens every gate, now and to come, so that a failed test's
// tasks end and the manager can shut down.
func (g *gates) openAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.all = true
	for _, ch := range g.open {
		select {
		case <-ch:
		default:
			close(ch)
		}
	}
}

// release opens the gate name for good.
func (g *gates) release(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.gate(name):
	default:
		close(g.gate(name))
	}
}

func (g *gates) count(name string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.runs[name]
}

func (g *gates) setFlag(name string, v bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.flag[name] = v
}

// eventually polls cond until it holds or 10s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// newInterruptManager builds a Manager over testdata/interrupts, a pool
// "device" of instances a and b, and the gates.
func newInterruptManager(t *testing.T) (*Manager, *finishCounter, *gates, store.DB) {
	t.Helper()
	decl := &resources.Declarations{Pools: []resources.Pool{{Name: "device", Instances: []string{"a", "b"}, Limit: 1}}}
	reg := actions.Builtin()
	g := &gates{reg: reg, runs: map[string]int{}, open: map[string]chan struct{}{}, flag: map[string]bool{}}
	set, err := plan.Load("testdata/interrupts", plan.Options{ResourceTagValid: decl.CheckTagString})
	if err != nil {
		t.Fatal(err)
	}
	st := store.NewMemory(store.Options{Logger: quiet})
	t.Cleanup(func() { st.Close() })
	hr := hooks.NewRegistry(quiet)
	fc := &finishCounter{done: map[string]chan struct{}{}}
	fc.watching.Store(true)
	hr.Register(fc)
	m, err := New(Config{Plans: set, Store: st, Hooks: hr, Engine: engine.New(engine.Config{Actions: g, Logger: quiet}),
		GlobalLimit: 8, Logger: quiet, Resources: decl})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Shutdown(context.Background())
		reg.Close()
	})
	t.Cleanup(g.openAll) // first: a failed test leaves tasks waiting on gates
	return m, fc, g, st
}

func submitLong(t *testing.T, m *Manager, task, tag string, timeout time.Duration) string {
	t.Helper()
	in, _ := structpb.NewStruct(map[string]any{"tag": tag})
	req := &aurav1.SubmitRequest{Task: task, Inputs: in}
	if timeout > 0 {
		req.Timeout = durationpb.New(timeout)
	}
	resp, err := m.Submit(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp.TaskId
}

func status(t *testing.T, m *Manager, id string) aurav1.TaskStatus {
	t.Helper()
	task, err := m.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return task.Status
}

// interruptAsync runs Interrupt on its own goroutine; the channel gets
// its result.
func interruptAsync(m *Manager, id string, in Interrupt) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- m.Interrupt(context.Background(), id, in) }()
	return ch
}

// taskEvents are the types of the task events recorded for id, in order.
func taskEvents(t *testing.T, st store.DB, id string) []string {
	t.Helper()
	evs, err := st.Events(context.Background(), 0, store.EventFilter{TaskID: id}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		if !e.Hook {
			out = append(out, e.Type)
		}
	}
	return out
}

// only keeps the events of interest, in order.
func only(evs []string, keep ...string) []string {
	var out []string
	for _, e := range evs {
		for _, k := range keep {
			if e == k {
				out = append(out, e)
			}
		}
	}
	return out
}

func TestInterruptPausesAtTheStepBoundaryAndResumesAtTheNextStep(t *testing.T) {
	m, fc, g, st := newInterruptManager(t)
	id := submitLong(t, m, "work/long", "t1", 0)
	other := submitLong(t, m, "work/long", "t2", 0)
	eventually(t, "s1 running", func() bool { return g.count("t1-s1") == 1 })

	done := interruptAsync(m, id, Interrupt{Rule: "popup", Handler: "handlers/fix", Inputs: map[string]any{"tag": "h1"}})
	eventually(t, "interrupt.fired", func() bool { return slicesContain(taskEvents(t, st, id), "interrupt.fired") })
	// The running step is not cut short: the task pauses after it.
	if s := status(t, m, id); s != aurav1.TaskStatus_TASK_STATUS_RUNNING {
		t.Fatalf("status %s while s1 runs, want RUNNING", s)
	}
	g.release("t1-s1")
	eventually(t, "PAUSED", func() bool { return status(t, m, id) == aurav1.TaskStatus_TASK_STATUS_PAUSED })
	eventually(t, "the handler", func() bool { return g.count("h1") == 1 })
	if n := g.count("t1-s2"); n != 0 {
		t.Fatalf("s2 ran %d times while the task was paused", n)
	}
	g.release("h1")
	if err := <-done; err != nil {
		t.Fatalf("Interrupt: %v", err)
	}
	eventually(t, "s2 running", func() bool { return g.count("t1-s2") == 1 })
	if s := status(t, m, id); s != aurav1.TaskStatus_TASK_STATUS_RUNNING {
		t.Fatalf("status %s after the handler, want RUNNING", s)
	}
	g.release("t1-s2")
	g.release("t1-s3")
	<-fc.watch(id)
	task, _ := m.Get(context.Background(), id)
	if task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("ended %s: %v", task.Status, task.Error)
	}
	for _, s := range []string{"t1-s1", "t1-s2", "t1-s3", "h1"} {
		if n := g.count(s); n != 1 {
			t.Errorf("%s ran %d times, want once", s, n)
		}
	}
	for _, s := range task.Steps {
		if s.Attempts != 1 || s.Status != aurav1.StepStatus_STEP_STATUS_SUCCEEDED {
			t.Errorf("step %s: %s after %d attempts", s.Id, s.Status, s.Attempts)
		}
	}
	got := only(taskEvents(t, st, id), "interrupt.fired", "task.paused", "task.resumed", "step.started")
	if want := "step.started interrupt.fired task.paused task.resumed step.started step.started"; strings.Join(got, " ") != want {
		t.Errorf("events %v, want %s", got, want)
	}
	// The handler ran as a child of the paused task, on its device.
	children, _, err := st.ListTasks(context.Background(), store.Query{Selector: mustSelector(t, "aura.parent="+id)})
	if err != nil || len(children) != 1 {
		t.Fatalf("handler tasks: %d (%v), want 1", len(children), err)
	}
	child, _ := decodeTask(children[0])
	if child.Task != "work/handlers/fix" || child.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED || child.Resources["device"] != task.Resources["device"] {
		t.Errorf("handler task %s %s on %v, want SUCCEEDED on %v", child.Task, child.Status, child.Resources, task.Resources)
	}
	// The other device's task was not touched.
	if evs := only(taskEvents(t, st, other), "interrupt.fired", "task.paused"); len(evs) != 0 {
		t.Errorf("the other task saw %v", evs)
	}
	g.release("t2-s1")
	g.release("t2-s2")
	g.release("t2-s3")
	<-fc.watch(other)
}

func liveRun(m *Manager, id string) *run {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.live[id]
}

func slicesContain(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func mustSelector(t *testing.T, s string) []store.LabelReq {
	t.Helper()
	sel, err := store.ParseSelector(s)
	if err != nil {
		t.Fatal(err)
	}
	return sel
}

func TestInterruptWithAbortStepRunsTheStepAgain(t *testing.T) {
	m, fc, g, _ := newInterruptManager(t)
	id := submitLong(t, m, "work/long", "t1", 0)
	eventually(t, "s1 running", func() bool { return g.count("t1-s1") == 1 })
	done := interruptAsync(m, id, Interrupt{Rule: "popup", Handler: "handlers/fix", Inputs: map[string]any{"tag": "h1"}, AbortStep: true})
	// s1 is never released: the abort alone lets the task pause.
	eventually(t, "PAUSED", func() bool { return status(t, m, id) == aurav1.TaskStatus_TASK_STATUS_PAUSED })
	g.release("h1")
	if err := <-done; err != nil {
		t.Fatalf("Interrupt: %v", err)
	}
	eventually(t, "s1 again", func() bool { return g.count("t1-s1") == 2 })
	g.release("t1-s1")
	g.release("t1-s2")
	g.release("t1-s3")
	<-fc.watch(id)
	task, _ := m.Get(context.Background(), id)
	if task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("ended %s: %v", task.Status, task.Error)
	}
	if task.Steps[0].Attempts != 1 {
		t.Errorf("s1: %d attempts, want 1 (the abort is not a failed attempt)", task.Steps[0].Attempts)
	}
	if g.count("t1-s2") != 1 || g.count("t1-s3") != 1 {
		t.Errorf("s2 ran %d, s3 %d times, want once each", g.count("t1-s2"), g.count("t1-s3"))
	}
}

func TestInterruptPausesAGraphWhenItsRunningStepsEnd(t *testing.T) {
	m, fc, g, _ := newInterruptManager(t)
	id := submitLong(t, m, "work/graph", "t1", 0)
	eventually(t, "a and b running", func() bool { return g.count("t1-a") == 1 && g.count("t1-b") == 1 })
	done := interruptAsync(m, id, Interrupt{Rule: "popup", Handler: "handlers/fix", Inputs: map[string]any{"tag": "h1"}})
	eventually(t, "the pause asked", func() bool {
		r := liveRun(m, id)
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.lc.pausing
	})
	g.release("t1-a")
	g.release("t1-c")
	// b still runs: no pause yet, and c (which needs b) has not started.
	if s := status(t, m, id); s != aurav1.TaskStatus_TASK_STATUS_RUNNING {
		t.Fatalf("status %s while b runs", s)
	}
	g.release("t1-b")
	eventually(t, "PAUSED", func() bool { return status(t, m, id) == aurav1.TaskStatus_TASK_STATUS_PAUSED })
	if g.count("t1-c") != 0 {
		t.Fatalf("c started while paused")
	}
	g.release("h1")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	<-fc.watch(id)
	task, _ := m.Get(context.Background(), id)
	if task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED || g.count("t1-c") != 1 {
		t.Fatalf("ended %s (c ran %d times)", task.Status, g.count("t1-c"))
	}
}

func TestInterruptRequeueRunsTheTaskAgainWithItsNextAttempt(t *testing.T) {
	m, fc, g, st := newInterruptManager(t)
	g.release("h1")
	id := submitLong(t, m, "work/long", "t1", 0)
	eventually(t, "s1 running", func() bool { return g.count("t1-s1") == 1 })
	done := interruptAsync(m, id, Interrupt{Rule: "reset", Handler: "handlers/fix", Inputs: map[string]any{"tag": "h1"}, Policy: PolicyRequeue, AbortStep: true})
	if err := <-done; err != nil {
		t.Fatalf("Interrupt: %v", err)
	}
	eventually(t, "the second attempt", func() bool { return g.count("t1-s1") == 2 })
	task, _ := m.Get(context.Background(), id)
	if task.Attempt != 2 || task.Status != aurav1.TaskStatus_TASK_STATUS_RUNNING {
		t.Fatalf("attempt %d, %s; want attempt 2 RUNNING", task.Attempt, task.Status)
	}
	g.release("t1-s1")
	g.release("t1-s2")
	g.release("t1-s3")
	<-fc.watch(id)
	task, _ = m.Get(context.Background(), id)
	if task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED || task.Attempt != 2 {
		t.Fatalf("ended %s attempt %d", task.Status, task.Attempt)
	}
	evs := only(taskEvents(t, st, id), "task.queued", "task.paused", "task.finished")
	if strings.Join(evs, " ") != "task.queued task.paused task.queued task.finished" {
		t.Errorf("events %v", evs)
	}
}

func TestInterruptCancelEndsTheTaskPreempted(t *testing.T) {
	m, fc, g, st := newInterruptManager(t)
	g.release("h1")
	id := submitLong(t, m, "work/long", "t1", 0)
	eventually(t, "s1 running", func() bool { return g.count("t1-s1") == 1 })
	done := interruptAsync(m, id, Interrupt{Rule: "daily-reset", Handler: "handlers/fix", Inputs: map[string]any{"tag": "h1"}, Policy: PolicyCancel})
	eventually(t, "interrupt.fired", func() bool { return slicesContain(taskEvents(t, st, id), "interrupt.fired") })
	g.release("t1-s1")
	if err := <-done; err != nil {
		t.Fatalf("Interrupt: %v", err)
	}
	<-fc.watch(id)
	task, _ := m.Get(context.Background(), id)
	if task.Status != aurav1.TaskStatus_TASK_STATUS_CANCELLED || task.Error.GetKind() != string(KindPreempted) ||
		!strings.Contains(task.Error.GetMessage(), `"daily-reset"`) {
		t.Fatalf("ended %s %v, want CANCELLED preempted naming the rule", task.Status, task.Error)
	}
	if g.count("t1-s2") != 0 {
		t.Errorf("s2 ran after the cancel")
	}
}

func TestFailingHandlerFailsThePausedTaskNamingBoth(t *testing.T) {
	m, fc, g, _ := newInterruptManager(t)
	g.release("h1")
	id := submitLong(t, m, "work/long", "t1", 0)
	eventually(t, "s1 running", func() bool { return g.count("t1-s1") == 1 })
	done := interruptAsync(m, id, Interrupt{Rule: "popup", Handler: "handlers/fix", Inputs: map[string]any{"tag": "h1", "fail": true}, AbortStep: true})
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "the popup would not close") {
		t.Fatalf("Interrupt: %v, want the handler's error", err)
	}
	<-fc.watch(id)
	task, _ := m.Get(context.Background(), id)
	msg := task.Error.GetMessage()
	if task.Status != aurav1.TaskStatus_TASK_STATUS_FAILED || !strings.Contains(msg, `interrupt "popup"`) ||
		!strings.Contains(msg, "handlers/fix") || !strings.Contains(msg, "the popup would not close") {
		t.Fatalf("ended %s: %q; want FAILED naming the interrupt, the handler and its error", task.Status, msg)
	}
	if g.count("t1-s2") != 0 {
		t.Errorf("s2 ran after the handler failed")
	}
}

func TestHandlerTimeIsNotTheTasksTimeout(t *testing.T) {
	m, fc, g, _ := newInterruptManager(t)
	const budget = time.Second
	id := submitLong(t, m, "work/long", "t1", budget)
	eventually(t, "s1 running", func() bool { return g.count("t1-s1") == 1 })
	started := time.Now()
	done := interruptAsync(m, id, Interrupt{Rule: "popup", Handler: "handlers/fix", Inputs: map[string]any{"tag": "h1"}, AbortStep: true})
	eventually(t, "PAUSED", func() bool { return status(t, m, id) == aurav1.TaskStatus_TASK_STATUS_PAUSED })
	// Hold the handler past the task's whole budget.
	for time.Since(started) < budget+200*time.Millisecond {
		time.Sleep(20 * time.Millisecond)
	}
	if s := status(t, m, id); s != aurav1.TaskStatus_TASK_STATUS_PAUSED {
		t.Fatalf("status %s after its budget passed in the pause, want still PAUSED", s)
	}
	g.release("h1")
	g.release("t1-s1")
	g.release("t1-s2")
	g.release("t1-s3")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	<-fc.watch(id)
	if s := status(t, m, id); s != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("ended %s", s)
	}
}

func TestHandlerTimeoutIsReportedAsATimeoutDuringThePause(t *testing.T) {
	m, fc, g, _ := newInterruptManager(t)
	id := submitLong(t, m, "work/long", "t1", 0)
	eventually(t, "s1 running", func() bool { return g.count("t1-s1") == 1 })
	err := m.Interrupt(context.Background(), id, Interrupt{Rule: "popup", Handler: "handlers/slow", AbortStep: true})
	if err == nil {
		t.Fatal("Interrupt succeeded with a handler that timed out")
	}
	<-fc.watch(id)
	task, _ := m.Get(context.Background(), id)
	if task.Status != aurav1.TaskStatus_TASK_STATUS_TIMED_OUT || task.Error.GetKind() != string(KindTimeout) ||
		!strings.Contains(task.Error.GetMessage(), "while paused") || !strings.Contains(task.Error.GetMessage(), "handlers/slow") {
		t.Fatalf("ended %s %v, want TIMED_OUT saying the handler timed out while it was paused", task.Status, task.Error)
	}
}

func TestInterruptRefusesWhatItCannotPause(t *testing.T) {
	m, fc, g, _ := newInterruptManager(t)
	if err := m.Interrupt(context.Background(), "nope", Interrupt{Handler: "handlers/fix"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown task: %v", err)
	}
	id := submitLong(t, m, "work/long", "t1", 0)
	eventually(t, "s1 running", func() bool { return g.count("t1-s1") == 1 })
	var nf *NotFoundError
	if err := m.Interrupt(context.Background(), id, Interrupt{Handler: "handlers/none"}); !errors.As(err, &nf) {
		t.Errorf("unknown handler: %v", err)
	}
	var bad *InvalidError
	if err := m.Interrupt(context.Background(), id, Interrupt{Handler: "handlers/fix", Policy: "later"}); !errors.As(err, &bad) {
		t.Errorf("bad policy: %v", err)
	}
	if err := m.Interrupt(context.Background(), id, Interrupt{Handler: "handlers/fix", Inputs: map[string]any{"fail": "no"}}); !errors.As(err, &bad) {
		t.Errorf("bad inputs: %v", err)
	}
	first := interruptAsync(m, id, Interrupt{Rule: "one", Handler: "handlers/fix", Inputs: map[string]any{"tag": "h1"}})
	eventually(t, "the first interrupt taken", func() bool {
		r := liveRun(m, id)
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.intr != nil
	})
	if err := m.Interrupt(context.Background(), id, Interrupt{Rule: "two", Handler: "handlers/fix"}); !errors.Is(err, ErrNotInterruptible) {
		t.Errorf("second interrupt: %v", err)
	}
	g.release("h1")
	g.release("t1-s1")
	g.release("t1-s2")
	g.release("t1-s3")
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	<-fc.watch(id)
	if err := m.Interrupt(context.Background(), id, Interrupt{Handler: "handlers/fix"}); !errors.Is(err, ErrNotInterruptible) {
		t.Errorf("finished task: %v", err)
	}
}

func TestHoldersAndCheck(t *testing.T) {
	m, fc, g, _ := newInterruptManager(t)
	id := submitLong(t, m, "work/long", "t1", 0)
	eventually(t, "s1 running", func() bool { return g.count("t1-s1") == 1 })
	hs := m.Holders()
	if len(hs) != 1 || hs[0].TaskID != id || hs[0].Plan != "work" || hs[0].Task != "work/long" || !hs[0].Running || hs[0].Resources["device"] == "" {
		t.Fatalf("Holders() = %+v", hs)
	}
	dev := hs[0].Resources["device"]
	// The check runs on the holder's device while its step runs.
	ok, err := m.Check(context.Background(), id, "checks/flag")
	if err != nil || ok {
		t.Fatalf("Check = %v, %v; want false", ok, err)
	}
	g.setFlag("check-"+dev, true)
	if ok, err := m.Check(context.Background(), id, "checks/flag"); err != nil || !ok {
		t.Fatalf("Check = %v, %v; want true", ok, err)
	}
	if g.count("check-"+dev) != 2 {
		t.Fatalf("the check did not run on the holder's device %s", dev)
	}
	if _, err := m.Check(context.Background(), id, "checks/none"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown check: %v", err)
	}
	g.release("t1-s1")
	g.release("t1-s2")
	g.release("t1-s3")
	<-fc.watch(id)
	if hs := m.Holders(); len(hs) != 0 {
		t.Errorf("Holders() after the end = %+v", hs)
	}
	if _, err := m.Check(context.Background(), id, "checks/flag"); !errors.Is(err, ErrNotInterruptible) {
		t.Errorf("check on a finished task: %v", err)
	}
}

func submitWith(t *testing.T, m *Manager, req *aurav1.SubmitRequest, tag string) string {
	t.Helper()
	req.Inputs, _ = structpb.NewStruct(map[string]any{"tag": tag})
	resp, err := m.Submit(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp.TaskId
}

func TestPreemptTaskTakesTheInstanceAndTheVictimResumes(t *testing.T) {
	m, fc, g, st := newInterruptManager(t)
	v1 := submitWith(t, m, &aurav1.SubmitRequest{Task: "work/long", Priority: 1, Preemptible: true}, "v1")
	v2 := submitWith(t, m, &aurav1.SubmitRequest{Task: "work/long", Priority: 2, Preemptible: true}, "v2")
	eventually(t, "both devices busy", func() bool { return g.count("v1-s1") == 1 && g.count("v2-s1") == 1 })
	victim, _ := m.Get(context.Background(), v1)
	urgent := submitWith(t, m, &aurav1.SubmitRequest{Task: "work/urgent", Preempt: true}, "u")
	eventually(t, "task.preempted", func() bool { return slicesContain(taskEvents(t, st, v1), "task.preempted") })
	// The lowest priority is the victim; it pauses after its step.
	g.release("v1-s1")
	eventually(t, "the preempting task runs", func() bool { return g.count("u-only") == 1 })
	if s := status(t, m, v1); s != aurav1.TaskStatus_TASK_STATUS_PAUSED {
		t.Fatalf("victim %s, want PAUSED", s)
	}
	g.release("u-only")
	<-fc.watch(urgent)
	u, _ := m.Get(context.Background(), urgent)
	if u.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED || u.Resources["device"] != victim.Resources["device"] || u.Result.GetStringValue() != victim.Resources["device"] {
		t.Fatalf("urgent %s on %v (saw %v), want SUCCEEDED on the victim's %v", u.Status, u.Resources, u.Result, victim.Resources)
	}
	eventually(t, "the victim resumes", func() bool { return g.count("v1-s2") == 1 })
	for _, n := range []string{"v1-s2", "v1-s3", "v2-s1", "v2-s2", "v2-s3"} {
		g.release(n)
	}
	<-fc.watch(v1)
	<-fc.watch(v2)
	for _, id := range []string{v1, v2} {
		if s := status(t, m, id); s != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
			t.Errorf("%s ended %s", id, s)
		}
	}
	if g.count("v1-s1") != 1 || g.count("v1-s3") != 1 {
		t.Errorf("victim steps ran %d, %d times", g.count("v1-s1"), g.count("v1-s3"))
	}
	if evs := only(taskEvents(t, st, v2), "task.preempted", "task.paused"); len(evs) != 0 {
		t.Errorf("the higher-priority holder saw %v", evs)
	}
}

func TestPreemptedTaskRequeuesPerItsPolicy(t *testing.T) {
	m, fc, g, st := newInterruptManager(t)
	v := submitWith(t, m, &aurav1.SubmitRequest{Task: "work/long_requeue", Priority: 1}, "v")
	other := submitWith(t, m, &aurav1.SubmitRequest{Task: "work/long", Priority: 1}, "o")
	eventually(t, "both devices busy", func() bool { return g.count("v-s1") == 1 && g.count("o-s1") == 1 })
	urgent := submitWith(t, m, &aurav1.SubmitRequest{Task: "work/urgent", Preempt: true}, "u")
	eventually(t, "task.preempted", func() bool { return slicesContain(taskEvents(t, st, v), "task.preempted") })
	g.release("v-s1")
	eventually(t, "the preempting task runs", func() bool { return g.count("u-only") == 1 })
	g.release("u-only")
	<-fc.watch(urgent)
	// The victim is queued again with its next attempt; it waits for a
	// device (the other is still busy, and it gave its own back).
	eventually(t, "the second attempt", func() bool { return g.count("v-s1") == 2 })
	task, _ := m.Get(context.Background(), v)
	if task.Attempt != 2 {
		t.Fatalf("attempt %d, want 2", task.Attempt)
	}
	for _, n := range []string{"v-s2", "v-s3", "o-s1", "o-s2", "o-s3"} {
		g.release(n)
	}
	<-fc.watch(v)
	<-fc.watch(other)
	if s := status(t, m, v); s != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("victim ended %s", s)
	}
}

func TestTaskNotPreemptibleIsNeverPreempted(t *testing.T) {
	m, fc, g, st := newInterruptManager(t)
	a := submitWith(t, m, &aurav1.SubmitRequest{Task: "work/long", Priority: 1}, "a")
	b := submitWith(t, m, &aurav1.SubmitRequest{Task: "work/long", Priority: 1}, "b")
	eventually(t, "both devices busy", func() bool { return g.count("a-s1") == 1 && g.count("b-s1") == 1 })
	urgent := submitWith(t, m, &aurav1.SubmitRequest{Task: "work/urgent", Preempt: true}, "u")
	g.release("a-s1")
	g.release("b-s1")
	eventually(t, "both at s2", func() bool { return g.count("a-s2") == 1 && g.count("b-s2") == 1 })
	if s := status(t, m, urgent); s != aurav1.TaskStatus_TASK_STATUS_QUEUED {
		t.Fatalf("urgent is %s while no holder is preemptible, want QUEUED", s)
	}
	for _, n := range []string{"a-s2", "a-s3"} {
		g.release(n)
	}
	<-fc.watch(a)
	g.release("u-only")
	<-fc.watch(urgent)
	for _, n := range []string{"b-s2", "b-s3"} {
		g.release(n)
	}
	<-fc.watch(b)
	for _, id := range []string{a, b} {
		if evs := only(taskEvents(t, st, id), "task.preempted", "task.paused"); len(evs) != 0 {
			t.Errorf("%s saw %v", id, evs)
		}
	}
}

func TestASecondInterruptPausesAtTheNextBoundary(t *testing.T) {
	m, fc, g, st := newInterruptManager(t)
	g.release("h1")
	g.release("h2")
	id := submitLong(t, m, "work/long", "t1", 0)
	eventually(t, "s1 running", func() bool { return g.count("t1-s1") == 1 })
	first := interruptAsync(m, id, Interrupt{Rule: "one", Handler: "handlers/fix", Inputs: map[string]any{"tag": "h1"}})
	eventually(t, "the first interrupt", func() bool { return slicesContain(taskEvents(t, st, id), "interrupt.fired") })
	g.release("t1-s1")
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	eventually(t, "s2 running", func() bool { return g.count("t1-s2") == 1 })
	second := interruptAsync(m, id, Interrupt{Rule: "two", Handler: "handlers/fix", Inputs: map[string]any{"tag": "h2"}})
	eventually(t, "the second interrupt", func() bool {
		return len(only(taskEvents(t, st, id), "interrupt.fired")) == 2
	})
	g.release("t1-s2")
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	g.release("t1-s3")
	<-fc.watch(id)
	if s := status(t, m, id); s != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("ended %s", s)
	}
	got := only(taskEvents(t, st, id), "interrupt.fired", "task.paused", "task.resumed", "step.started")
	want := "step.started interrupt.fired task.paused task.resumed step.started interrupt.fired task.paused task.resumed step.started"
	if strings.Join(got, " ") != want {
		t.Fatalf("events %v", got)
	}
}
