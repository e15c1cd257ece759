package execmgr

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/aura-dev/aura/internal/hooks"
	"github.com/aura-dev/aura/internal/plan"
	"github.com/aura-dev/aura/internal/store"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// Policy is what a paused task does once its interrupt's handler (or the
// task that preempted it) is over.
type Policy string

// The policies (interrupts.yaml `preempted`, a task's meta `preempted`).
const (
	// PolicyResume goes on with the step after the one that was running
	// (or the aborted one again, with abort_step): every step runs once.
	PolicyResume Policy = "resume"
	// PolicyRequeue gives the task's slots back and queues it again with
	// Task.attempt + 1; its steps run again from the first.
	PolicyRequeue Policy = "requeue"
	// PolicyCancel ends the task CANCELLED with error kind preempted.
	PolicyCancel Policy = "cancel"
)

// Interrupt is one interrupt of a running task (Manager.Interrupt).
type Interrupt struct {
	// Rule names what fired; interrupt.fired, task.paused and the task's
	// error (if it ends by the interrupt) name it.
	Rule string
	// Handler is the task to run while the task is paused: a task of the
	// paused task's plan ("handlers/close_popup") or "plan/task".
	Handler string
	// Inputs are the handler's inputs, checked against its definition.
	Inputs map[string]any
	// AbortStep cancels the running step (or steps) instead of waiting for
	// them to end; each runs again on resume, and the abort is not counted
	// as a failed attempt.
	AbortStep bool
	// Policy says what follows the handler; "" is PolicyResume.
	Policy Policy
}

// ErrNotInterruptible is a task that cannot be interrupted now: it is not
// running (queued, planning, over), is a transition or handler of another
// task, or is already paused or pausing. Errors wrap it with the reason.
var ErrNotInterruptible = errors.New("task cannot be interrupted now")

// pendingInterrupt is an interrupt being carried out on a run (run.intr).
type pendingInterrupt struct {
	by      string // `interrupt "popup"`, or the preempting task
	in      Interrupt
	handler *plan.Task       // nil for a preemption
	inputs  *structpb.Struct // the handler's inputs
	// preemptor is the task that runs in the handler's place (priority
	// preemption): it runs under the paused task's slots.
	preemptor *run
	// result is what the interrupt came to (nil: the handler ran and the
	// policy was applied); done is closed once it is known.
	result error
	done   chan struct{}
	ran    bool // the handler (or the preempting task) started; under the run's mu
	// The event that says it fired, and whether it is recorded; under the
	// run's mu.
	firedType, firedMsg string
	firedDone           bool
}

// Interrupt pauses the running task taskID at its next step boundary (or
// at once, aborting the running step, with in.AbortStep), runs in.Handler
// as a child task of it on the instances it holds and under its slots
// (without state planning), then applies in.Policy. The time the task is
// paused does not count against its timeout.
//
// It returns once the policy is applied, or ctx ends (the interrupt goes
// on), with nil when the handler ran; an error wrapping
// ErrNotInterruptible when the task could not be interrupted (nothing
// changed), an *InvalidError or *NotFoundError for a bad handler or inputs,
// or an error saying why the handler did not run (the task ended first) or
// failed (the task then ended FAILED, or TIMED_OUT when the handler ran
// past its timeout, naming both).
func (m *Manager) Interrupt(ctx context.Context, taskID string, in Interrupt) error {
	if in.Policy == "" {
		in.Policy = PolicyResume
	}
	if !validPolicy(in.Policy) {
		return &InvalidError{"policy", fmt.Sprintf("%q is not a policy: want resume, requeue or cancel", in.Policy)}
	}
	r, err := m.holder(taskID)
	if err != nil {
		return err
	}
	def, err := m.taskFor(r, in.Handler)
	if err != nil {
		return &NotFoundError{"handler", err.Error()}
	}
	resolved, err := def.ResolveInputs(in.Inputs)
	if err != nil {
		return &InvalidError{"inputs", fmt.Sprintf("handler %s: %v", def.ID, err)}
	}
	var inputs *structpb.Struct
	if len(resolved) > 0 {
		if inputs, err = structpb.NewStruct(resolved); err != nil {
			return &InvalidError{"inputs", fmt.Sprintf("handler %s: %v", def.ID, err)}
		}
	}
	p := &pendingInterrupt{by: fmt.Sprintf("interrupt %q", in.Rule), in: in, handler: def, inputs: inputs, done: make(chan struct{})}
	msg := fmt.Sprintf("interrupt %q fired: handler %s, then %s", in.Rule, def.ID, in.Policy)
	if err := r.interrupt(p, "interrupt.fired", msg); err != nil {
		return err
	}
	return r.awaitInterrupt(ctx, p)
}

