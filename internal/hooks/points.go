package hooks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// The hook points, named as in the seed and DESIGN.md.
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

// Registry holds local hooks and interceptors. It is safe for concurrent use.
type Registry struct {
	log *slog.Logger

	mu           sync.RWMutex
	hooks        []Hook
	interceptors map[uint64]Interceptor
	nextID       uint64
}

// NewRegistry returns an empty registry.
func NewRegistry(log *slog.Logger) *Registry {
	if log == nil {
		log = slog.Default()
	}
	return &Registry{log: log, interceptors: map[uint64]Interceptor{}}
}

// Register adds a local hook.
func (r *Registry) Register(h Hook) {
	r.mu.Lock()
	r.hooks = append(r.hooks, h)
	r.mu.Unlock()
}

// AddInterceptor registers ic and returns the function that removes it.
func (r *Registry) AddInterceptor(ic Interceptor) (remove func()) {
	r.mu.Lock()
	r.nextID++
	id := r.nextID
	r.interceptors[id] = ic
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		delete(r.interceptors, id)
		r.mu.Unlock()
	}
}

// HasBefore reports whether anything listens at before_task_run (a local
// hook or an interceptor), so callers can skip preparing the call.
func (r *Registry) HasBefore() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if len(r.interceptors) > 0 {
		return true
	}
	for _, h := range r.hooks {
		if _, ok := h.(BeforeRunHook); ok {
			return true
		}
	}
	return false
}

// Interceptors returns how many interceptors are registered.
func (r *Registry) Interceptors() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.interceptors)
}

func (r *Registry) snapshot() ([]Hook, []Interceptor) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	hs := append([]Hook(nil), r.hooks...)
	ics := make([]Interceptor, 0, len(r.interceptors))
	for _, ic := range r.interceptors {
		ics = append(ics, ic)
	}
	return hs, ics
}

// Before runs the before_task_run local hooks in registration order, then
// asks every matching interceptor concurrently. It returns a *DeniedError
// when anything denies, or ctx's error when the task's budget ran out.
func (r *Registry) Before(ctx context.Context, task *aurav1.Task) error {
	hs, ics := r.snapshot()
	for _, h := range hs {
		bh, ok := h.(BeforeRunHook)
		if !ok {
			continue
		}
		err := r.call(ctx, h.Name(), BeforeTaskRun, task, func() error { return bh.BeforeTaskRun(ctx, task) })
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
	for _, ic := range ics {
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
	err := r.call(actx, ic.Name(), BeforeTaskRun, task, func() error {
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
	hs, _ := r.snapshot()
	for _, h := range hs {
		var fn func() error
		switch point {
		case AfterTaskSuccess:
			if x, ok := h.(AfterSuccessHook); ok {
				fn = func() error { return x.AfterTaskSuccess(ctx, task) }
			}
		case AfterTaskFailure:
			if x, ok := h.(AfterFailureHook); ok {
				fn = func() error { return x.AfterTaskFailure(ctx, task) }
			}
		case AfterTaskRun:
			if x, ok := h.(AfterRunHook); ok {
				fn = func() error { return x.AfterTaskRun(ctx, task) }
			}
		}
		if fn != nil {
			_ = r.call(ctx, h.Name(), point, task, fn)
		}
	}
}

// call runs one hook, turning a panic into a logged error.
func (r *Registry) call(ctx context.Context, name, point string, task *aurav1.Task, fn func() error) (err error) {
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
