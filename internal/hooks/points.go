package hooks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// The hook points, named as in the original (Python) Aura, so its plugins'
// hook names carry over; docs/hooks.md lists them.
const (
	BeforeTaskRun    = "before_task_run"
	AfterTaskSuccess = "after_task_success"
	AfterTaskFailure = "after_task_failure"
	AfterTaskRun     = "after_task_run"
)

// The points of interrupts and preemption: a task's hook event at each
// (with its snapshot) tells subscribers an interrupt fired on it, that it
// paused, resumed, or that a task of higher priority took its instances.
const (
	InterruptFired = "interrupt.fired"
	TaskPaused     = "task.paused"
	TaskResumed    = "task.resumed"
	TaskPreempted  = "task.preempted"
)

// Points lists every hook point in lifecycle order.
var Points = []string{BeforeTaskRun, AfterTaskSuccess, AfterTaskFailure, AfterTaskRun,
	InterruptFired, TaskPaused, TaskResumed, TaskPreempted}

// ValidPoint reports whether name is a hook point.
func ValidPoint(name string) bool {
	for _, p := range Points {
		if p == name {
			return true
		}
	}
	return false
}

// OutcomePoint returns the after_* point that a task ending in status
// reaches before after_task_run: after_task_success for SUCCEEDED,
// after_task_failure for every other terminal status.
func OutcomePoint(status aurav1.TaskStatus) string {
	if status == aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		return AfterTaskSuccess
	}
	return AfterTaskFailure
}

// TaskContext is what every hook point is told about the task (the
// original Aura's task_context, as a struct). A hook reads what it needs
// from here, so a field added here, such as the node that ran the task or
// the schedule that started it, reaches every hook and interceptor without
// changing any of them.
type TaskContext struct {
	ID   string // the task's id
	Name string // the task definition, "plan/task"
	Plan string // the plan part of Name
	// Labels are the task's labels: the snapshot's own map, so read it and
	// do not modify it.
	Labels map[string]string
	// Resources are the pool instances the task holds, pool -> instance
	// (the snapshot's own map: read it, do not modify it).
	Resources map[string]string
	// Task is the task's snapshot at this point, the one its hook event
	// records. Every hook at the point shares it with the task itself:
	// read it, do not modify it.
	Task *aurav1.Task
}

// NewTaskContext returns the context of the task whose snapshot is task.
func NewTaskContext(task *aurav1.Task) TaskContext {
	plan, _, _ := strings.Cut(task.GetTask(), "/")
	return TaskContext{ID: task.GetId(), Name: task.GetTask(), Plan: plan, Labels: task.GetLabels(), Resources: task.GetResources(), Task: task}
}

// BeforeRunRequest is what before_task_run hooks and interceptors are
// asked about: a task that was admitted and reached its required state,
// whose steps are about to run.
type BeforeRunRequest struct {
	TaskContext
}

// NewBeforeRunRequest returns the before_task_run request for the task
// whose snapshot is task.
func NewBeforeRunRequest(task *aurav1.Task) *BeforeRunRequest {
	return &BeforeRunRequest{TaskContext: NewTaskContext(task)}
}

// BeforeRunResponse is one hook's or interceptor's answer at
// before_task_run. Its zero value lets the task run.
type BeforeRunResponse struct {
	// Denied stops the task: it ends FAILED with error kind denied.
	Denied bool
	// Reason says why, in the task's error: "denied by <name>: <reason>".
	Reason string
}

// Deny stops the task for reason.
func (r *BeforeRunResponse) Deny(reason string) { r.Denied, r.Reason = true, reason }

// AfterRunRequest is what the after_* hooks are told: the task has
// reached a terminal status, recorded with the snapshot in Task.
type AfterRunRequest struct {
	TaskContext
	Status aurav1.TaskStatus
	Error  *aurav1.TaskError // why it did not succeed; nil when it did
}

// NewAfterRunRequest returns the after_* request for the task whose
// terminal snapshot is task.
func NewAfterRunRequest(task *aurav1.Task) *AfterRunRequest {
	return &AfterRunRequest{TaskContext: NewTaskContext(task), Status: task.GetStatus(), Error: task.GetError()}
}