func validPolicy(p Policy) bool {
	return p == PolicyResume || p == PolicyRequeue || p == PolicyCancel
}

// holder is the live top-level task taskID.
func (m *Manager) holder(taskID string) (*run, error) {
	m.mu.Lock()
	r := m.live[taskID]
	m.mu.Unlock()
	if r == nil {
		if _, err := m.Get(context.Background(), taskID); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("task %s is over: %w", taskID, ErrNotInterruptible)
	}
	if r.parent != nil {
		return nil, fmt.Errorf("task %s runs for task %s (a transition or a handler): %w", taskID, r.parent.id, ErrNotInterruptible)
	}
	return r, nil
}

// taskFor finds a task named by an interrupt or a check for r: a task of
// r's own plan first, else "plan/task".
func (m *Manager) taskFor(r *run, name string) (*plan.Task, error) {
	if def, ok := r.def.Plan.Tasks[name]; ok {
		return def, nil
	}
	if strings.Contains(name, "/") {
		if def, err := m.plans.Load().Task(name); err == nil {
			return def, nil
		}
	}
	return nil, fmt.Errorf("no task %q in plan %q (nor a task %q of another plan)", name, r.def.Plan.Name, name)
}

// interrupt hands p to the run and asks its engine to pause, recording
// the event typ (interrupt.fired, task.preempted) first. It fails, and
// changes nothing, unless the task runs its steps and no other interrupt
// is being carried out.
func (r *run) interrupt(p *pendingInterrupt, typ, msg string) error {
	if err := r.takeInterrupt(p, typ, msg); err != nil {
		return err
	}
	r.recordFired(p)
	return nil
}

// takeInterrupt makes p the run's interrupt, steps its lifecycle
// (evInterrupt) and carries out its effPause: the engine is asked to
// pause at once, so a task near its end still pauses. It fails, changing
// nothing, unless the task runs its steps and no other interrupt is being
// carried out. typ and msg are the event that says it fired
// (recordFired). It may be called under the manager's lock.
func (r *run) takeInterrupt(p *pendingInterrupt, typ, msg string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.intr != nil {
		return fmt.Errorf("task %s is already being interrupted (%s): %w", r.id, r.intr.by, ErrNotInterruptible)
	}
	out := r.lc.step(event{kind: evInterrupt})
	if !out.fx.has(effPause) {
		return fmt.Errorf("task %s is not running its steps (it is %s): %w", r.id, strings.ToLower(r.lc.state.String()), ErrNotInterruptible)
	}
	r.intr = p
	p.firedType, p.firedMsg = typ, msg
	// The engine takes a pause off before it runs it (and this run's
	// interrupt is over before the engine goes on), so none is pending.
	r.pause.Pause(p.in.AbortStep, r.atBoundary)
	return nil
}

// recordFired records the event that says p fired (interrupt.fired,
// task.preempted), unless the PAUSED record took it along already.
func (r *run) recordFired(p *pendingInterrupt) {
	r.mu.Lock()
	evs := r.firedLocked(p)
	r.mu.Unlock()
	if evs != nil {
		r.m.store.Write(storeCtx, store.Batch{Events: evs, Detached: true})
	}
	r.m.log.Info("interrupting a task", "task_id", r.id, "task", r.def.ID, "by", p.by, "policy", string(p.in.Policy), "abort_step", p.in.AbortStep)
}

// firedLocked returns p's fired events the first time it is asked: the
// one that records them first (recordFired, or the PAUSED record) keeps
// them in order before task.paused.
func (r *run) firedLocked(p *pendingInterrupt) []store.Event {
	if p == nil || p.firedDone {
		return nil
	}
	p.firedDone = true
	data := r.snapLocked()
	return []store.Event{r.eventLocked(p.firedType, "", 0, p.firedMsg, nil), r.hookEventLocked(p.firedType, data)}
}

