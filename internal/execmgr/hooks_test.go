package execmgr

import (
	"context"
	"sync"
	"testing"

	"github.com/aura-dev/aura/internal/hooks"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// freezeHook is a local hook that denies tasks labelled change=frozen and
// reports every task's after_* calls on ended, one call per message.
type freezeHook struct {
	mu     sync.Mutex
	before map[string]*hooks.BeforeRunRequest // by task id
	ended  chan afterCall
}

type afterCall struct {
	point string
	req   *hooks.AfterRunRequest
}

func (h *freezeHook) Name() string { return "freeze" }
func (h *freezeHook) BeforeTaskRun(_ context.Context, req *hooks.BeforeRunRequest, resp *hooks.BeforeRunResponse) error {
	h.mu.Lock()
	h.before[req.ID] = req
	h.mu.Unlock()
	if req.Labels["change"] == "frozen" {
		resp.Deny("change freeze in effect")
	}
	return nil
}
func (h *freezeHook) AfterTaskSuccess(_ context.Context, req *hooks.AfterRunRequest) error {
	h.ended <- afterCall{hooks.AfterTaskSuccess, req}
	return nil
}
func (h *freezeHook) AfterTaskFailure(_ context.Context, req *hooks.AfterRunRequest) error {
	h.ended <- afterCall{hooks.AfterTaskFailure, req}
	return nil
}
func (h *freezeHook) AfterTaskRun(_ context.Context, req *hooks.AfterRunRequest) error {
	h.ended <- afterCall{hooks.AfterTaskRun, req}
	return nil
}

// A local hook is told each task's id, name, plan and labels; its denial
// ends the task FAILED with kind denied before any step runs; and the
// after hooks hear the recorded outcome, at the outcome's point and then
// at after_task_run.
func TestLocalHookSeesTheTaskAndMayDenyIt(t *testing.T) {
	m, _ := newManager(t, 4)
	h := &freezeHook{before: map[string]*hooks.BeforeRunRequest{}, ended: make(chan afterCall, 4)}
	m.hooks.Register(h)
	ctx := context.Background()
	for _, c := range []struct {
		labels map[string]string
		status aurav1.TaskStatus
		kind   string
		point  string
	}{
		{map[string]string{"change": "frozen"}, aurav1.TaskStatus_TASK_STATUS_FAILED, "denied", hooks.AfterTaskFailure},
		{map[string]string{"change": "open"}, aurav1.TaskStatus_TASK_STATUS_SUCCEEDED, "", hooks.AfterTaskSuccess},
	} {
		resp, err := m.Submit(ctx, &aurav1.SubmitRequest{Task: "bench/noop", Labels: c.labels})
		if err != nil {
			t.Fatal(err)
		}
		id := resp.TaskId
		var calls []afterCall
		for len(calls) < 2 {
			calls = append(calls, <-h.ended)
		}
		task, err := m.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if task.Status != c.status || task.GetError().GetKind() != c.kind {
			t.Fatalf("%v: ended %s %v, want %s kind %q", c.labels, task.Status, task.Error, c.status, c.kind)
		}
		if c.kind == "denied" {
			if msg := task.Error.GetMessage(); msg != "denied by freeze: change freeze in effect" {
				t.Errorf("denied task's error reads %q", msg)
			}
			for _, st := range task.Steps {
				if st.Attempts > 0 {
					t.Errorf("denied task ran step %s", st.Id)
				}
			}
		}
		h.mu.Lock()
		before := h.before[id]
		h.mu.Unlock()
		if before == nil || before.Name != "bench/noop" || before.Plan != "bench" || before.Labels["change"] != c.labels["change"] || before.Task.GetId() != id {
			t.Errorf("%v: before_task_run was told %+v", c.labels, before)
		}
		for i, want := range []string{c.point, hooks.AfterTaskRun} {
			got := calls[i]
			if got.point != want || got.req.ID != id || got.req.Plan != "bench" || got.req.Status != c.status || got.req.Error.GetKind() != c.kind || got.req.Task.GetStatus() != c.status {
				t.Errorf("%v: after hook %d: %s told %+v, want %s of task %s ending %s", c.labels, i, got.point, got.req, want, id, c.status)
			}
		}
	}
}
