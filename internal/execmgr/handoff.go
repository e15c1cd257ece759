package execmgr

import (
	"maps"
	"slices"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// StopAdmitting is the first part of Shutdown on its own: nothing more is
// submitted or admitted, and claims under way stop (their tasks stay
// queued). Queued tasks can then be looked at, and cancelled, without one
// of them starting meanwhile. Shutdown does the rest.
func (m *Manager) StopAdmitting() {
	m.mu.Lock()
	if m.draining.Load() {
		m.mu.Unlock()
		return
	}
	m.draining.Store(true)
	claiming := slices.Collect(maps.Values(m.claiming))
	m.mu.Unlock()
	for _, r := range claiming {
		r.feed(nil, event{kind: evShutdown}) // its claim stops; it stays queued
	}
}

// ResubmitRequest is the request that submits the recorded task t again,
// elsewhere: the same task, inputs, timeout, execution mode, priority,
// labels and idempotency key, and the tags its request added to the
// task's own (t's rendered tags less the task file's, which the task
// renders again from the same inputs). ok is false for a task that cannot
// be submitted by a client: a state transition's or a check's (labelled
// aura.parent), or one whose task this daemon's plans no longer have.
func (m *Manager) ResubmitRequest(t *aurav1.Task) (req *aurav1.SubmitRequest, ok bool) {
	if _, child := t.GetLabels()[parentLabel]; child {
		return nil, false
	}
	def, err := m.plans.Load().Task(t.GetTask())
	if err != nil {
		return nil, false
	}
	own := len(def.Meta.ResourceTags)
	var extra []string
	if len(t.GetResourceTags()) > own {
		extra = slices.Clone(t.GetResourceTags()[own:])
	}
	return &aurav1.SubmitRequest{
		Task: t.GetTask(), Inputs: t.GetInputs(), Timeout: t.GetTimeout(), ResourceTags: extra,
		ExecutionMode: t.GetExecutionMode(), Priority: t.GetPriority(), IdempotencyKey: t.GetIdempotencyKey(),
		Labels: t.GetLabels(), SkipPlanning: t.GetSkipPlanning(),
	}, true
}
