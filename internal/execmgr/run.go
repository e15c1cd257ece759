package execmgr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
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

// run is one task known to this process, from submission to its terminal
// status. A top-level run goes through admission; a child run (a state
// transition) borrows its parent's admitted resources.
type run struct {
	// immutable after prepare
	m      *Manager
	id     string
	def    *plan.Task
	tags   []admission.Tag
	parent *run
	// principal submitted the task (a child run: its parent's); it owns
	// the task's idempotency key, queue place and admission share.
	principal string
	// created is the task's creation while admission may not have waited
	// for its commit (see Manager.SubmitAs); nil once it is known committed.
	created atomic.Pointer[store.Pending]

	admitted bool // guarded by m.mu

	mu             sync.Mutex   // guards the fields below
	snap           *aurav1.Task // nil while packed
	packed         []byte       // a waiting task's snapshot, encoded
	steps          map[string]*aurav1.StepState
	cancelFn       context.CancelCauseFunc
	pendingCancel  error
	finished       bool
	over           bool          // the terminal status is recorded (and done closed, if made)
	done           chan struct{} // made on demand (Done): most tasks are never waited for
	beforeAsked    bool          // before_task_run hooks were consulted
	beforeRecorded bool          // its event is in the log
	logs           *logSink

	// Tracing; span and admitSpan are set before the run is shared.
	span, admitSpan trace.Span
	stepSpans       map[string]trace.Span // guarded by mu
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

// pack keeps only the encoded snapshot of a task that waits in the queue.
func (r *run) pack(data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.packed, r.snap = data, nil
}

// unpackLocked decodes a packed snapshot again (admission, cancel).
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
	e := event{TaskID: r.id, Type: typ, Time: r.m.now(), Fields: eventFields{
		Status: int32(r.snap.Status), Step: step, Message: msg, Attempt: int32(attempt), Snapshot: task}}
	return e.stored()
}

// hookEventLocked builds a HookEvent carrying the marshalled snapshot.
func (r *run) hookEventLocked(point string, task []byte) store.Event {
	e := event{TaskID: r.id, Type: point, Hook: true, Time: r.m.now(), Fields: eventFields{Snapshot: task}}
	return e.stored()
}

// append records progress events (steps, transitions, logs) without
// waiting for their commit: they are queued ahead of the task's next
// status change, which is durable before anything depends on it.
func (r *run) append(evs ...store.Event) {
	r.m.store.Write(storeCtx, store.Batch{Events: evs, Detached: true})
}

// setStatus moves the task to a non-terminal status and records it. The
// task must not go on when that fails: nothing may run unrecorded.
func (r *run) setStatus(status aurav1.TaskStatus, typ, msg string, extra ...store.Event) error {
	r.mu.Lock()
	r.snap.Status = status
	var evs []store.Event
	if status == aurav1.TaskStatus_TASK_STATUS_RUNNING && r.snap.StartedAt == nil {
		r.snap.StartedAt = timestamppb.New(r.m.now())
	}
	data := r.snapLocked()
	if status == aurav1.TaskStatus_TASK_STATUS_RUNNING {
		evs = append(evs, r.hookEventLocked(hooks.BeforeTaskRun, data))
		r.beforeRecorded = true
	}
	row := r.rowLocked(data)
	evs = append(append(evs, r.eventLocked(typ, "", 0, msg, data)), extra...)
	r.mu.Unlock()
	if err := r.m.store.Write(storeCtx, store.Batch{Update: row, Events: evs}).Wait(); err != nil {
		if r.neverRecorded() {
			return errUnrecorded
		}
		r.m.log.Log(context.Background(), storeErrorLevel(err), "recording a status change failed", "task_id", r.id, "task", r.def.ID, "status", status, "err", err)
		return fmt.Errorf("recording status %s: %w", status, err)
	}
	return nil
}

// neverRecorded reports whether the task's creation failed to commit: then
// it never existed, and nothing of it may run or be reported. It waits for
// the creation, which is over by the time any later write of the task has
// been answered (the store commits in queue order).
func (r *run) neverRecorded() bool {
	p := r.created.Load()
	return p != nil && p.Wait() != nil
}

// Done returns a channel closed once the terminal status is recorded.
func (r *run) Done() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done == nil {
		r.done = make(chan struct{})
		if r.over {
			close(r.done)
		}
	}
	return r.done
}

// markDone says the terminal status is recorded.
func (r *run) markDone() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.over = true
	if r.done != nil {
		close(r.done)
	}
}

// cancel stops the task with cause, now or as soon as it starts.
func (r *run) cancel(cause error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cancelFn != nil {
		r.cancelFn(cause)
		return
	}
	r.pendingCancel = cause
}

func (r *run) timeout() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unpackLocked()
	return r.snap.Timeout.AsDuration()
}

