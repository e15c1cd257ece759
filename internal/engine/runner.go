package engine

import (
	"context"
	"errors"
	"fmt"
	"go.opentelemetry.io/otel/trace"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/aura-dev/aura/internal/plan"
	"github.com/aura-dev/aura/internal/template"
)

// Runner runs tasks. It is immutable after New and safe for concurrent use.
type Runner struct {
	actions   ActionSet
	io, cpu   Lane
	log       *slog.Logger
	maxLoop   int
	maxOutput int64
}

// New returns a Runner.
func New(cfg Config) *Runner {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	maxLoop := cfg.MaxLoopIterations
	if maxLoop <= 0 {
		maxLoop = DefaultMaxLoopIterations
	}
	maxOutput := cfg.MaxTaskOutput
	if maxOutput <= 0 {
		maxOutput = DefaultMaxTaskOutput
	}
	return &Runner{actions: cfg.Actions, io: cfg.IO, cpu: cfg.CPU, log: log, maxLoop: maxLoop, maxOutput: maxOutput}
}

// ErrNoTask is returned in Result.Err for a Request without a task.
var ErrNoTask = errors.New("engine: request has no task")

// Run runs req's task to the end and never panics.
//
// Result.Err is nil on success; a *StepError naming the first step that
// failed without continue_on_failure; an error wrapping context.Cause(ctx)
// (and ctx.Err(), so errors.Is with context.DeadlineExceeded or
// context.Canceled holds) when ctx ended first; or a *ReturnsError.
//
// A list of steps runs in order in the caller's goroutine and stops at the
// first failure; the steps after it stay pending. A map of steps is a
// graph: every step whose dependencies are settled runs at once, and after
// a failure the remaining steps still run when their depends_on allows
// (so {step: failed} handlers run). A step whose plain dependency failed
// or was skipped is skipped.
func (r *Runner) Run(ctx context.Context, req Request) (res Result) {
	if req.Task == nil {
		return Result{Err: ErrNoTask}
	}
	ru := newRun(ctx, r, req)
	defer req.Pause.done()
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("engine panic", "task_id", ru.env.TaskID, "panic", p, "stack", string(debug.Stack()))
			res = Result{Err: fmt.Errorf("engine: internal error: %v", p), Steps: ru.states}
		}
	}()
	if req.Task.Sequential {
		ru.runList()
	} else {
		ru.runGraph()
	}
	if ru.err == nil {
		ru.boundary() // after the last step: a pause asked during it is held here
	}
	res.Steps = ru.states
	res.Err = ru.err
	if res.Err == nil && req.Task.Returns != nil {
		v, err := ru.eval(req.Task.Returns, nil)
		if err != nil {
			res.Err = &ReturnsError{Err: err}
		} else {
			res.Returns = v
		}
	}
	return res
}

// stopErr explains why ctx ended, wrapping both ctx.Err() and its cause.
func stopErr(ctx context.Context) error {
	err, cause := ctx.Err(), context.Cause(ctx)
	if cause == nil || errors.Is(cause, err) {
		return fmt.Errorf("task stopped: %w", err)
	}
	return fmt.Errorf("task stopped: %w: %w", err, cause)
}

// run is the state of one Runner.Run. Fields are owned by the goroutine
// that called Run; step goroutines of a graph only run actions and report
// back over a channel.
type run struct {
	r      *Runner
	ctx    context.Context
	req    Request
	task   *plan.Task
	mode   string
	obs    Observer
	env    ActionEnv
	states []StepState
	output []any
	err    error // first task-failing error
	// held is the estimated size of the step outputs kept so far; step
	// goroutines add to it, so it is atomic.
	held atomic.Int64

	// Template scope, built on first use and kept current lazily.
	scope   map[string]any
	nodes   map[string]any
	dirty   []int
	isDirty []bool
}

func newRun(ctx context.Context, r *Runner, req Request) *run {
	t := req.Task
	taskID := req.TaskID
	if taskID == "" {
		taskID = t.ID
	}
	mode := req.Mode
	if mode == "" {
		mode = t.Meta.ExecutionMode
	}
	ru := &run{
		r: r, ctx: ctx, req: req, task: t, mode: mode, obs: req.Observer,
		states:  make([]StepState, len(t.Steps)),
		output:  make([]any, len(t.Steps)),
		isDirty: make([]bool, len(t.Steps)),
	}
	for i, s := range t.Steps {
		ru.states[i].ID = s.ID
	}
	var traceID string
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		traceID = sc.TraceID().String()
	}
	ru.env = ActionEnv{
		Plan:    t.Plan,
		TaskID:  taskID,
		Task:    t.ID,
		TraceID: traceID,
		Logger:  r.log,
		RunTask: req.RunTask,
		Output:  req.Output,
	}
	return ru
}

// setStatus records a status change and marks the step's scope entry stale.
func (ru *run) setStatus(i int, st StepStatus) {
	ru.states[i].Status = st
	if ru.nodes != nil && !ru.isDirty[i] {
		ru.isDirty[i] = true
		ru.dirty = append(ru.dirty, i)
	}
}