// Hook is anything registered in code. It implements one or more of the
// point interfaces below, each of which takes the point's request (and,
// where the hook can answer, a response to fill in). A hook that returns
// an error or panics is logged; its answer is ignored and the task goes
// on.
type Hook interface {
	Name() string
}

// BeforeRunHook runs before a task's steps. It stops the task by calling
// resp.Deny; an error means the hook could not decide, and is logged and
// ignored (the task runs).
type BeforeRunHook interface {
	Hook
	BeforeTaskRun(ctx context.Context, req *BeforeRunRequest, resp *BeforeRunResponse) error
}

// After hooks have no response: the task's outcome is recorded before they
// run, and nothing they do changes it.

// AfterSuccessHook runs after a task succeeded.
type AfterSuccessHook interface {
	Hook
	AfterTaskSuccess(ctx context.Context, req *AfterRunRequest) error
}

// AfterFailureHook runs after a task ended in any status but success.
type AfterFailureHook interface {
	Hook
	AfterTaskFailure(ctx context.Context, req *AfterRunRequest) error
}

// AfterRunHook runs last, after every task, whatever its outcome.
type AfterRunHook interface {
	Hook
	AfterTaskRun(ctx context.Context, req *AfterRunRequest) error
}

// DeniedError is a veto from a hook or interceptor: what Registry.Before
// returns when one denied the task.
type DeniedError struct {
	By     string
	Reason string
}

func (e *DeniedError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("denied by %s", e.By)
	}
	return fmt.Sprintf("denied by %s: %s", e.By, e.Reason)
}

// Interceptor is a remote plugin asked to allow or deny each matching
// before_task_run (HookService.Intercept). Unlike a local hook's, an
// interceptor's failure to answer is not ignored: FailOpen decides.
type Interceptor interface {
	Name() string
	// Matches reports whether the interceptor wants this task.
	Matches(req *BeforeRunRequest) bool
	// Decide asks the plugin and fills in resp with its answer; an error
	// means there is no answer. It must honour ctx.
	Decide(ctx context.Context, req *BeforeRunRequest, resp *BeforeRunResponse) error
	Timeout() time.Duration
	FailOpen() bool
}

// Registry holds local hooks and interceptors. It is safe for concurrent
// use. Registration is rare and every task reads the registry several
// times, so readers take an immutable view (copy on write) without locking.
type Registry struct {
	log *slog.Logger

	view atomic.Pointer[view] // never nil after NewRegistry

	mu           sync.Mutex // serialises writers; guards the fields below
	hooks        []Hook
	interceptors map[uint64]*registered
	nextID       uint64
}

// registered is an interceptor with the counts Snapshot reports.
type registered struct {
	Interceptor
	calls, denials atomic.Uint64
}

// view is the registry as one task sees it, split by hook point.
type view struct {
	before       []BeforeRunHook
	success      []AfterSuccessHook
	failure      []AfterFailureHook
	after        []AfterRunHook
	interceptors []*registered // in registration order
}

// NewRegistry returns an empty registry.
func NewRegistry(log *slog.Logger) *Registry {
	if log == nil {
		log = slog.Default()
	}
	r := &Registry{log: log, interceptors: map[uint64]*registered{}}
	r.view.Store(&view{})
	return r
}

// publishLocked rebuilds the readers' view. r.mu must be held.
func (r *Registry) publishLocked() {
	v := &view{}
	for _, h := range r.hooks {
		if x, ok := h.(BeforeRunHook); ok {
			v.before = append(v.before, x)
		}
		if x, ok := h.(AfterSuccessHook); ok {
			v.success = append(v.success, x)
		}
		if x, ok := h.(AfterFailureHook); ok {
			v.failure = append(v.failure, x)
		}
		if x, ok := h.(AfterRunHook); ok {
			v.after = append(v.after, x)
		}
	}
	ids := slices.Sorted(maps.Keys(r.interceptors))
	for _, id := range ids {
		v.interceptors = append(v.interceptors, r.interceptors[id])
	}
	r.view.Store(v)
}

// Register adds a local hook.
func (r *Registry) Register(h Hook) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hooks = append(r.hooks, h)
	r.publishLocked()
}

// AddInterceptor registers ic and returns the function that removes it.
func (r *Registry) AddInterceptor(ic Interceptor) (remove func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nextID++
	id := r.nextID
	r.interceptors[id] = &registered{Interceptor: ic}
	r.publishLocked()
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		delete(r.interceptors, id)
		r.publishLocked()
	}
}

