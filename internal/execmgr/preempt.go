package execmgr

import (
	"fmt"
	"maps"

	"github.com/aura-dev/aura/internal/admission"
)

// Priority preemption: a task submitted with preempt waits for a pool
// instance like any other; when admission finds it an admitted task of
// lower priority that is preemptible and holds every slot it asks for
// (admission.Queue.Preemptions), the victim is interrupted at its next
// step boundary and the preempting task runs in its handler's place: on
// the victim's goroutine, bound to its instances, under its slots (it was
// lent them: evLent). Once it is over the victim follows its task's
// `preempted` policy: resume (the default: it never gave its instance up,
// so it has it back before any other waiter), requeue or cancel.

// preemptLocked carries out the preemptions admission finds. m.mu is held.
func (m *Manager) preemptLocked() {
	for _, pr := range m.queue.Preemptions(m.busyLocked) {
		w, v := m.live[pr.Waiter], m.live[pr.Victim]
		if w == nil || v == nil {
			continue
		}
		ws := w.snapshot()
		p := &pendingInterrupt{
			by:        fmt.Sprintf("task %s (%s, priority %d)", w.id, w.def.ID, ws.Priority),
			in:        Interrupt{Policy: preemptedPolicy(v.def.Meta.Preempted)},
			preemptor: w,
			done:      make(chan struct{}),
		}
		msg := fmt.Sprintf("preempted by %s: it runs on this task's instances once the task pauses, then %s", p.by, p.in.Policy)
		if err := v.takeInterrupt(p, "task.preempted", msg); err != nil {
			continue // it stopped meanwhile; the next admission asks again
		}
		w.step(event{kind: evLent})
		m.dequeueLocked(w)
		w.endAdmitSpan()
		go v.recordFired(p)
	}
}

// mayBePreempted lets a waiting preempt task take a preemptible task's
// slots once it runs its steps (RUNNING recorded, or resumed): before,
// it could not be paused, and admission, which looks for victims, may not
// run again for a while.
func (r *run) mayBePreempted() {
	r.mu.Lock()
	preemptible := r.snap.Preemptible && r.parent == nil
	r.mu.Unlock()
	if !preemptible {
		return
	}
	r.m.mu.Lock()
	defer r.m.mu.Unlock()
	if !r.m.draining.Load() {
		r.m.preemptLocked()
	}
}

// preemptedPolicy reads a task's meta `preempted`; resume by default.
func preemptedPolicy(s string) Policy {
	if p := Policy(s); validPolicy(p) {
		return p
	}
	return PolicyResume
}

// busyLocked reports whether the admitted task id cannot be preempted
// now: it does not run its steps, or an interrupt is being carried out on
// it. m.mu is held.
func (m *Manager) busyLocked(id string) bool {
	r := m.live[id]
	if r == nil || r.parent != nil {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.intr != nil || r.lc.state != stateRunning || r.lc.pausing || r.lc.cause != nil
}

// runPreemptor runs p, a task that preempted r, in the place of r's
// interrupt handler: on r's goroutine, bound to r's instances and under
// r's slots (p was lent them: it holds none of its own). It returns once
// p is over.
func (r *run) runPreemptor(p *run) {
	r.mu.Lock()
	bound := maps.Clone(r.snap.Resources)
	r.mu.Unlock()
	p.mu.Lock()
	p.unpackLocked()
	p.snap.Resources = bound
	p.mu.Unlock()
	r.m.tasks.run(p.execute())
	<-p.Done()
}

// returnPreemptor gives the task that preempted r back to the admission
// queue when r ended before it paused (effForget): it waits for slots of
// its own again.
func (r *run) returnPreemptor() {
	r.mu.Lock()
	p := r.intr
	ran := p != nil && p.ran
	r.mu.Unlock()
	if p == nil || p.preemptor == nil || ran {
		return
	}
	p.preemptor.feed(nil, event{kind: evReturned})
}

// requeueLocked puts a preempting task whose victim ended first back among
// the waiters (effRequeue). m.mu is held.
func (m *Manager) requeueLocked(r *run) {
	snap := r.snapshot()
	m.backlog.add(r.principal)
	conflicts, err := m.queue.Push(admission.Request{ID: r.id, Owner: r.principal, Priority: snap.Priority, Tags: r.tags,
		Preempt: snap.Preempt, Preemptible: snap.Preemptible})
	for _, c := range conflicts {
		m.log.Warn("resource limit conflict", "conflict", fmt.Sprint(c), "task_id", r.id, "task", r.def.ID)
	}
	if err != nil {
		m.log.Error("admission refused a preempting task back", "task_id", r.id, "err", err)
		m.backlog.done(r.principal)
		go r.feed(nil, event{kind: evCancel, err: &cancelledError{reason: "its victim ended first and admission refused it back: " + err.Error()}})
	}
}
