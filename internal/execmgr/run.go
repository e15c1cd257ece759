package execmgr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/aura-dev/aura/internal/admission"
	"github.com/aura-dev/aura/internal/engine"
	"github.com/aura-dev/aura/internal/hooks"
	"github.com/aura-dev/aura/internal/plan"
	"github.com/aura-dev/aura/internal/planner"
	"github.com/aura-dev/aura/internal/store"
	"github.com/aura-dev/aura/internal/template"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// run is one task known to this process, from submission to its end: the
// shell around its lifecycle (lifecycle.go), which decides; the run feeds
// it events and carries out its effects. A top-level run goes through
// admission; a transition (a child run) borrows its parent's slots.
type run struct {
	// Immutable after prepare (or restore).
	m      *Manager
	id     string
	def    *plan.Task
	tags   []admission.Tag
	parent *run
	// principal submitted the task (a child run: its parent's); it owns
	// the task's idempotency key, queue place and admission share.
	principal string

	// Tracing: span and admitSpan are set before the run is shared;
	// admitSpan ends at admission, under the manager's lock.
	span, admitSpan trace.Span

	mu sync.Mutex // guards the fields below
	lc lifecycle
	// created is the write that created the task while the lifecycle
	// does not know its outcome (lc.created is pending); nil after.
	created *store.Pending
	// The task's record: snap, or packed (its encoding) while it waits
	// in the queue. Final once the lifecycle decided its end.
	snap     *aurav1.Task
	packed   []byte
	steps    map[string]*aurav1.StepState
	freedAt  uint64                  // m.freed when its last claim was asked; guarded by m.mu
	stopWork context.CancelCauseFunc // cancels its work (while it claims: the claim); set before either starts
	done     chan struct{}           // made on demand (Done): most tasks are never waited for
	// stepSpans are the open spans of its steps.
	stepSpans map[string]trace.Span

	// logs is set by the task's goroutine before its steps start.
	logs *logSink

	// Interrupts (interrupt.go). pause holds the engine at a step boundary
	// (it has a lock of its own); intr is under mu.
	pause engine.Pauser
	intr  *pendingInterrupt // the interrupt being carried out, if any
	// timer fires the task's timeout at deadline; a pause stops it and
	// keeps what was left of the budget in left.
	timer    *time.Timer
	deadline time.Time
	left     time.Duration
}

// storeCtx is used for store writes that must happen even when the task's
// own context is done (recording its timeout, for one).
var storeCtx = context.Background()

func (r *run) snapshot() *aurav1.Task {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.snap == nil {
		t := &aurav1.Task{}
		if err := proto.Unmarshal(r.packed, t); err != nil {
			r.m.log.Error("decoding a queued task", "task_id", r.id, "err", err)
		}
		return t
	}
	return proto.Clone(r.snap).(*aurav1.Task)
}

func (r *run) status() aurav1.TaskStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.snap == nil {
		return aurav1.TaskStatus_TASK_STATUS_QUEUED
	}
	return r.snap.Status
}

// packIfQueued keeps only the encoded snapshot (data) of a task that waits
// in the queue.
func (r *run) packIfQueued(data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lc.state == stateQueued {
		r.packed, r.snap = data, nil
	}
}

// unpackLocked decodes a packed snapshot again (its start, its end).
func (r *run) unpackLocked() {
	if r.snap != nil {
		return
	}
	r.snap = &aurav1.Task{}
	if err := proto.Unmarshal(r.packed, r.snap); err != nil {
		r.m.log.Error("decoding a queued task", "task_id", r.id, "err", err)
	}
	r.packed = nil
}

// marshal encodes m; strings are made valid UTF-8 first, so a task's
// record can always be written whatever its steps printed.
func (r *run) marshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err == nil {
		return b
	}
	sanitize(m.ProtoReflect())
	if b, err = proto.Marshal(m); err != nil {
		r.m.log.Error("cannot encode a task record", "task_id", r.id, "err", err)
	}
	return b
}

