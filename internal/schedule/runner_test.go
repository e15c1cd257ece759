package schedule

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/aura-dev/aura/internal/plan"
	"github.com/aura-dev/aura/internal/store"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// fakeTasks is the ExecutionManager's submission as schedules see it:
// an idempotency key finds the task it created before.
type fakeTasks struct {
	mu     sync.Mutex
	byKey  map[string]*aurav1.Task
	tasks  []*aurav1.Task
	submit int
}

func (f *fakeTasks) SubmitAs(_ context.Context, principal string, req *aurav1.SubmitRequest) (*aurav1.SubmitResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.submit++
	if principal != Principal {
		return nil, fmt.Errorf("submitted as %q", principal)
	}
	if t, ok := f.byKey[req.IdempotencyKey]; ok {
		return &aurav1.SubmitResponse{TaskId: t.Id, Status: t.Status, Deduplicated: true}, nil
	}
	t := &aurav1.Task{Id: fmt.Sprint("task-", len(f.tasks)+1), Task: req.Task, Status: aurav1.TaskStatus_TASK_STATUS_QUEUED,
		Labels: req.Labels, IdempotencyKey: req.IdempotencyKey, Inputs: req.Inputs}
	f.tasks = append(f.tasks, t)
	f.byKey[req.IdempotencyKey] = t
	return &aurav1.SubmitResponse{TaskId: t.Id, Status: t.Status}, nil
}

func (f *fakeTasks) Cancel(context.Context, string, string) (*aurav1.Task, error) { return nil, nil }
func (f *fakeTasks) Get(_ context.Context, id string) (*aurav1.Task, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, t := range f.tasks {
		if t.Id == id {
			return t, nil
		}
	}
	return nil, fmt.Errorf("no task %s", id)
}
func (f *fakeTasks) List(context.Context, *aurav1.ListTasksRequest) (*aurav1.ListTasksResponse, error) {
	return &aurav1.ListTasksResponse{}, nil
}

func (f *fakeTasks) keys() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, len(f.tasks))
	for i, t := range f.tasks {
		out[i] = t.IdempotencyKey
	}
	return out
}

// daemonState is what outlives a restart: the store and the tasks.
type daemonState struct {
	tasks  *fakeTasks
	log    *store.Memory
	states *store.ScheduleMemory
	set    *plan.Set
}

func newDaemonState(t *testing.T) *daemonState {
	set, err := plan.Load("testdata/plans", plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	log := store.NewMemory(store.Options{})
	t.Cleanup(func() { log.Close() })
	return &daemonState{tasks: &fakeTasks{byKey: map[string]*aurav1.Task{}}, log: log, states: store.NewScheduleMemory(), set: set}
}

// start is one start of aurad at now: load, then fire what is due.
func (d *daemonState) start(t *testing.T, now time.Time) *Runner {
	t.Helper()
	r := New(Params{Tasks: d.tasks, Log: d.log, States: d.states, Now: func() time.Time { return now }})
	if err := r.load(context.Background(), d.set); err != nil {
		t.Fatal(err)
	}
	r.fireDue(context.Background())
	return r
}

func (d *daemonState) events(t *testing.T, typ string) []string {
	evs, err := d.log.Events(context.Background(), 0, store.EventFilter{Types: []string{typ}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ev := range evs {
		var te aurav1.TaskEvent
		if err := proto.Unmarshal(ev.Data, &te); err != nil {
			t.Fatal(err)
		}
		out = append(out, te.Message)
	}
	return out
}

// Down for three hourly ticks with a catch_up of 90 minutes: the two in
// the window fire (overlap allow), the oldest is recorded skipped; two
// more starts at once fire nothing again.
func TestRunnerCatchUpAndRestartsFireOnce(t *testing.T) {
	d := newDaemonState(t)
	t0 := utc("2026-01-01T00:00:00Z")
	d.start(t, t0)                // first start: the schedule begins now
	d.start(t, t0.Add(time.Hour)) // fires 01:00
	now := t0.Add(4*time.Hour + 10*time.Minute)
	d.start(t, now) // down for 02:00, 03:00, 04:00: 03:00 and 04:00 fire
	d.start(t, now) // restarted twice in a row
	d.start(t, now.Add(time.Second))
	want := []string{"schedule:p/hourly@2026-01-01T01:00:00Z", "schedule:p/hourly@2026-01-01T03:00:00Z", "schedule:p/hourly@2026-01-01T04:00:00Z"}
	if got := d.tasks.keys(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("fired %v, want %v", got, want)
	}
	if d.tasks.submit != 3 {
		t.Errorf("%d submissions for 3 fires: a restart submitted again", d.tasks.submit)
	}
	for _, task := range d.tasks.tasks {
		if task.Labels[Label] != "p/hourly" {
			t.Errorf("task %s labels %v", task.Id, task.Labels)
		}
	}
	skipped := d.events(t, EventSkipped)
	if len(skipped) != 1 || skipped[0] != "p/hourly 2026-01-01T02:00:00Z: skipped (missed)" {
		t.Errorf("skipped events %q, want the 02:00 tick missed", skipped)
	}
	if fired := d.events(t, EventFired); len(fired) != 3 {
		t.Errorf("fired events %q", fired)
	}
}

// finish records a task.finished event for task, as the manager does.
func (d *daemonState) finish(t *testing.T, task *aurav1.Task, status aurav1.TaskStatus) {
	t.Helper()
	task.Status = status
	data, _ := proto.Marshal(&aurav1.TaskEvent{TaskId: task.Id, Type: "task.finished", Task: task})
	if err := d.log.Write(context.Background(), store.Batch{Events: []store.Event{{TaskID: task.Id, Type: "task.finished", Data: data}}}).Wait(); err != nil {
		t.Fatal(err)
	}
}

// An after trigger reads ended tasks from the event log after its durable
// cursor: a task that ended while aurad was down fires it once, on the
// next start, and never again.
func TestRunnerAfterTriggerAcrossRestart(t *testing.T) {
	d := newDaemonState(t)
	t0 := utc("2026-01-01T00:00:00Z")
	r := d.start(t, t0)
	if err := r.follow(context.Background()); err != nil {
		t.Fatal(err)
	}
	in, _ := structpb.NewStruct(map[string]any{"who": "alice"})
	d.tasks.tasks = append(d.tasks.tasks, &aurav1.Task{Id: "outside", Task: "p/t", Inputs: in})
	// aurad is down when it ends.
	d.finish(t, d.tasks.tasks[0], aurav1.TaskStatus_TASK_STATUS_FAILED)
	for range 2 {
		r := d.start(t, t0.Add(time.Minute))
		if err := r.follow(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	var fired []*aurav1.Task
	for _, task := range d.tasks.tasks {
		if task.Labels[Label] == "p/after_t" {
			fired = append(fired, task)
		}
	}
	if len(fired) != 1 {
		t.Fatalf("the after trigger fired %d times, want once", len(fired))
	}
	if got := fired[0].Inputs.AsMap()["who"]; got != "failed alice" || fired[0].IdempotencyKey != "schedule:p/after_t@outside" {
		t.Errorf("fired with inputs.who %v and key %q", got, fired[0].IdempotencyKey)
	}
}