// execute runs an admitted top-level task until its end is queued for the
// store. It returns the tasks that releasing its slots admitted, and the
// rest of its end (see conclude) to run.
func (r *run) execute(base context.Context) (next []*run, tail func(), committed bool) {
	r.endAdmitSpan()
	// One context: the timeout cancels it with its own cause, as Cancel
	// does with the caller's reason.
	ctx, cancel := context.WithCancelCause(r.spanContext(base))
	defer cancel(nil)
	timer := time.AfterFunc(r.timeout(), func() { cancel(errTimeout) })
	defer timer.Stop()
	r.mu.Lock()
	r.cancelFn = cancel
	if r.pendingCancel != nil {
		cancel(r.pendingCancel)
	}
	r.snap.AdmittedAt = timestamppb.New(r.m.now())
	r.mu.Unlock()
	err := r.lifecycle(ctx, true)
	r.noteEnd(ctx, err)
	tail, committed = r.conclude(ctx, err, func() { next = r.m.released(r) })
	return next, tail, committed
}

// lifecycle is planning, before_task_run hooks, then the steps.
func (r *run) lifecycle(ctx context.Context, mayPlan bool) (err error) {
	defer func() {
		if p := recover(); p != nil {
			r.m.log.Error("task lifecycle panicked", "task_id", r.id, "task", r.def.ID, "panic", fmt.Sprint(p))
			err = fmt.Errorf("internal error: %v", p)
		}
	}()
	if target := r.def.Meta.RequiresInitialState; target != "" && mayPlan && !r.snap.SkipPlanning {
		if err := r.setStatus(aurav1.TaskStatus_TASK_STATUS_PLANNING, "task.planning", fmt.Sprintf("planning to reach state %q", target)); err != nil {
			return err
		}
		pctx, span := r.m.tracer.Start(ctx, "planning", trace.WithAttributes(attribute.String("aura.target_state", target)))
		err := r.plan(pctx, target)
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
		if err != nil {
			return err
		}
	}
	// The before_task_run event is recorded atomically with what follows
	// the hooks' answer (RUNNING, or the task's end), so a crash while
	// interceptors decide leaves no trace and the task runs once.
	r.mu.Lock()
	r.beforeAsked = true
	r.mu.Unlock()
	if r.m.hooks.HasBefore() {
		// Hooks and interceptors hear only of recorded tasks.
		if r.neverRecorded() {
			return errUnrecorded
		}
		// Hooks only read the task, and nothing changes the snapshot
		// until they answer: no copy.
		if err := r.m.hooks.Before(ctx, hooks.NewBeforeRunRequest(r.snap)); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	// The running snapshot lists every step (pending), so watchers know
	// how many there are.
	r.mu.Lock()
	for _, st := range r.def.Steps {
		r.stepLocked(st.ID).Status = aurav1.StepStatus_STEP_STATUS_PENDING
	}
	r.mu.Unlock()
	// Inputs live once, in the snapshot; resolving them again turns JSON
	// numbers back into the declared int type.
	inputs, err := r.def.ResolveInputs(r.snap.GetInputs().AsMap())
	if err != nil {
		return fmt.Errorf("inputs: %w", err)
	}
	if err := r.setStatus(aurav1.TaskStatus_TASK_STATUS_RUNNING, "task.running", ""); err != nil {
		return err
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
	})
	r.logs.flush()
	r.mu.Lock()
	r.snap.Steps = stepStates(res.Steps)
	if res.Returns != nil {
		v, verr := structpb.NewValue(res.Returns)
		if verr != nil {
			v = structpb.NewStringValue(fmt.Sprint(res.Returns))
		}
		r.snap.Result = v
	}
	r.mu.Unlock()
	return res.Err
}

func modeName(m aurav1.ExecutionMode) string {
	if m == aurav1.ExecutionMode_EXECUTION_MODE_CPU {
		return "cpu"
	}
	return "io"
}

// finish records the terminal status with task.finished and the after_*
// hook events in one transaction, then runs the local after hooks.
func (r *run) finish(ctx context.Context, err error) {
	tail, _ := r.conclude(ctx, err, nil)
	tail()
}