// sanitize replaces invalid UTF-8 in every string field of m.
func sanitize(m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Kind() == protoreflect.MessageKind:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				sanitize(l.Get(i).Message())
			}
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				if fd.MapValue().Kind() == protoreflect.MessageKind {
					sanitize(mv.Message())
				} else if fd.MapValue().Kind() == protoreflect.StringKind {
					v.Map().Set(k, protoreflect.ValueOfString(strings.ToValidUTF8(mv.String(), "\uFFFD")))
				}
				return true
			})
		case fd.Kind() == protoreflect.MessageKind:
			sanitize(v.Message())
		case fd.Kind() == protoreflect.StringKind && !fd.IsList():
			m.Set(fd, protoreflect.ValueOfString(strings.ToValidUTF8(v.String(), "\uFFFD")))
		}
		return true
	})
}

// snapLocked marshals the snapshot, for rowLocked and the events of one
// status change.
func (r *run) snapLocked() []byte { return r.marshal(r.snap) }

// record returns the row and the task.queued event of a new task.
func (r *run) record(msg string) (*store.Task, store.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	data := r.snapLocked()
	return r.rowLocked(data), r.eventLocked("task.queued", "", 0, msg, data)
}

// rowLocked builds the store row; data is the marshalled snapshot.
func (r *run) rowLocked(data []byte) *store.Task {
	t := &store.Task{
		ID:             r.id,
		Task:           r.snap.Task,
		Plan:           r.def.Plan.Name,
		Status:         int32(r.snap.Status),
		Priority:       r.snap.Priority,
		Attempt:        r.snap.Attempt,
		IdempotencyKey: r.snap.IdempotencyKey,
		Principal:      r.principal,
		Labels:         r.snap.Labels,
		CreatedAt:      r.snap.CreatedAt.AsTime(),
		Data:           data,
	}
	if r.snap.FinishedAt != nil {
		t.FinishedAt = r.snap.FinishedAt.AsTime()
	}
	return t
}

// event builds a TaskEvent without a snapshot.
func (r *run) event(typ, step string, attempt int, msg string) store.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.eventLocked(typ, step, attempt, msg, nil)
}

// eventLocked builds a TaskEvent; task, when set, is the marshalled
// snapshot it carries (status changes).
func (r *run) eventLocked(typ, step string, attempt int, msg string, task []byte) store.Event {
	e := logEvent{TaskID: r.id, Type: typ, Time: r.m.now(), Fields: eventFields{
		Status: int32(r.snap.Status), Step: step, Message: msg, Attempt: int32(attempt), Snapshot: task}}
	return e.stored()
}

// hookEventLocked builds a HookEvent carrying the marshalled snapshot.
func (r *run) hookEventLocked(point string, task []byte) store.Event {
	e := logEvent{TaskID: r.id, Type: point, Hook: true, Time: r.m.now(), Fields: eventFields{Snapshot: task}}
	return e.stored()
}

// append records progress events (steps, transitions, logs) without
// waiting for their commit: they are queued ahead of the task's next
// status change, which is durable before anything depends on it.
func (r *run) append(evs ...store.Event) {
	r.m.store.Write(storeCtx, store.Batch{Events: evs, Detached: true})
}

// execute runs an admitted task on its goroutine until the task is over,
// or until it finds that another goroutine ended it before it started (a
// cancel, the drain). It returns the tasks that its end admitted, for the
// goroutine to take on (see taskGoroutines.loop); the rest of its end may
// then go on in a goroutine of its own (see carryOut, effConclude).
func (r *run) execute() []*run {
	// One context for the task's work: its timeout, a cancel and the drain
	// all stop it through the lifecycle (effStop), each with its cause.
	ctx, cancel := context.WithCancelCause(r.spanContext(context.Background()))
	defer cancel(nil)
	r.mu.Lock()
	r.unpackLocked()
	if r.lc.state == stateAdmitted { // not ended meanwhile: its record is not final
		r.snap.AdmittedAt = timestamppb.New(r.m.now())
	}
	r.stopWork = cancel
	budget := r.snap.Timeout.AsDuration()
	r.deadline = r.m.now().Add(budget)
	r.timer = time.AfterFunc(budget, func() { r.feed(nil, event{kind: evTimeout}) })
	timer := r.timer
	r.mu.Unlock()
	defer timer.Stop()
	d := &driver{ctx: ctx}
	r.feed(d, event{kind: evStarted, hooks: r.m.hooks.HasBefore()})
	return d.next
}

// driver is what the goroutine that runs a task brings to carrying out
// its effects: the task's work context (only that goroutine is handed
// work: planning, hooks, steps), and the tasks that the end admits, which
// it takes on next instead of starting a goroutine for each.
type driver struct {
	ctx  context.Context
	next []*run
}