// awaitInterrupt waits for p's outcome, the task's end or ctx.
func (r *run) awaitInterrupt(ctx context.Context, p *pendingInterrupt) error {
	select {
	case <-p.done:
		return p.result
	case <-r.Done():
		select {
		case <-p.done:
			return p.result
		default:
		}
		st := r.status()
		return fmt.Errorf("task %s ended %s before it reached a step boundary; %s did not run", r.id, statusName(st), p.what())
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// what names the interrupt's handler, or the preempting task.
func (p *pendingInterrupt) what() string {
	if p.preemptor != nil {
		return "the preempting task " + p.preemptor.id
	}
	return "handler " + p.handler.ID
}

// settleInterrupt makes result p's outcome and lets the next interrupt
// come.
func (r *run) settleInterrupt(p *pendingInterrupt, result error) {
	r.mu.Lock()
	if r.intr == p {
		r.intr = nil
	}
	r.mu.Unlock()
	select {
	case <-p.done:
	default:
		p.result = result
		close(p.done)
	}
}

// atBoundary is called by the engine at the step boundary where it
// pauses, on the task's goroutine: the lifecycle records PAUSED and runs
// the handler (effRecordPaused, effHandle), then applies the policy. A nil
// return resumes the steps; a policy that ends the task has stopped its
// work, which the engine sees in ctx.
func (r *run) atBoundary(ctx context.Context) error {
	r.mu.Lock()
	p := r.intr
	r.mu.Unlock()
	d := &driver{ctx: ctx}
	r.feed(d, event{kind: evPaused})
	r.m.tasks.run(d.next)
	if p != nil {
		result := p.result
		r.mu.Lock()
		ran := p.ran
		r.mu.Unlock()
		if result == nil && ctx.Err() != nil && !ran {
			result = fmt.Errorf("task %s stopped while it paused (%v); %s did not run", r.id, context.Cause(ctx), p.what())
		}
		r.settleInterrupt(p, result)
	}
	if ctx.Err() == nil {
		r.mayBePreempted() // it runs its steps again
	}
	return nil
}

// recordPaused records PAUSED with task.paused (effRecordPaused) and stops
// the task's timeout from counting.
func (r *run) recordPaused() {
	r.suspendTimeout()
	r.mu.Lock()
	msg := "paused"
	fired := r.firedLocked(r.intr)
	if p := r.intr; p != nil {
		msg = fmt.Sprintf("paused by %s: %s runs, then %s", p.by, p.what(), p.in.Policy)
	}
	r.recordLocked(aurav1.TaskStatus_TASK_STATUS_PAUSED, hooks.TaskPaused, msg, fired...)
}

// recordResumed records RUNNING again with task.resumed
// (effRecordResumed); the timeout counts again from where it stopped.
func (r *run) recordResumed() {
	r.resumeTimeout()
	r.mu.Lock()
	msg := "resumed"
	if p := r.intr; p != nil {
		msg = fmt.Sprintf("resumed after %s", p.by)
	}
	r.recordLocked(aurav1.TaskStatus_TASK_STATUS_RUNNING, hooks.TaskResumed, msg)
}

// recordLocked records status with the event typ (also a hook event),
// after the events before, and waits for the commit; r.mu is held and released. A failed write is
// logged: the task goes on, and its end is recorded (or fails) as usual.
func (r *run) recordLocked(status aurav1.TaskStatus, typ, msg string, before ...store.Event) {
	r.snap.Status = status
	data := r.snapLocked()
	row := r.rowLocked(data)
	evs := append(before, r.eventLocked(typ, "", 0, msg, data), r.hookEventLocked(typ, data))
	r.mu.Unlock()
	if err := r.m.store.Write(storeCtx, store.Batch{Update: row, Events: evs}).Wait(); err != nil {
		r.m.log.Log(context.Background(), storeErrorLevel(err), "recording a status change failed", "task_id", r.id, "task", r.def.ID, "status", status, "err", err)
	}
}

// suspendTimeout stops the task's timeout, keeping what is left of it.
func (r *run) suspendTimeout() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.timer != nil && r.timer.Stop() {
		r.left = max(r.deadline.Sub(r.m.now()), 0)
	} else {
		r.left = -1 // it fired already: its event ends the task
	}
}

// resumeTimeout lets the task's timeout count again: the deadline moves by
// the time the task was paused.
func (r *run) resumeTimeout() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.timer == nil || r.left < 0 {
		return
	}
	r.deadline = r.m.now().Add(r.left)
	r.timer.Reset(r.left)
}

