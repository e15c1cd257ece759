package execmgr

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/aura-dev/aura/internal/engine"
	"github.com/aura-dev/aura/internal/hooks"
	"github.com/aura-dev/aura/internal/store"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// The terminal paths of a task's lifecycle, one at a time: how each way a
// task can end is recorded, and what its watchers see.

// recordedRun builds a run of task and records its creation, as Submit
// does, without queueing it: the test drives its end by hand.
func recordedRun(t *testing.T, m *Manager, task string) *run {
	t.Helper()
	r, err := m.prepare(&aurav1.SubmitRequest{Task: task})
	if err != nil {
		t.Fatal(err)
	}
	row, queued := r.record("")
	if err := m.store.Write(context.Background(), store.Batch{Create: row, Events: []store.Event{queued}}).Wait(); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	m.live[r.id] = r
	m.mu.Unlock()
	return r
}

// startedStep moves r to RUNNING with its only step running, as the engine
// leaves it when the task is stopped mid-step.
func startedStep(t *testing.T, r *run, step string) {
	t.Helper()
	if err := r.setStatus(aurav1.TaskStatus_TASK_STATUS_RUNNING, "task.running", ""); err != nil {
		t.Fatal(err)
	}
	r.StepStarted(step, 1)
}

// eventTypes lists the types of a task's recorded events, in log order.
func eventTypes(t *testing.T, m *Manager, id string) []string {
	t.Helper()
	evs, err := m.store.Events(context.Background(), 0, store.EventFilter{TaskID: id}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

func stored(t *testing.T, m *Manager, id string) *aurav1.Task {
	t.Helper()
	row, err := m.store.GetTask(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	task, err := decodeTask(row)
	if err != nil {
		t.Fatal(err)
	}
	return task
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// A task's end is recorded once, with its hook events in the same write;
// the step it stopped in ends failed, or cancelled when the task was
// stopped from outside; watchers are released and the task is counted.
// A second end (a cancel racing the task's own end) changes nothing.
func TestTaskEndIsRecordedOnce(t *testing.T) {
	stepErr := &engine.StepError{Step: "wait", Err: errors.New("exit status 3")}
	for _, tc := range []struct {
		name      string
		end       error
		status    aurav1.TaskStatus
		step      aurav1.StepStatus
		afterHook string
	}{
		{"failed", stepErr, aurav1.TaskStatus_TASK_STATUS_FAILED, aurav1.StepStatus_STEP_STATUS_FAILED, hooks.AfterTaskFailure},
		{"cancelled", &cancelledError{reason: "enough"}, aurav1.TaskStatus_TASK_STATUS_CANCELLED, aurav1.StepStatus_STEP_STATUS_CANCELLED, hooks.AfterTaskFailure},
		{"timed out", errTimeout, aurav1.TaskStatus_TASK_STATUS_TIMED_OUT, aurav1.StepStatus_STEP_STATUS_CANCELLED, hooks.AfterTaskFailure},
		{"interrupted", errShutdown, aurav1.TaskStatus_TASK_STATUS_INTERRUPTED, aurav1.StepStatus_STEP_STATUS_CANCELLED, hooks.AfterTaskFailure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := newManager(t, 1)
			r := recordedRun(t, m, "lifecycle/once")
			done := r.Done()
			startedStep(t, r, "wait")
			r.finish(context.Background(), tc.end)
			r.finish(context.Background(), &cancelledError{reason: "too late"})

			task := stored(t, m, r.id)
			if task.Status != tc.status || task.FinishedAt == nil {
				t.Fatalf("stored status %s (finished %v), want %s", task.Status, task.FinishedAt, tc.status)
			}
			if len(task.Steps) != 1 || task.Steps[0].Status != tc.step || task.Steps[0].Error != task.Error.GetMessage() {
				t.Errorf("step %v, want %s with the task's error %q", task.Steps, tc.step, task.Error.GetMessage())
			}
			want := []string{"task.queued", hooks.BeforeTaskRun, "task.running", "step.started", "task.finished", tc.afterHook, hooks.AfterTaskRun}
			if got := eventTypes(t, m, r.id); !slices.Equal(got, want) {
				t.Errorf("events %v, want %v", got, want)
			}
			if !isClosed(done) {
				t.Error("Done not closed after the end was recorded")
			}
			if _, counts := m.Stats(); counts[tc.status.String()] != 1 || len(counts) != 1 {
				t.Errorf("counts %v, want one %s", counts, tc.status)
			}
			if got, _ := m.Get(context.Background(), r.id); got.GetStatus() != tc.status {
				t.Errorf("Get says %s, want %s", got.GetStatus(), tc.status)
			}
		})
	}
}

// denyAll is a before_task_run hook that refuses every task.
type denyAll struct{}

func (denyAll) Name() string { return "freeze" }
func (denyAll) BeforeTaskRun(_ context.Context, _ *hooks.BeforeRunRequest, resp *hooks.BeforeRunResponse) error {
	resp.Deny("change freeze")
	return nil
}

// A denied task never runs, and the log says why: the before_task_run
// event that was answered with no is recorded with the task's end, in the
// same write, in the order it happened.
func TestDeniedTaskRecordsItsBeforeHookWithItsEnd(t *testing.T) {
	m, fc := newManager(t, 1)
	m.hooks.Register(denyAll{})
	resp, err := m.Submit(context.Background(), &aurav1.SubmitRequest{Task: "bench/noop"})
	if err != nil {
		t.Fatal(err)
	}
	<-fc.watch(resp.TaskId)
	task := stored(t, m, resp.TaskId)
	if task.Status != aurav1.TaskStatus_TASK_STATUS_FAILED || task.Error.GetKind() != string(KindDenied) || task.StartedAt != nil {
		t.Fatalf("stored %s, error %v, started %v; want FAILED, denied, never started", task.Status, task.Error, task.StartedAt)
	}
	want := []string{"task.queued", hooks.BeforeTaskRun, "task.finished", hooks.AfterTaskFailure, hooks.AfterTaskRun}
	if got := eventTypes(t, m, resp.TaskId); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
}

// A task with on_interrupt: requeue that the daemon stops under goes back
// to the queue instead of ending: stored QUEUED for its next attempt, with
// no trace of the run that was cut short and no task.finished. A
// transition (a child task) is never requeued on its own: it ends
// INTERRUPTED like any other task.
func TestInterruptedTaskRequeues(t *testing.T) {
	m, _ := newManager(t, 1)
	r := recordedRun(t, m, "lifecycle/requeue")
	done := r.Done()
	startedStep(t, r, "wait")
	r.finish(context.Background(), errShutdown)

	task := stored(t, m, r.id)
	if task.Status != aurav1.TaskStatus_TASK_STATUS_QUEUED || task.Attempt != 2 || task.StartedAt != nil || len(task.Steps) != 0 || task.Error != nil {
		t.Fatalf("stored %s attempt %d started %v steps %v error %v; want QUEUED, attempt 2, nothing of the cut run",
			task.Status, task.Attempt, task.StartedAt, task.Steps, task.Error)
	}
	want := []string{"task.queued", hooks.BeforeTaskRun, "task.running", "step.started", "task.queued"}
	if got := eventTypes(t, m, r.id); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	if !isClosed(done) {
		t.Error("Done not closed once the requeue was recorded")
	}

	child := recordedRun(t, m, "lifecycle/requeue")
	child.snap.ParentId = r.id
	startedStep(t, child, "wait")
	child.finish(context.Background(), errShutdown)
	if task := stored(t, m, child.id); task.Status != aurav1.TaskStatus_TASK_STATUS_INTERRUPTED || task.Error.GetKind() != string(KindInterrupted) {
		t.Fatalf("child stored %s %v, want INTERRUPTED, kind interrupted", task.Status, task.Error)
	}
}

// A task whose creation never committed ends without a trace: no record,
// no event, not counted, gone from the registry, its watchers released.
func TestUnrecordedTaskEndsWithoutATrace(t *testing.T) {
	m, _ := newManager(t, 1)
	r, err := m.prepare(&aurav1.SubmitRequest{Task: "bench/noop"})
	if err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	m.live[r.id] = r
	m.mu.Unlock()
	r.created.Store(store.Finished(errors.New("disk full")))
	done := r.Done()
	r.finish(context.Background(), errUnrecorded)
	if evs := eventTypes(t, m, r.id); len(evs) != 0 {
		t.Errorf("events %v recorded for a task that never existed", evs)
	}
	if _, err := m.Get(context.Background(), r.id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get: %v, want not found", err)
	}
	if _, counts := m.Stats(); len(counts) != 0 {
		t.Errorf("counted: %v", counts)
	}
	if !isClosed(done) {
		t.Error("Done not closed")
	}
}