// feed gives ev to the task's lifecycle and carries out what it returns,
// then the event that carrying it out yields, until there is none. d is
// nil unless the caller is the goroutine that runs the task.
func (r *run) feed(d *driver, ev event) {
	for ev.kind != evNone {
		out, admitted := r.apply(ev)
		r.m.tasks.run(admitted)
		ev = r.carryOut(d, ev, out)
	}
}

// lockedEvent reports whether ev may take the task out of the admission
// queue, or in or out of Claiming: a cancel, a failed creation, the
// Ledger's answer to a claim. Such events are applied under the manager's
// lock, as admission is, so the queue and the lifecycle always agree.
func lockedEvent(ev event) bool {
	switch ev.kind {
	case evCancel, evGranted, evRefused, evClaimFailed, evLent, evReturned:
		return true
	case evCreated:
		return ev.err != nil
	}
	return false
}

// apply is one step of the lifecycle. A locked event (see lockedEvent) is
// applied under the manager's lock, where the effects on the queue are
// carried out (effDequeue, effWaitAgain and a granted claim's effLaunch);
// it returns the tasks that these admitted, for the caller to run.
func (r *run) apply(ev event) (output, []*run) {
	if !lockedEvent(ev) {
		return r.step(ev), nil
	}
	m := r.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if ev.kind == evGranted || ev.kind == evRefused || ev.kind == evClaimFailed {
		if m.draining.Load() {
			// The drain began while the Ledger answered (Shutdown sets
			// draining under this lock): the task must not start now.
			r.step(event{kind: evShutdown}) // its claim is over: nothing to stop
		}
	}
	out := r.step(ev)
	var admitted []*run
	if out.fx.has(effDequeue) {
		m.dequeueLocked(r)
	}
	if out.fx.has(effWaitAgain) {
		if err := m.queue.Refused(r.id, ev.key); err != nil {
			m.log.Error("admission refused a ledger refusal", "task_id", r.id, "err", err)
		}
		if m.freed != r.freedAt {
			// A holder gave slots back while the Ledger was asked: the
			// refusal may be stale, and no later release need come.
			m.queue.Changed(ev.key)
		}
		admitted = m.admitLocked()
	}
	if out.fx.has(effLaunch) {
		m.launchLocked(r)
	}
	if out.fx.has(effRequeue) {
		m.requeueLocked(r)
		admitted = append(admitted, m.admitLocked()...)
	}
	return out, admitted
}

// step is one step of the lifecycle under the run's lock.
func (r *run) step(ev event) output {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ev.kind == evCreated {
		r.created = nil // known now: a long queue need not keep it
	}
	return r.lc.step(ev)
}

// carryOut carries out out's effects in their order (see effects) and
// returns the event that the work among them yielded, or none. ev is the
// event that led to them (fed again after effAwaitCreation).
func (r *run) carryOut(d *driver, ev event, out output) event {
	fx := out.fx
	if fx.has(effLaunch) { // a granted claim; admission runs the others itself
		r.m.tasks.run([]*run{r})
	}
	if fx.has(effStop) {
		r.stop(out.cause)
	}
	var end *store.Pending
	if fx.has(effRecordEnd) {
		end = r.recordEnd(out.end)
	}
	if fx.has(effRelease) {
		if next := r.m.release(r); d != nil {
			d.next = append(d.next, next...)
		} else {
			r.m.tasks.run(next)
		}
	}
	if fx.has(effRecordPlanning) {
		target := r.def.Meta.RequiresInitialState
		if err := r.recordStatus(aurav1.TaskStatus_TASK_STATUS_PLANNING, "task.planning", fmt.Sprintf("planning to reach state %q", target)); err != nil {
			return event{kind: evNotStarted, err: err}
		}
	}
	if fx.has(effPlan) {
		err := r.work(d.ctx, "planning", r.planning)
		return event{kind: evPlanned, err: err, hooks: r.m.hooks.HasBefore()}
	}
	if fx.has(effAsk) {
		return event{kind: evAnswered, err: r.work(d.ctx, "before_task_run hooks", r.ask)}
	}
	if fx.has(effRecordRunning) {
		if err := r.recordStatus(aurav1.TaskStatus_TASK_STATUS_RUNNING, "task.running", ""); err != nil {
			return event{kind: evNotStarted, err: err}
		}
		r.mayBePreempted()
	}
	if fx.has(effSteps) {
		return event{kind: evStepsDone, err: r.work(d.ctx, "steps", r.runSteps)}
	}
	if fx.has(effRecordPaused) {
		r.recordPaused()
	}
	if fx.has(effHandle) {
		return event{kind: evHandled, err: r.handle(d.ctx)}
	}
	if fx.has(effRecordResumed) {
		r.recordResumed()
	}
	if fx.has(effAwaitCreation) {
		r.awaitCreation()
		return ev
	}
	if fx.has(effConclude) {
		if d != nil && len(d.next) > 0 && !end.Done() {
			// The next task need not wait for this commit and the after
			// hooks: they go on in a goroutine of their own.
			go func() {
				r.conclude(end, out.end)
				r.feed(nil, event{kind: evConcluded})
			}()
			return event{}
		}
		r.conclude(end, out.end)
		return event{kind: evConcluded}
	}
	if fx.has(effNotify) {
		r.notify()
	}
	if fx.has(effForget) {
		if out.end.vanished {
			r.endSpan(out.end.status, out.end.err) // conclude ends the others
		}
		r.m.forget(r, out.end)
		r.returnPreemptor()
		if out.end.again {
			r.m.again(r)
		}
	}
	if fx.has(effSettle) {
		r.m.wg.Done()
	}
	return event{}
}

