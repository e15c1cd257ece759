package hooks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime/debug"
	"slices"
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

// Points lists every hook point in lifecycle order.
var Points = []string{BeforeTaskRun, AfterTaskSuccess, AfterTaskFailure, AfterTaskRun}

// ValidPoint reports whether name is a hook point.
func ValidPoint(name string) bool {
	for _, p := range Points {
		if p == name {
			return true
		}
	}
	return false
}

// Hook is anything registered in code. It implements one or more of the
// point interfaces below. The task a hook is given is shared: read it, do
// not modify it.
type Hook interface {
	Name() string
}

// BeforeRunHook runs before a task's steps. Returning a *DeniedError (see
// Deny) stops the task; any other error is logged and ignored.
type BeforeRunHook interface {
	Hook
	BeforeTaskRun(ctx context.Context, task *aurav1.Task) error
}

// AfterSuccessHook runs after a task succeeded.
type AfterSuccessHook interface {
	Hook
	AfterTaskSuccess(ctx context.Context, task *aurav1.Task) error
}

// AfterFailureHook runs after a task ended in any status but success.
type AfterFailureHook interface {
	Hook
	AfterTaskFailure(ctx context.Context, task *aurav1.Task) error
}

// AfterRunHook runs last, after every task, whatever its outcome.
type AfterRunHook interface {
	Hook
	AfterTaskRun(ctx context.Context, task *aurav1.Task) error
}

// DeniedError is a veto from a hook or interceptor.
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

// Deny returns the error a BeforeRunHook returns to stop a task.
func Deny(reason string) error { return &DeniedError{Reason: reason} }

// Interceptor is a remote plugin asked to allow or deny each matching
// before_task_run (HookService.Intercept).
type Interceptor interface {
	Name() string
	// Matches reports whether the interceptor wants this task.
	Matches(task *aurav1.Task) bool
	// Decide asks the plugin. It must honour ctx.
	Decide(ctx context.Context, task *aurav1.Task) (allow bool, reason string, err error)
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
	interceptors map[uint64]Interceptor
	nextID       uint64
}

// view is the registry as one task sees it, split by hook point.
type view struct {
	before       []BeforeRunHook
	success      []AfterSuccessHook
	failure      []AfterFailureHook
	after        []AfterRunHook
	interceptors []Interceptor // in registration order
}

// NewRegistry returns an empty registry.
func NewRegistry(log *slog.Logger) *Registry {
	if log == nil {
		log = slog.Default()
	}
	r := &Registry{log: log, interceptors: map[uint64]Interceptor{}}
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
	r.interceptors[id] = ic
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
func (r *Registry) Before(ctx context.Context, task *aurav1.Task) error {
	v := r.view.Load()
	for _, h := range v.before {
		err := r.call(ctx, h, BeforeTaskRun, task)
		var denied *DeniedError
		if errors.As(err, &denied) {
			if denied.By == "" {
				denied.By = h.Name()
			}
			return denied
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
	}
	var matching []Interceptor
	for _, ic := range v.interceptors {
		if ic.Matches(task) {
			matching = append(matching, ic)
		}
	}
	if len(matching) == 0 {
		return nil
	}
	results := make(chan error, len(matching))
	for _, ic := range matching {
		go func() { results <- r.ask(ctx, ic, task) }()
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
func (r *Registry) ask(ctx context.Context, ic Interceptor, task *aurav1.Task) error {
	timeout := ic.Timeout()
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var (
		allow  bool
		reason string
	)
	err := r.guard(ic.Name(), BeforeTaskRun, task, func() error {
		var err error
		allow, reason, err = ic.Decide(actx, task)
		return err
	})
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if err != nil {
		if ic.FailOpen() {
			r.log.Warn("interceptor did not answer; failing open", "interceptor", ic.Name(), "task_id", task.GetId(), "err", err)
			return nil
		}
		return &DeniedError{By: ic.Name(), Reason: fmt.Sprintf("no decision (fail-closed): %v", err)}
	}
	if !allow {
		return &DeniedError{By: ic.Name(), Reason: reason}
	}
	return nil
}

// After runs the local hooks of one after_* point. Errors and panics are
// logged; they never change the task's outcome.
func (r *Registry) After(ctx context.Context, point string, task *aurav1.Task) {
	v := r.view.Load()
	switch point {
	case AfterTaskSuccess:
		for _, h := range v.success {
			_ = r.call(ctx, h, point, task)
		}
	case AfterTaskFailure:
		for _, h := range v.failure {
			_ = r.call(ctx, h, point, task)
		}
	case AfterTaskRun:
		for _, h := range v.after {
			_ = r.call(ctx, h, point, task)
		}
	}
}

// call runs hook h at point.
func (r *Registry) call(ctx context.Context, h Hook, point string, task *aurav1.Task) error {
	return r.guard(h.Name(), point, task, func() error {
		switch point {
		case BeforeTaskRun:
			return h.(BeforeRunHook).BeforeTaskRun(ctx, task)
		case AfterTaskSuccess:
			return h.(AfterSuccessHook).AfterTaskSuccess(ctx, task)
		case AfterTaskFailure:
			return h.(AfterFailureHook).AfterTaskFailure(ctx, task)
		case AfterTaskRun:
			return h.(AfterRunHook).AfterTaskRun(ctx, task)
		}
		return nil
	})
}

// guard runs fn for the hook or interceptor called name, turning a panic
// into a logged error and logging any error that is not a denial.
func (r *Registry) guard(name, point string, task *aurav1.Task, fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("hook panicked", "hook", name, "point", point, "task_id", task.GetId(), "task", task.GetTask(),
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = fmt.Errorf("hook %s panicked: %v", name, p)
		}
	}()
	err = fn()
	var denied *DeniedError
	if err != nil && !errors.As(err, &denied) {
		r.log.Warn("hook failed", "hook", name, "point", point, "task_id", task.GetId(), "task", task.GetTask(), "err", err)
	}
	return err
}
