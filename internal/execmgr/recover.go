package execmgr

import (
	"context"
	"fmt"
	"slices"

	"github.com/aura-dev/aura/internal/admission"
	"github.com/aura-dev/aura/internal/plan"
	"github.com/aura-dev/aura/internal/store"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// Recover runs once at start, before serving. Tasks that were planning,
// running or paused when the daemon stopped end INTERRUPTED (with their after_* hook
// events), or go back to the queue when their task says
// `on_interrupt: requeue`; queued tasks are admitted again in their original
// arrival order. It returns how many tasks it interrupted and requeued.
func (m *Manager) Recover(ctx context.Context) (interrupted, queued int, err error) {
	if err := m.states.load(ctx); err != nil {
		// Hints only: without them admission falls back to least
		// recently used, and planning detects every state anyway.
		m.log.Warn("recovery: cannot read the last known states; starting without them", "err", err)
	}
	// A paused task was running: its handler's end is unknown, and so is
	// the state of what it held.
	stale, err := m.store.TasksWithStatus(ctx,
		int32(aurav1.TaskStatus_TASK_STATUS_PLANNING), int32(aurav1.TaskStatus_TASK_STATUS_RUNNING),
		int32(aurav1.TaskStatus_TASK_STATUS_PAUSED))
	if err != nil {
		return 0, 0, fmt.Errorf("recovery: %w", err)
	}
	for _, row := range stale {
		r, err := m.restore(row)
		if err != nil {
			m.log.Error("recovery: cannot restore a task; marking it interrupted", "task_id", row.ID, "err", err)
			if r == nil {
				continue
			}
		}
		// Whatever it was doing to its plan's (or instance's) state was cut
		// short: that state is unknown now.
		if k, ok := r.stateKey(); ok {
			m.states.set(k, "", r.id)
		}
		// Its lifecycle applies on_interrupt: requeue.
		r.feed(nil, event{kind: evEnd, err: errShutdown})
		if r.status() != aurav1.TaskStatus_TASK_STATUS_QUEUED {
			interrupted++
		}
	}
	waiting, err := m.store.TasksWithStatus(ctx, int32(aurav1.TaskStatus_TASK_STATUS_QUEUED))
	if err != nil {
		return interrupted, 0, fmt.Errorf("recovery: %w", err)
	}
	slices.SortStableFunc(waiting, func(a, b *store.Task) int { return int(a.Arrival) - int(b.Arrival) })
	for _, row := range waiting {
		r, err := m.restore(row)
		if err != nil {
			m.log.Error("recovery: a queued task can no longer run", "task_id", row.ID, "err", err)
			if r != nil {
				r.feed(nil, event{kind: evEnd, err: err})
			}
			continue
		}
		if r.snap.ParentId != "" {
			// A transition never runs on its own; its parent was interrupted.
			r.feed(nil, event{kind: evEnd, err: errShutdown})
			continue
		}
		// Recovered tasks count against the queue bounds (new submissions
		// wait until the backlog is below them) but are never refused.
		m.mu.Lock()
		m.backlog.add(r.principal)
		m.mu.Unlock()
		r.startSpan(ctx)
		m.enqueue(r, row.Data)
		queued++
	}
	return interrupted, queued, nil
}

// restore rebuilds a run from its stored snapshot. When the definition is
// gone it still returns a run (able to record its end) with an error.
func (m *Manager) restore(row *store.Task) (*run, error) {
	snap, err := decodeTask(row)
	if err != nil {
		return nil, err
	}
	r := &run{m: m, id: snap.Id, snap: snap, principal: row.Principal}
	def, err := m.plans.Load().Task(snap.Task)
	if err != nil {
		r.def = orphanTask(snap.Task, row.Plan)
		r.lc = lifecycleOf(snap, "", "", false)
		return r, fmt.Errorf("task %q: %w", snap.Task, err)
	}
	r.def = def
	r.lc = lifecycleOf(snap, def.Meta.RequiresInitialState, def.Meta.OnInterrupt, false)
	if _, err = def.ResolveInputs(snap.GetInputs().AsMap()); err != nil {
		return r, fmt.Errorf("task %q: inputs no longer valid: %w", snap.Task, err)
	}
	if r.tags, err = admission.ParseTags(snap.ResourceTags); err != nil {
		return r, fmt.Errorf("task %q: %w", snap.Task, err)
	}
	for _, t := range r.tags {
		if err := m.decl.Load().CheckTag(t); err != nil { // the declared pools changed meanwhile
			return r, fmt.Errorf("task %q: %w", snap.Task, err)
		}
	}
	return r, nil
}

// orphanTask stands in for a definition that no longer exists, so the run
// can still record how it ended.
func orphanTask(id, planName string) *plan.Task {
	return &plan.Task{ID: id, Plan: &plan.Plan{Name: planName}}
}