// stop cancels the task's work with cause (effStop).
func (r *run) stop(cause error) {
	r.mu.Lock()
	stop := r.stopWork
	r.mu.Unlock()
	if stop != nil {
		stop(cause)
	}
}

// work runs one piece of the task's work and returns its result as the
// context saw it (see workResult); a panic in it is the task's failure,
// not the daemon's.
func (r *run) work(ctx context.Context, what string, f func(context.Context) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			r.m.log.Error("task "+what+" panicked", "task_id", r.id, "task", r.def.ID, "panic", fmt.Sprint(p))
			err = fmt.Errorf("internal error: %v", p)
		}
	}()
	return workResult(ctx, f(ctx))
}

// planning drives the planner to the required state (effPlan).
func (r *run) planning(ctx context.Context) error {
	target := r.def.Meta.RequiresInitialState
	pctx, span := r.m.tracer.Start(ctx, "planning", trace.WithAttributes(attribute.String("aura.target_state", target)))
	defer span.End()
	err := r.plan(pctx, target)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	return err
}

// ask asks the before_task_run hooks and interceptors (effAsk). Its event
// is recorded with what follows the answer (RUNNING, or the task's end),
// so a crash while interceptors decide leaves no trace and the task runs
// once.
func (r *run) ask(ctx context.Context) error {
	// Hooks only read the task, and nothing changes the snapshot until
	// they answer: no copy.
	return r.m.hooks.Before(ctx, hooks.NewBeforeRunRequest(r.snap))
}

// runSteps runs the task's steps (effSteps).
func (r *run) runSteps(ctx context.Context) error {
	// Inputs live once, in the snapshot; resolving them again turns JSON
	// numbers back into the declared int type.
	inputs, err := r.def.ResolveInputs(r.snap.GetInputs().AsMap())
	if err != nil {
		return fmt.Errorf("inputs: %w", err)
	}
	r.logs = newLogSink(r)
	res := r.m.engine.Run(ctx, engine.Request{
		Task:     r.def,
		TaskID:   r.id,
		Inputs:   inputs,
		Mode:     modeName(r.snap.ExecutionMode),
		Observer: r,
		RunTask:  r.runTaskFunc(1),
		Output:   r.logs.write,
		Binding:  r.boundResources(),
		Pause:    &r.pause,
	})
	r.logs.flush()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.snap.Steps = stepStates(res.Steps)
	if res.Returns != nil {
		v, verr := structpb.NewValue(res.Returns)
		if verr != nil {
			v = structpb.NewStringValue(fmt.Sprint(res.Returns))
		}
		r.snap.Result = v
	}
	return res.Err
}

func modeName(m aurav1.ExecutionMode) string {
	if m == aurav1.ExecutionMode_EXECUTION_MODE_CPU {
		return "cpu"
	}
	return "io"
}

