package execmgr

import (
	"fmt"

	"github.com/aura-dev/aura/internal/planner"
	"github.com/aura-dev/aura/internal/store"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// observePlanning records the planner's progress as task.transition events.
// A check that errored is also written to the task's log (stream stderr,
// step named after the check task), so `auractl logs` shows why the state
// could not be told, not only the final "none holds".
func (r *run) observePlanning(ev planner.Event) {
	r.notePlanning(ev)
	msg := ev.Message
	if msg == "" {
		msg = fmt.Sprintf("%s %s -> %s", ev.Kind, ev.From, ev.To)
	}
	if sm := r.def.Plan.StateMap; sm.PerInstance() {
		// Whose state it is: tasks on several devices plan at once.
		msg = sm.Scope + " " + r.boundInstance(sm.Scope) + ": " + msg
	}
	evs := []store.Event{r.event("task.transition", "", ev.Attempt, msg)}
	if ev.Kind == planner.EventCheckFailed {
		e := logEvent{TaskID: r.id, Type: "task.log", Time: r.m.now(), Fields: eventFields{
			Status: int32(aurav1.TaskStatus_TASK_STATUS_PLANNING), Step: ev.Task, Stream: "stderr", Message: msg}}
		evs = append(evs, e.stored())
	}
	r.append(evs...)
}

// scopeProblem refuses to plan a state kept per instance of a pool for a
// task that holds no instance of it (its tags were given at submit, say):
// there would be no telling whose state to read and change.
func (r *run) scopeProblem() error {
	sm := r.def.Plan.StateMap
	if !sm.PerInstance() || r.boundInstance(sm.Scope) != "" {
		return nil
	}
	return fmt.Errorf("plan %q keeps its state per %s instance (states_map.yaml scope: %s), but the task holds no %s instance: "+
		"give it the tag %s:* (any free one) or %s:<name>", r.def.Plan.Name, sm.Scope, sm.Scope, sm.Scope, sm.Scope, sm.Scope)
}