// eval evaluates v in the task's scope (plus loop when non-nil).
func (ru *run) eval(v template.Value, loop map[string]any) (any, error) {
	if v.IsConst() {
		return v.Eval(nil)
	}
	ru.syncScope()
	scope := ru.scope
	if loop != nil {
		scope = make(map[string]any, len(ru.scope)+1)
		for k, x := range ru.scope {
			scope[k] = x
		}
		scope["loop"] = loop
	}
	return v.Eval(scope)
}

func (ru *run) syncScope() {
	if ru.nodes == nil {
		ru.nodes = make(map[string]any, len(ru.states))
		for i := range ru.states {
			ru.nodes[ru.states[i].ID] = ru.nodeEntry(i)
		}
		inputs := ru.req.Inputs
		if inputs == nil {
			inputs = map[string]any{}
		}
		p := ru.task.Plan
		planScope := map[string]any{}
		if p != nil {
			planScope = map[string]any{"name": p.Name, "dir": p.Dir}
		}
		ru.scope = map[string]any{
			"inputs": inputs,
			"nodes":  ru.nodes,
			"plan":   planScope,
			"task":   map[string]any{"id": ru.env.TaskID, "name": ru.task.Name},
			"loop":   map[string]any{},
			// resources.<pool> is the instance of pool the task holds.
			"resources": resourceScope(ru.req.Binding),
		}
		return
	}
	for _, i := range ru.dirty {
		ru.nodes[ru.states[i].ID] = ru.nodeEntry(i)
		ru.isDirty[i] = false
	}
	ru.dirty = ru.dirty[:0]
}

func (ru *run) nodeEntry(i int) map[string]any {
	st := &ru.states[i]
	e := map[string]any{"status": st.Status.String(), "output": ru.output[i], "attempts": int64(st.Attempts)}
	if st.Error != "" {
		e["error"] = st.Error
	} else {
		e["error"] = nil
	}
	return e
}

// runList runs list-form steps in order in this goroutine.
func (ru *run) runList() {
	for i := range ru.task.Steps {
		if !ru.boundary() {
			return
		}
		job, ok := ru.prepare(i)
		if !ok {
			if ru.err != nil {
				return
			}
			continue
		}
		for {
			ru.states[i].StartedAt = time.Now()
			ru.setStatus(i, StepRunning)
			o := job.execute(ru.ctx)
			if !o.aborted {
				ru.finish(o)
				break
			}
			// A pause aborted it: it runs again after the pause.
			ru.setStatus(i, StepPending)
			job.first = o.attempts
			if !ru.boundary() {
				return
			}
		}
		if ru.err != nil {
			return
		}
	}
}

// prepare evaluates a step's when and params. It returns false when the
// step was skipped or failed while preparing (recorded already).
func (ru *run) prepare(i int) (job, bool) {
	s := ru.task.Steps[i]
	if s.When != nil {
		v, err := ru.eval(s.When, nil)
		if err != nil {
			ru.failEarly(i, fmt.Errorf("when: %w", err))
			return job{}, false
		}
		if !template.Truthy(v) {
			ru.skip(i)
			return job{}, false
		}
	}
	act, ok := ru.r.lookup(s.Action)
	if !ok {
		ru.failEarly(i, fmt.Errorf("unknown action %q", s.Action))
		return job{}, false
	}
	j := job{ru: ru, step: s, index: i, action: act, lane: ru.laneFor(s, act)}
	if s.Loop == nil {
		p, err := ru.params(s, nil)
		if err != nil {
			ru.failEarly(i, err)
			return job{}, false
		}
		j.one = p
		return j, true
	}
	items, err := ru.loopItems(s)
	if err != nil {
		ru.failEarly(i, err)
		return job{}, false
	}
	j.loop = true
	j.params = make([]any, len(items))
	for k, item := range items {
		p, err := ru.params(s, map[string]any{"item": item, "index": int64(k)})
		if err != nil {
			ru.failEarly(i, fmt.Errorf("iteration %d: %w", k, err))
			return job{}, false
		}
		j.params[k] = p
	}
	return j, true
}

func (r *Runner) lookup(name string) (Action, bool) {
	if r.actions == nil {
		return nil, false
	}
	return r.actions.Lookup(name)
}

// laneFor picks the lane for a step: the step's lane, else the request's
// mode, else the task's. Non-portable actions always stay in-process, and
// actions that only wait (a Waiter) run on no lane at all.
func (ru *run) laneFor(s *plan.Step, act Action) Lane {
	if w, ok := act.(Waiter); ok && w.Waits() {
		return nil
	}
	mode := s.Lane
	if mode == "" {
		mode = ru.mode
	}
	if mode == "cpu" && ru.r.cpu != nil && act.Portable() {
		return ru.r.cpu
	}
	return ru.r.io
}