// recordStatus records PLANNING or RUNNING (effRecordPlanning,
// effRecordRunning) and waits for the commit: the work it starts must not
// go on unrecorded. RUNNING carries the before_task_run event, and the
// snapshot then lists every step (pending), so watchers know how many
// there are.
func (r *run) recordStatus(status aurav1.TaskStatus, typ, msg string) error {
	r.mu.Lock()
	r.snap.Status = status
	running := status == aurav1.TaskStatus_TASK_STATUS_RUNNING
	if running {
		if r.snap.StartedAt == nil {
			r.snap.StartedAt = timestamppb.New(r.m.now())
		}
		for _, st := range r.def.Steps {
			r.stepLocked(st.ID).Status = aurav1.StepStatus_STEP_STATUS_PENDING
		}
	}
	data := r.snapLocked()
	var evs []store.Event
	if running {
		evs = append(evs, r.hookEventLocked(hooks.BeforeTaskRun, data))
	}
	row := r.rowLocked(data)
	evs = append(evs, r.eventLocked(typ, "", 0, msg, data))
	r.mu.Unlock()
	if err := r.m.store.Write(storeCtx, store.Batch{Update: row, Events: evs}).Wait(); err != nil {
		if !r.neverCreated() {
			r.m.log.Log(context.Background(), storeErrorLevel(err), "recording a status change failed", "task_id", r.id, "task", r.def.ID, "status", status, "err", err)
		}
		return fmt.Errorf("recording status %s: %w", status, err)
	}
	return nil
}

// neverCreated reports, without waiting, whether the task's creation is
// known to have failed. After one of its later writes failed it is known:
// the store commits in queue order.
func (r *run) neverCreated() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.created
	return r.lc.created == creationFailed || p != nil && p.Done() && p.Wait() != nil
}

// awaitCreation waits for the outcome of the task's creation and feeds it
// (effAwaitCreation); nothing to wait for when it became known meanwhile.
func (r *run) awaitCreation() {
	r.mu.Lock()
	p := r.created
	r.mu.Unlock()
	if p != nil {
		r.feed(nil, event{kind: evCreated, err: p.Wait()})
	}
}

// recordEnd queues the write of the task's end (effRecordEnd): its
// terminal status with task.finished and the after_* hook events in one
// transaction, or QUEUED for another attempt. It does not wait for the
// commit (effConclude does), so the slots go back a commit earlier: the
// next task on them starts its own commit meanwhile, and the log still
// shows this end first (the store commits in queue order).
func (r *run) recordEnd(end ending) *store.Pending {
	if end.held {
		// Before its slots go back: the next holder of its pool instance
		// must not read a state this task's steps may have changed.
		r.noteEnd(end.status)
	}
	r.mu.Lock()
	r.unpackLocked()
	if end.held && r.snap.AdmittedAt == nil { // ended before its goroutine started it
		r.snap.AdmittedAt = timestamppb.New(r.m.now())
	}
	if end.requeue {
		r.snap.Status = aurav1.TaskStatus_TASK_STATUS_QUEUED
		r.snap.Attempt++
		r.snap.StartedAt = nil
		r.snap.Steps = nil
		r.snap.Resources = nil // admission binds it afresh
		msg := "requeued after interruption (on_interrupt: requeue)"
		if end.again {
			r.snap.AdmittedAt, r.snap.Result = nil, nil
			msg = end.err.GetMessage()
		}
		data := r.snapLocked()
		row := r.rowLocked(data)
		ev := r.eventLocked("task.queued", "", 0, msg, data)
		r.mu.Unlock()
		return r.m.store.Write(storeCtx, store.Batch{Update: row, Events: []store.Event{ev}})
	}
	status, te := end.status, end.err
	r.snap.Status = status
	r.snap.Error = te
	r.snap.FinishedAt = timestamppb.New(r.m.now())
	for _, st := range r.snap.Steps {
		if st.Status == aurav1.StepStatus_STEP_STATUS_RUNNING {
			st.Status = aurav1.StepStatus_STEP_STATUS_FAILED
			if stopped(status) {
				st.Status = aurav1.StepStatus_STEP_STATUS_CANCELLED
			}
			if te != nil {
				st.Error = te.Message
			}
		}
	}
	msg := status.String()
	if te != nil {
		msg = te.Message
	}
	data := r.snapLocked()
	row := r.rowLocked(data)
	var evs []store.Event
	if end.withBefore {
		evs = append(evs, r.hookEventLocked(hooks.BeforeTaskRun, data))
	}
	evs = append(evs, r.eventLocked("task.finished", te.GetStep(), 0, msg, data),
		r.hookEventLocked(hooks.OutcomePoint(status), data), r.hookEventLocked(hooks.AfterTaskRun, data))
	r.mu.Unlock()
	return r.m.store.Write(storeCtx, store.Batch{Update: row, Events: evs})
}

