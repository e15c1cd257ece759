package execmgr

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/aura-dev/aura/internal/store"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// newPhones builds a Manager over testdata/phones (a plan whose state is
// kept per instance of the pool "device": a, b and c), with a workspace.
func newPhones(t *testing.T) (*Manager, *finishCounter) {
	t.Helper()
	m, fc, _ := newPoolManager(t, "testdata/phones", []string{"a", "b", "c"}, 8, true)
	return m, fc
}

func runPhone(t *testing.T, m *Manager, fc *finishCounter, task string, in map[string]any) *aurav1.Task {
	t.Helper()
	inputs, err := structpb.NewStruct(in)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := m.Submit(context.Background(), &aurav1.SubmitRequest{Task: task, Inputs: inputs})
	if err != nil {
		t.Fatal(err)
	}
	<-fc.watch(resp.TaskId)
	got, err := m.Get(context.Background(), resp.TaskId)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// The last known state is kept per instance: planning records the state
// it reached on the task's own device; a task that fails there, or changes
// the device without planning, makes it unknown; other devices keep theirs.
func TestLastStateIsPerInstance(t *testing.T) {
	m, fc := newPhones(t)
	state := func(inst string) (string, bool) {
		ls, ok := m.states.get(stateKey{"phone", "device", inst})
		return ls.State, ok
	}
	for _, inst := range []string{"a", "b"} {
		task := runPhone(t, m, fc, "phone/use", map[string]any{"serial": inst})
		if task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
			t.Fatalf("use on %s: %s %v", inst, task.Status, task.Error)
		}
		// The planning events say whose state they are about.
		evs, err := m.store.Events(context.Background(), 0, store.EventFilter{TaskID: task.Id, Types: []string{"task.transition"}}, 0)
		if err != nil || len(evs) == 0 {
			t.Fatalf("planning events: %v, %v", evs, err)
		}
		for _, e := range evs {
			var te aurav1.TaskEvent
			if err := proto.Unmarshal(e.Data, &te); err != nil || !strings.HasPrefix(te.Message, "device "+inst+": ") {
				t.Fatalf("planning event %q (%v) does not name device %s", te.Message, err, inst)
			}
		}
		if st, _ := state(inst); st != "ready" {
			t.Fatalf("%s: last known state %q after planning reached ready", inst, st)
		}
	}
	if _, ok := state("c"); ok {
		t.Fatal("c has a last known state though nothing ran on it")
	}
	if task := runPhone(t, m, fc, "phone/use", map[string]any{"serial": "a", "fail": true}); task.Status != aurav1.TaskStatus_TASK_STATUS_FAILED {
		t.Fatalf("failing use: %s", task.Status)
	}
	if st, ok := state("a"); st != "" || !ok {
		t.Fatalf("a: last known state %q (%v) after a task failed on it, want unknown", st, ok)
	}
	if task := runPhone(t, m, fc, "phone/sleep", map[string]any{"serial": "b"}); task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("sleep: %s %v", task.Status, task.Error)
	}
	if st, ok := state("b"); st != "" || !ok {
		t.Fatalf("b: last known state %q (%v) after a task changed it without planning, want unknown", st, ok)
	}
	// Unknown is only a hint: planning detects b asleep and wakes it.
	if task := runPhone(t, m, fc, "phone/use", map[string]any{"serial": "b"}); task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("use on b again: %s %v", task.Status, task.Error)
	}
	if st, _ := state("b"); st != "ready" {
		t.Fatalf("b: %q after planning woke it", st)
	}
	// ListResources shows it per instance.
	rs := []*aurav1.Resource{{Key: "device:a", Pool: "device", Instance: "a"}, {Key: "device:b", Pool: "device", Instance: "b"}}
	m.InstanceStates(context.Background(), rs)
	if len(rs[0].States) != 1 || rs[0].States[0].State != "" || rs[1].States[0].Plan != "phone" || rs[1].States[0].State != "ready" {
		t.Fatalf("instance states %v", rs)
	}
}

// Planning a per-instance state for a task that holds no instance of the
// pool is refused with what to add, not planned against nobody's state.
func TestPlanningWithoutAnInstanceIsRefused(t *testing.T) {
	m, _ := newPhones(t)
	def, err := m.Plans().Task("phone/use")
	if err != nil {
		t.Fatal(err)
	}
	r := &run{m: m, id: "t", def: def, snap: &aurav1.Task{}}
	err = r.scopeProblem()
	if err == nil || !strings.Contains(err.Error(), "holds no device instance") || !strings.Contains(err.Error(), "device:*") {
		t.Fatalf("scopeProblem = %v", err)
	}
	r.snap.Resources = map[string]string{"device": "a"}
	if err := r.scopeProblem(); err != nil {
		t.Fatalf("with an instance: %v", err)
	}
}