func (ru *run) params(s *plan.Step, loop map[string]any) (any, error) {
	if s.Params == nil {
		return map[string]any(nil), nil
	}
	v, err := ru.eval(s.Params, loop)
	if err != nil {
		return nil, fmt.Errorf("params: %w", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("params must evaluate to a mapping, got %T", v)
	}
	return m, nil
}

func (ru *run) loopItems(s *plan.Step) ([]any, error) {
	if s.Loop.ForEach != nil {
		v, err := ru.eval(s.Loop.ForEach, nil)
		if err != nil {
			return nil, fmt.Errorf("loop.for_each: %w", err)
		}
		l, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("loop.for_each must evaluate to a list, got %T", v)
		}
		if len(l) > ru.r.maxLoop {
			return nil, fmt.Errorf("loop.for_each has %d items, more than the limit of %d iterations (aurad --max-loop-iterations)", len(l), ru.r.maxLoop)
		}
		return l, nil
	}
	v, err := ru.eval(s.Loop.Times, nil)
	if err != nil {
		return nil, fmt.Errorf("loop.times: %w", err)
	}
	var n int64
	switch x := v.(type) {
	case int64:
		n = x
	case float64:
		n = int64(x)
		if float64(n) != x {
			return nil, fmt.Errorf("loop.times must be an integer, got %v", x)
		}
	default:
		return nil, fmt.Errorf("loop.times must be an integer, got %T", v)
	}
	if n < 0 {
		return nil, fmt.Errorf("loop.times must not be negative, got %d", n)
	}
	if n > int64(ru.r.maxLoop) {
		return nil, fmt.Errorf("loop.times is %d, more than the limit of %d iterations (aurad --max-loop-iterations)", n, ru.r.maxLoop)
	}
	items := make([]any, n)
	for k := range items {
		items[k] = int64(k)
	}
	return items, nil
}

// hold counts a successful call's output against the task's budget: every
// output stays in memory (nodes.<id>.output) until the task ends, so many
// outputs, each within its own limits (a loop of 10 MiB responses), could
// otherwise add up to more than aurad has.
func (ru *run) hold(out any) error {
	size := outputSize(out)
	if total := ru.held.Add(size); total > ru.r.maxOutput {
		return fmt.Errorf("the task's step outputs would hold about %d MiB, more than the limit of %d MiB (aurad --max-task-output)", total>>20, ru.r.maxOutput>>20)
	}
	return nil
}

// outputSize estimates the memory a JSON-like value holds: its strings'
// bytes plus a per-value overhead.
func outputSize(v any) int64 {
	switch x := v.(type) {
	case string:
		return 16 + int64(len(x))
	case []any:
		n := int64(24)
		for _, e := range x {
			n += outputSize(e)
		}
		return n
	case map[string]any:
		n := int64(48)
		for k, e := range x {
			n += 16 + int64(len(k)) + outputSize(e)
		}
		return n
	}
	return 16
}

func (ru *run) skip(i int) {
	now := time.Now()
	ru.states[i].StartedAt, ru.states[i].FinishedAt = now, now
	ru.setStatus(i, StepSkipped)
	if ru.obs != nil {
		ru.obs.StepFinished(ru.states[i].ID, 0, StepSkipped, nil)
	}
}

// failEarly fails a step whose when, params or loop could not be
// evaluated; it reports one attempt so observers see the failure.
func (ru *run) failEarly(i int, err error) {
	id := ru.states[i].ID
	if ru.obs != nil {
		ru.obs.StepStarted(id, 1)
	}
	now := time.Now()
	ru.states[i].StartedAt = now
	ru.finish(outcome{index: i, attempts: 1, err: err, finished: now})
	if ru.obs != nil {
		ru.obs.StepFinished(id, 1, StepFailed, err)
	}
}

// outcome is what executing a step produced.
type outcome struct {
	index    int
	out      any
	attempts int
	err      error
	finished time.Time
	aborted  bool // a pause aborted it (ErrStepAborted): it did not run
}

// finish records a step's outcome (in the Run goroutine).
func (ru *run) finish(o outcome) {
	st := &ru.states[o.index]
	st.Attempts = o.attempts
	st.FinishedAt = o.finished
	ru.output[o.index] = o.out
	if o.err == nil {
		ru.setStatus(o.index, StepSucceeded)
		return
	}
	st.Error = o.err.Error()
	s := ru.task.Steps[o.index]
	if ru.ctx.Err() != nil {
		ru.setStatus(o.index, StepCancelled)
		if ru.err == nil {
			ru.err = stopErr(ru.ctx)
		}
		return
	}
	ru.setStatus(o.index, StepFailed)
	ru.env.Logger.Warn("step failed", append(ru.env.LogAttrs(), "step", s.ID, "attempts", o.attempts, "error", o.err)...)
	if !s.ContinueOnFailure && ru.err == nil {
		ru.err = &StepError{Step: s.ID, Err: o.err}
	}
}