// conclude waits for the end's record (effConclude), then logs, ends the
// span and runs the after hooks.
func (r *run) conclude(pending *store.Pending, end ending) {
	err := pending.Wait()
	if end.requeue {
		if err != nil {
			r.m.log.Log(context.Background(), storeErrorLevel(err), "requeueing an interrupted task failed", "task_id", r.id, "task", r.def.ID, "err", err)
		}
		r.endSpan(end.status, &aurav1.TaskError{Kind: string(KindInterrupted), Message: "requeued"})
		return
	}
	if err != nil {
		r.m.log.Log(context.Background(), storeErrorLevel(err), "recording the final status failed", "task_id", r.id, "task", r.def.ID, "status", end.status, "err", err)
	}
	// Successes are many and all in the event log and the metrics: they log
	// at debug. Anything else is worth a line.
	level := slog.LevelDebug
	if end.status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		level = slog.LevelWarn
	}
	if r.m.log.Enabled(context.Background(), level) {
		attrs := []any{"task_id", r.id, "task", r.def.ID, "status", end.status.String(), "error", end.err.GetMessage()}
		if tid := r.traceID(); tid != "" {
			attrs = append(attrs, "trace_id", tid)
		}
		r.m.log.Log(context.Background(), level, "task finished", attrs...)
	}
	r.endSpan(end.status, end.err)
	r.mu.Lock()
	final := r.snap // the end is recorded: nothing changes it any more
	r.mu.Unlock()
	r.m.hooks.After(r.spanContext(context.Background()), hooks.NewAfterRunRequest(final))
}

// Done returns a channel closed once the task is over: its end recorded
// and the after hooks run (or it never existed).
func (r *run) Done() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done == nil {
		r.done = make(chan struct{})
		if r.lc.over() {
			close(r.done)
		}
	}
	return r.done
}

// notify releases whoever waits in Done (effNotify).
func (r *run) notify() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done == nil {
		return
	}
	select {
	case <-r.done: // Done made it closed, seeing the lifecycle over
	default:
		close(r.done)
	}
}

// StepStarted implements engine.Observer.
func (r *run) StepStarted(step string, attempt int) {
	r.mu.Lock()
	st := r.stepLocked(step)
	st.Status = aurav1.StepStatus_STEP_STATUS_RUNNING
	st.Attempts = int32(attempt)
	if st.StartedAt == nil {
		st.StartedAt = timestamppb.New(r.m.now())
	}
	ev := r.eventLocked("step.started", step, attempt, "", nil)
	r.mu.Unlock()
	r.append(ev)
	r.stepSpanStart(step, attempt)
}

// StepFinished implements engine.Observer.
func (r *run) StepFinished(step string, attempt int, status engine.StepStatus, err error) {
	typ, pb := "step.succeeded", aurav1.StepStatus_STEP_STATUS_SUCCEEDED
	switch status {
	case engine.StepFailed:
		typ, pb = "step.failed", aurav1.StepStatus_STEP_STATUS_FAILED
	case engine.StepSkipped:
		typ, pb = "step.skipped", aurav1.StepStatus_STEP_STATUS_SKIPPED
	case engine.StepCancelled:
		typ, pb = "step.cancelled", aurav1.StepStatus_STEP_STATUS_CANCELLED
	}
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if r.logs != nil {
		r.logs.endStep(step)
	}
	r.stepSpanEnd(step, err)
	r.mu.Lock()
	st := r.stepLocked(step)
	st.Status = pb
	st.Attempts = int32(max(attempt, int(st.Attempts)))
	st.Error = msg
	st.FinishedAt = timestamppb.New(r.m.now())
	ev := r.eventLocked(typ, step, attempt, msg, nil)
	r.mu.Unlock()
	r.append(ev)
}

// StepRetrying implements engine.RetryObserver: step.retrying says which
// attempt comes next, after how long, and why the last one failed.
func (r *run) StepRetrying(step string, next, maxAttempts int, delay time.Duration, err error) {
	r.mu.Lock()
	ev := logEvent{TaskID: r.id, Type: "step.retrying", Time: r.m.now(), Fields: eventFields{Status: int32(r.snap.Status),
		Step: step, Message: err.Error(), Attempt: int32(next), RetryDelay: delay, MaxAttempts: int32(maxAttempts)}}
	r.mu.Unlock()
	r.append(ev.stored())
}