// conclude is finish in two parts for an admitted task. It queues the
// terminal write and then calls release (when not nil), which gives back the
// task's admission slots: the next task on those resources starts a commit
// earlier, while the log still records this task's end first (the store
// commits in queue order). It returns the rest (waiting for the commit, the
// after hooks), which the caller must run, and whether the terminal record
// is committed already (the rest will not block).
func (r *run) conclude(ctx context.Context, err error, release func()) (tail func(), committed bool) {
	if release == nil {
		release = func() {}
	}
	status, te := outcome(ctx, err)
	never := r.neverRecorded()
	r.mu.Lock()
	if r.finished {
		r.mu.Unlock()
		release()
		return func() {}, true
	}
	if never {
		// It never existed: nothing to record, nobody to tell.
		r.finished = true
		r.mu.Unlock()
		release()
		return func() {
			r.endSpan(status, te)
			r.markDone()
			r.m.drop(r)
		}, true
	}
	r.unpackLocked()
	r.finished = true
	if status == aurav1.TaskStatus_TASK_STATUS_INTERRUPTED && r.parent == nil && r.snap.ParentId == "" && r.def.Meta.OnInterrupt == "requeue" {
		r.snap.Status = aurav1.TaskStatus_TASK_STATUS_QUEUED
		r.snap.Attempt++
		r.snap.StartedAt = nil
		r.snap.Steps = nil
		r.snap.Resources = nil // admission binds it afresh
		data := r.snapLocked()
		row := r.rowLocked(data)
		ev := r.eventLocked("task.queued", "", 0, "requeued after interruption (on_interrupt: requeue)", data)
		r.mu.Unlock()
		pending := r.m.store.Write(storeCtx, store.Batch{Update: row, Events: []store.Event{ev}})
		release()
		return func() {
			if err := pending.Wait(); err != nil {
				r.m.log.Log(context.Background(), storeErrorLevel(err), "requeueing an interrupted task failed", "task_id", r.id, "task", r.def.ID, "err", err)
			}
			r.endSpan(status, &aurav1.TaskError{Kind: string(KindInterrupted), Message: "requeued"})
			r.markDone()
			r.m.forget(r, status)
		}, pending.Done()
	}
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
	point := hooks.OutcomePoint(status)
	data := r.snapLocked()
	row := r.rowLocked(data)
	var evs []store.Event
	if r.beforeAsked && !r.beforeRecorded {
		evs = append(evs, r.hookEventLocked(hooks.BeforeTaskRun, data))
	}
	evs = append(evs, r.eventLocked("task.finished", te.GetStep(), 0, msg, data),
		r.hookEventLocked(point, data), r.hookEventLocked(hooks.AfterTaskRun, data))
	final := r.snap // terminal: nothing changes it any more
	r.mu.Unlock()

	pending := r.m.store.Write(storeCtx, store.Batch{Update: row, Events: evs})
	release()
	return func() { r.concluded(ctx, pending, status, te, final) }, pending.Done()
}

// concluded waits for the terminal record, then logs, ends the span and
// runs the after hooks.
func (r *run) concluded(ctx context.Context, pending *store.Pending, status aurav1.TaskStatus, te *aurav1.TaskError, final *aurav1.Task) {
	if err := pending.Wait(); err != nil {
		r.m.log.Log(context.Background(), storeErrorLevel(err), "recording the final status failed", "task_id", r.id, "task", r.def.ID, "status", status, "err", err)
	}
	// Successes are many and all in the event log and the metrics: they log
	// at debug. Anything else is worth a line.
	level := slog.LevelDebug
	if status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		level = slog.LevelWarn
	}
	if r.m.log.Enabled(context.Background(), level) {
		attrs := []any{"task_id", r.id, "task", r.def.ID, "status", status.String(), "error", te.GetMessage()}
		if tid := r.traceID(); tid != "" {
			attrs = append(attrs, "trace_id", tid)
		}
		r.m.log.Log(context.Background(), level, "task finished", attrs...)
	}
	r.endSpan(status, te)
	hctx := context.WithoutCancel(ctx)
	r.m.hooks.After(hctx, hooks.NewAfterRunRequest(final))
	r.markDone()
	r.m.forget(r, status)
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
	ev := event{TaskID: r.id, Type: "step.retrying", Time: r.m.now(), Fields: eventFields{Status: int32(r.snap.Status),
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
	inputs, err := def.ResolveInputs(nil)
	if err != nil {
		return false, err
	}
	res := p.r.m.engine.Run(ctx, engine.Request{Task: def, TaskID: p.r.id, Inputs: inputs, RunTask: p.r.runTaskFunc(1), Binding: p.r.boundResources()})
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
	req := &aurav1.SubmitRequest{Task: def.ID, SkipPlanning: true, Labels: map[string]string{"aura.parent": r.id}}
	child, err := r.m.prepare(req)
	if err != nil {
		return err
	}
	child.def, child.parent, child.principal = def, r, r.principal
	child.snap.ParentId = r.id
	child.snap.Priority = r.snap.Priority
	child.snap.Resources = r.boundResources() // it runs under r's slots
	row, queued := child.record("transition of " + r.id)
	if err := r.m.createChild(ctx, row, queued); err != nil {
		return err
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
	child.cancelFn = cancel
	if child.pendingCancel != nil {
		cancel(child.pendingCancel)
	}
	child.mu.Unlock()
	err = child.lifecycle(cctx, false)
	child.finish(cctx, err)
	if st := child.status(); st != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		msg := child.snapshot().GetError().GetMessage()
		return fmt.Errorf("transition task %s (%s) ended %s: %s", def.ID, child.id, st, msg)
	}
	return nil
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