// HasBefore reports whether anything listens at before_task_run (a local
// hook or an interceptor), so callers can skip preparing the call.
func (r *Registry) HasBefore() bool {
	v := r.view.Load()
	return len(v.before) > 0 || len(v.interceptors) > 0
}

// Interceptors returns how many interceptors are registered.
func (r *Registry) Interceptors() int { return len(r.view.Load().interceptors) }

// Before runs the before_task_run local hooks in registration order, then
// asks every matching interceptor concurrently. It returns a *DeniedError
// when anything denies, or ctx's error when the task's budget ran out.
func (r *Registry) Before(ctx context.Context, req *BeforeRunRequest) error {
	v := r.view.Load()
	var resp BeforeRunResponse
	for _, h := range v.before {
		resp = BeforeRunResponse{} // each hook answers for itself
		err := r.guard(h.Name(), BeforeTaskRun, &req.TaskContext, func() error {
			return h.BeforeTaskRun(ctx, req, &resp)
		})
		if err == nil && resp.Denied {
			return &DeniedError{By: h.Name(), Reason: resp.Reason}
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
	}
	var matching []*registered
	for _, ic := range v.interceptors {
		if ic.Matches(req) {
			matching = append(matching, ic)
		}
	}
	if len(matching) == 0 {
		return nil
	}
	results := make(chan error, len(matching))
	for _, ic := range matching {
		go func() { results <- r.ask(ctx, ic, req) }()
	}
	var first error
	for range matching {
		if err := <-results; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// ask gets one interceptor's decision within its timeout, applying its
// fail-open setting when it does not answer.
func (r *Registry) ask(ctx context.Context, ic *registered, req *BeforeRunRequest) error {
	ic.calls.Add(1)
	err := r.decide(ctx, ic, req)
	var denied *DeniedError
	if errors.As(err, &denied) {
		ic.denials.Add(1)
	}
	return err
}

func (r *Registry) decide(ctx context.Context, ic Interceptor, req *BeforeRunRequest) error {
	timeout := ic.Timeout()
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var resp BeforeRunResponse
	err := r.guard(ic.Name(), BeforeTaskRun, &req.TaskContext, func() error {
		return ic.Decide(actx, req, &resp)
	})
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if err != nil {
		if ic.FailOpen() {
			r.log.Warn("interceptor did not answer; failing open", "interceptor", ic.Name(), "task_id", req.ID, "err", err)
			return nil
		}
		return &DeniedError{By: ic.Name(), Reason: fmt.Sprintf("no decision (fail-closed): %v", err)}
	}
	if resp.Denied {
		return &DeniedError{By: ic.Name(), Reason: resp.Reason}
	}
	return nil
}

// After runs the local hooks of the task's outcome point
// (after_task_success or after_task_failure, see OutcomePoint), then those
// of after_task_run. Errors and panics are logged; they never change the
// task's outcome.
func (r *Registry) After(ctx context.Context, req *AfterRunRequest) {
	v := r.view.Load()
	tc := &req.TaskContext
	if point := OutcomePoint(req.Status); point == AfterTaskSuccess {
		for _, h := range v.success {
			_ = r.guard(h.Name(), point, tc, func() error { return h.AfterTaskSuccess(ctx, req) })
		}
	} else {
		for _, h := range v.failure {
			_ = r.guard(h.Name(), point, tc, func() error { return h.AfterTaskFailure(ctx, req) })
		}
	}
	for _, h := range v.after {
		_ = r.guard(h.Name(), AfterTaskRun, tc, func() error { return h.AfterTaskRun(ctx, req) })
	}
}

// guard runs fn for the hook or interceptor called name, turning a panic
// into a logged error and logging any error.
func (r *Registry) guard(name, point string, tc *TaskContext, fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("hook panicked", "hook", name, "point", point, "task_id", tc.ID, "task", tc.Name,
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = fmt.Errorf("hook %s panicked: %v", name, p)
		}
	}()
	if err = fn(); err != nil {
		r.log.Warn("hook failed", "hook", name, "point", point, "task_id", tc.ID, "task", tc.Name, "err", err)
	}
	return err
}