func (r *run) stepLocked(id string) *aurav1.StepState {
	if r.steps == nil {
		r.steps = map[string]*aurav1.StepState{}
	}
	st := r.steps[id]
	if st == nil {
		st = &aurav1.StepState{Id: id}
		r.steps[id] = st
		r.snap.Steps = append(r.snap.Steps, st)
	}
	return st
}

func stepStates(in []engine.StepState) []*aurav1.StepState {
	out := make([]*aurav1.StepState, 0, len(in))
	for _, s := range in {
		st := &aurav1.StepState{Id: s.ID, Attempts: int32(s.Attempts), Error: s.Error}
		switch s.Status {
		case engine.StepPending:
			st.Status = aurav1.StepStatus_STEP_STATUS_PENDING
		case engine.StepRunning:
			st.Status = aurav1.StepStatus_STEP_STATUS_RUNNING
		case engine.StepSucceeded:
			st.Status = aurav1.StepStatus_STEP_STATUS_SUCCEEDED
		case engine.StepFailed:
			st.Status = aurav1.StepStatus_STEP_STATUS_FAILED
		case engine.StepSkipped:
			st.Status = aurav1.StepStatus_STEP_STATUS_SKIPPED
		case engine.StepCancelled:
			st.Status = aurav1.StepStatus_STEP_STATUS_CANCELLED
		}
		if !s.StartedAt.IsZero() {
			st.StartedAt = timestamppb.New(s.StartedAt)
		}
		if !s.FinishedAt.IsZero() {
			st.FinishedAt = timestamppb.New(s.FinishedAt)
		}
		out = append(out, st)
	}
	return out
}

// runTaskFunc serves the run_task action: a task of the same plan runs
// inline, within the caller's context, its returns becoming the output.
func (r *run) runTaskFunc(depth int) func(ctx context.Context, name string, inputs map[string]any) (any, error) {
	return func(ctx context.Context, name string, inputs map[string]any) (any, error) {
		if depth > r.m.maxDepth {
			return nil, fmt.Errorf("nesting deeper than %d levels of run_task (does a task run itself?)", r.m.maxDepth)
		}
		def, ok := r.def.Plan.Tasks[name]
		if !ok {
			return nil, fmt.Errorf("run_task: plan %q has no task %q", r.def.Plan.Name, name)
		}
		resolved, err := def.ResolveInputs(inputs)
		if err != nil {
			return nil, fmt.Errorf("run_task %q: %w", name, err)
		}
		res := r.m.engine.Run(ctx, engine.Request{
			Task:    def,
			TaskID:  r.id,
			Inputs:  resolved,
			Mode:    modeName(r.snap.ExecutionMode),
			RunTask: r.runTaskFunc(depth + 1),
			Binding: r.boundResources(),
		})
		return res.Returns, res.Err
	}
}

// plan drives the planner to the target state.
func (r *run) plan(ctx context.Context, target string) error {
	sm := r.def.Plan.StateMap
	if sm == nil {
		return &planningError{fmt.Errorf("task requires state %q but plan %q has no states_map.yaml", target, r.def.Plan.Name)}
	}
	if planner.InPlanning(ctx) {
		return &planningError{errors.New("state planning inside state planning is not allowed")}
	}
	if err := r.scopeProblem(); err != nil {
		return &planningError{err}
	}
	p := &planner.Planner{
		Runner:  planRunner{r},
		Observe: r.observePlanning,
	}
	if err := p.Reach(ctx, sm, target); err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return &planningError{err}
	}
	return nil
}

// planRunner runs the planner's checks and transitions for one task.
type planRunner struct{ r *run }

// Check runs a state's check task inline; the state holds when the task
// succeeds and its returns is truthy. A check task that fails is an error,
// not a plain "no": the state counts as not holding, and planning keeps the
// error to say why it could not tell the state.
func (p planRunner) Check(ctx context.Context, st *plan.State) (bool, error) {
	def, ok := p.r.def.Plan.Tasks[st.Check]
	if !ok {
		return false, fmt.Errorf("check task %q of state %q not found", st.Check, st.Name)
	}
	return p.r.check(ctx, def)
}

