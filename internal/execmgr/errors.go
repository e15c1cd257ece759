package execmgr

import (
	"context"
	"errors"
	"fmt"

	"github.com/aura-dev/aura/internal/engine"
	"github.com/aura-dev/aura/internal/hooks"
	"github.com/aura-dev/aura/internal/workers"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// Errors the gRPC layer maps to status codes (internal/server does that, in
// one place).
var (
	ErrNotFound = errors.New("not found")
	ErrDraining = errors.New("the daemon is shutting down and accepts no new tasks")
)

// InvalidError is a request that can never succeed as written.
type InvalidError struct {
	Field string
	Msg   string
}

func (e *InvalidError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Msg) }

// NotFoundError names what does not exist.
type NotFoundError struct {
	Field string
	Msg   string
}

func (e *NotFoundError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Msg) }
func (e *NotFoundError) Unwrap() error { return ErrNotFound }

// UnavailableError is a precondition that may change (a broken plan).
type UnavailableError struct {
	Field string
	Msg   string
}

func (e *UnavailableError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Msg) }

// QueueFullError refuses a submission because too many tasks already wait
// for admission: those of Principal when PerPrincipal, else all of them.
// The gRPC layer answers it with RESOURCE_EXHAUSTED.
type QueueFullError struct {
	PerPrincipal bool
	Principal    string
	Waiting      int
	Limit        int
}

func (e *QueueFullError) Error() string {
	if e.PerPrincipal {
		return fmt.Sprintf("queue full: principal %q already has %d tasks waiting to start, its limit (--max-queued-per-principal %d); "+
			"submit again once some have started, cancel some, or raise the limit", e.Principal, e.Waiting, e.Limit)
	}
	return fmt.Sprintf("queue full: %d tasks are waiting to start, the daemon's limit (--max-queued %d); "+
		"submit again once some have started, or raise the limit", e.Waiting, e.Limit)
}

// Causes attached to a task's context so the outcome says why it stopped.
var (
	errTimeout  = errors.New("task timed out")
	errShutdown = errors.New("the daemon stopped while the task ran")
	// errUnrecorded stops a task whose submission the store did not
	// record; nothing of it is reported.
	errUnrecorded = errors.New("the submission was not recorded")
)

type cancelledError struct{ reason string }

func (e *cancelledError) Error() string {
	if e.reason == "" {
		return "cancelled"
	}
	return "cancelled: " + e.reason
}

// planningError wraps what made state planning fail.
type planningError struct{ err error }

func (e *planningError) Error() string { return e.err.Error() }
func (e *planningError) Unwrap() error { return e.err }

// outcome maps how a task ended to its terminal status and TaskError. It is
// the one place that knows the mapping. ctx is the task's context: once its
// budget is spent or it was cancelled, that cause wins over whatever the
// steps reported, so a task never ends SUCCEEDED late.
func outcome(ctx context.Context, err error) (aurav1.TaskStatus, *aurav1.TaskError) {
	if ctx.Err() != nil {
		err = context.Cause(ctx)
	}
	if err == nil {
		return aurav1.TaskStatus_TASK_STATUS_SUCCEEDED, nil
	}
	te := &aurav1.TaskError{Message: err.Error()}
	var (
		cancelled *cancelledError
		denied    *hooks.DeniedError
		plan      *planningError
		crash     *workers.CrashError
		step      *engine.StepError
	)
	if errors.As(err, &step) {
		te.Step = step.Step
	}
	switch {
	case errors.Is(err, errTimeout):
		te.Kind = "timeout"
		return aurav1.TaskStatus_TASK_STATUS_TIMED_OUT, te
	case errors.As(err, &cancelled):
		// The kind already says "cancelled"; the message is the reason
		// alone, so "kind: message" does not say it twice.
		te.Kind = "cancelled"
		te.Message = cancelled.reason
		if te.Message == "" {
			te.Message = "no reason given"
		}
		return aurav1.TaskStatus_TASK_STATUS_CANCELLED, te
	case errors.Is(err, errShutdown):
		te.Kind = "interrupted"
		return aurav1.TaskStatus_TASK_STATUS_INTERRUPTED, te
	case errors.As(err, &plan):
		te.Kind = "planning_failed"
		return aurav1.TaskStatus_TASK_STATUS_PLANNING_FAILED, te
	case errors.As(err, &denied):
		te.Kind = "denied"
	case errors.As(err, &crash):
		te.Kind = "worker_crashed"
	case step != nil:
		te.Kind = "failed"
	default:
		te.Kind = "internal"
	}
	return aurav1.TaskStatus_TASK_STATUS_FAILED, te
}

// stopped reports whether a task that ended with s was stopped from outside
// its steps (cancelled, out of time, the daemon stopping), so a step still
// running then was cut short rather than failed.
func stopped(s aurav1.TaskStatus) bool {
	switch s {
	case aurav1.TaskStatus_TASK_STATUS_CANCELLED, aurav1.TaskStatus_TASK_STATUS_TIMED_OUT, aurav1.TaskStatus_TASK_STATUS_INTERRUPTED:
		return true
	}
	return false
}

// Terminal reports whether s is a terminal status.
func Terminal(s aurav1.TaskStatus) bool {
	switch s {
	case aurav1.TaskStatus_TASK_STATUS_SUCCEEDED, aurav1.TaskStatus_TASK_STATUS_FAILED,
		aurav1.TaskStatus_TASK_STATUS_TIMED_OUT, aurav1.TaskStatus_TASK_STATUS_CANCELLED,
		aurav1.TaskStatus_TASK_STATUS_PLANNING_FAILED, aurav1.TaskStatus_TASK_STATUS_INTERRUPTED:
		return true
	}
	return false
}