// handle runs the interrupt's handler, or the preempting task, (effHandle)
// and returns nil to resume, or what ends the paused task: the handler's
// failure, or the policy's requeue or cancel.
func (r *run) handle(ctx context.Context) error {
	r.mu.Lock()
	p := r.intr
	r.mu.Unlock()
	if p == nil {
		return nil
	}
	r.mu.Lock()
	p.ran = true
	r.mu.Unlock()
	if p.preemptor != nil {
		r.runPreemptor(p.preemptor)
	} else {
		hctx, cancel := context.WithTimeoutCause(ctx, p.handler.Meta.Timeout, errTimeout)
		child, err := r.startChild(hctx, p.handler, p.inputs, fmt.Sprintf("handler of %s for task %s", p.by, r.id))
		cancel()
		if ctx.Err() != nil {
			// The paused task was stopped: its own cause ends it.
			p.result = fmt.Errorf("task %s stopped while %s ran: %v", r.id, p.what(), context.Cause(ctx))
			return nil
		}
		if err != nil {
			herr := &handlerError{by: p.by, handler: p.handler.ID, status: aurav1.TaskStatus_TASK_STATUS_FAILED, msg: err.Error()}
			p.result = herr
			return herr
		}
		if st := child.status(); st != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
			herr := &handlerError{by: p.by, handler: p.handler.ID, id: child.id, status: st, msg: child.snapshot().GetError().GetMessage()}
			p.result = herr
			return herr
		}
	}
	switch p.in.Policy {
	case PolicyRequeue:
		return &requeuedError{by: p.by}
	case PolicyCancel:
		return &preemptedError{by: p.by}
	}
	return nil
}

// again queues a task that its interrupt's policy requeued (end.again)
// afresh: a new run of the same task, QUEUED with its next attempt, as
// recordEnd left it.
func (m *Manager) again(old *run) {
	snap := old.snapshot()
	r := &run{m: m, id: snap.Id, def: old.def, tags: old.tags, snap: snap, principal: old.principal}
	r.lc = lifecycleOf(snap, old.def.Meta.RequiresInitialState, old.def.Meta.OnInterrupt, false)
	m.mu.Lock()
	m.backlog.add(r.principal)
	m.mu.Unlock()
	r.startSpan(context.Background())
	m.enqueue(r, r.marshal(snap))
}

// Holder is a task that holds its slots: admitted and not over.
type Holder struct {
	TaskID string
	Plan   string // its plan's name
	Task   string // "plan/task"
	// Resources are the pool instances it holds, pool -> instance.
	Resources map[string]string
	Priority  int32
	// Running: it runs its steps, so Interrupt may pause it (false while
	// it plans, is asked about, or is paused).
	Running bool
}

// Holders lists the tasks that hold their slots now (top-level tasks from
// admission to their end; not their transitions or handlers), by id.
func (m *Manager) Holders() []Holder {
	m.mu.Lock()
	rs := slices.Collect(maps.Values(m.live))
	m.mu.Unlock()
	var out []Holder
	for _, r := range rs {
		if r.parent != nil {
			continue
		}
		r.mu.Lock()
		st := r.lc.state
		if st < stateAdmitted || st > statePaused || r.snap == nil {
			r.mu.Unlock()
			continue
		}
		out = append(out, Holder{
			TaskID: r.id, Plan: r.def.Plan.Name, Task: r.def.ID,
			Resources: maps.Clone(r.snap.Resources), Priority: r.snap.Priority,
			Running: st == stateRunning && !r.lc.pausing && r.lc.cause == nil,
		})
		r.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b Holder) int { return strings.Compare(a.TaskID, b.TaskID) })
	return out
}

// Check runs checkTask (a task of taskID's plan, or "plan/task") inline,
// bound to the resources taskID holds and under its slots, while taskID's
// steps go on: true when it succeeds and its returns, if it has one, is
// truthy (the states_map.yaml rule). A check that fails is an error. The
// check records nothing; ctx bounds it.
func (m *Manager) Check(ctx context.Context, taskID, checkTask string) (bool, error) {
	r, err := m.holder(taskID)
	if err != nil {
		return false, err
	}
	r.mu.Lock()
	st := r.lc.state
	r.mu.Unlock()
	if st < stateAdmitted || st > statePaused {
		return false, fmt.Errorf("task %s holds no slots (it is %s): %w", taskID, strings.ToLower(st.String()), ErrNotInterruptible)
	}
	def, err := m.taskFor(r, checkTask)
	if err != nil {
		return false, &NotFoundError{"check", err.Error()}
	}
	ok, err := r.check(ctx, def)
	if err != nil {
		return false, fmt.Errorf("check %s for task %s: %w", def.ID, taskID, err)
	}
	return ok, nil
}