// check runs a check task inline under r's slots (its resources): true when
// it succeeds and its returns, if it has any, is truthy.
func (r *run) check(ctx context.Context, def *plan.Task) (bool, error) {
	inputs, err := def.ResolveInputs(nil)
	if err != nil {
		return false, err
	}
	res := r.m.engine.Run(ctx, engine.Request{Task: def, TaskID: r.id, Inputs: inputs, RunTask: r.runTaskFunc(1), Binding: r.boundResources()})
	if ctx.Err() != nil {
		return false, context.Cause(ctx)
	}
	if res.Err != nil {
		return false, res.Err
	}
	if def.Returns == nil {
		return true, nil
	}
	return template.Truthy(res.Returns), nil
}

// Transition runs a transition task as a recorded child of the task, under
// the parent's admitted resources and inside its timeout budget.
func (p planRunner) Transition(ctx context.Context, tr *plan.Transition) error {
	def, ok := p.r.def.Plan.Tasks[tr.Task]
	if !ok {
		return fmt.Errorf("transition task %q not found", tr.Task)
	}
	return p.r.runChild(ctx, def)
}

// runChild records and runs def as a child task of r.
func (r *run) runChild(ctx context.Context, def *plan.Task) error {
	child, err := r.startChild(ctx, def, nil, "transition of "+r.id)
	if err != nil {
		return err
	}
	if st := child.status(); st != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		msg := child.snapshot().GetError().GetMessage()
		return fmt.Errorf("transition task %s (%s) ended %s: %s", def.ID, child.id, st, msg)
	}
	return nil
}

// startChild records def as a child task of r (a transition, an
// interrupt's handler) with inputs, runs it under r's slots and returns it
// once it is over; note is its task.queued message.
func (r *run) startChild(ctx context.Context, def *plan.Task, inputs *structpb.Struct, note string) (*run, error) {
	req := &aurav1.SubmitRequest{Task: def.ID, Inputs: inputs, SkipPlanning: true, Labels: map[string]string{"aura.parent": r.id}}
	child, err := r.m.prepare(req)
	if err != nil {
		return nil, err
	}
	child.def, child.parent, child.principal = def, r, r.principal
	child.snap.ParentId = r.id
	child.snap.Priority = r.snap.Priority
	child.snap.Resources = r.boundResources() // it runs under r's slots
	child.lc = lifecycleOf(child.snap, def.Meta.RequiresInitialState, def.Meta.OnInterrupt, true)
	row, queued := child.record(note)
	if err := r.m.createChild(ctx, row, queued); err != nil {
		return nil, err
	}
	r.m.mu.Lock()
	r.m.live[child.id] = child
	r.m.mu.Unlock()

	child.startSpan(ctx)
	child.endAdmitSpan() // a transition borrows its parent's slots
	cctx, cancel := context.WithCancelCause(child.spanContext(ctx))
	defer cancel(nil)
	child.mu.Lock()
	child.snap.AdmittedAt = timestamppb.New(r.m.now())
	child.stopWork = cancel
	child.mu.Unlock()
	child.feed(&driver{ctx: cctx}, event{kind: evStarted, hooks: r.m.hooks.HasBefore()})
	<-child.Done() // a cancel may have ended it before it started
	return child, nil
}

// fullRetry is how often a transition's creation is tried again while the
// disk is full.
const fullRetry = 250 * time.Millisecond

// createChild records a transition task. A transition is part of a task
// already accepted, not new work: on a full disk (the store refuses new
// tasks) its creation waits for space, within the parent's own time budget,
// instead of failing the parent's planning.
func (m *Manager) createChild(ctx context.Context, row *store.Task, queued store.Event) error {
	for {
		err := m.store.Write(storeCtx, store.Batch{Create: row, Events: []store.Event{queued}}).Wait()
		if !errors.Is(err, store.ErrFull) {
			return err
		}
		t := time.NewTimer(fullRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		case <-t.C:
		}
	}
}

// storeErrorLevel is the level of a task's failed store write: a full disk
// or a deleted database fails every task's writes at once, and the store
// logs that once itself, so each task's line is only detail.
func storeErrorLevel(err error) slog.Level {
	if errors.Is(err, store.ErrFull) || errors.Is(err, store.ErrGone) {
		return slog.LevelDebug
	}
	return slog.LevelError
}
