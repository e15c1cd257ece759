package execmgr

import (
	"context"
	"errors"
	"fmt"
	"strings"

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

// requeuedError ends a paused task's attempt by its interrupt's policy
// (requeue): it goes back to the queue for another attempt.
type requeuedError struct{ by string }

func (e *requeuedError) Error() string { return "requeued after " + e.by + " (policy requeue)" }

// preemptedError ends a paused task by its interrupt's policy (cancel).
type preemptedError struct{ by string }

func (e *preemptedError) Error() string { return "preempted by " + e.by + " (policy cancel)" }

// handlerError ends a paused task whose interrupt handler did not
// succeed: it names the interrupt, the handler's task and its error.
type handlerError struct {
	by      string // what paused the task: `interrupt "popup"`
	handler string // the handler's task name
	id      string // the handler's task id ("" when it never started)
	status  aurav1.TaskStatus
	msg     string // the handler's own error
}

func (e *handlerError) Error() string {
	what := "handler " + e.handler
	if e.id != "" {
		what += " (task " + e.id + ")"
	}
	if e.status == aurav1.TaskStatus_TASK_STATUS_TIMED_OUT {
		return fmt.Sprintf("timed out while paused by %s: %s ran past its timeout: %s", e.by, what, e.msg)
	}
	return fmt.Sprintf("paused by %s, then %s ended %s: %s", e.by, what, statusName(e.status), e.msg)
}

// statusName is a status as users read it: FAILED, TIMED_OUT.
func statusName(s aurav1.TaskStatus) string {
	return strings.TrimPrefix(s.String(), "TASK_STATUS_")
}

// planningError wraps what made state planning fail.
type planningError struct{ err error }

func (e *planningError) Error() string { return e.err.Error() }
func (e *planningError) Unwrap() error { return e.err }

// ErrorKind is a TaskError's kind: the class of reason a task did not
// succeed. Clients match on these strings (they are part of the API), so a
// kind is added, never renamed.
type ErrorKind string

// The kinds a task's error can have; outcome chooses among them.
const (
	KindFailed         ErrorKind = "failed"          // a step failed
	KindTimeout        ErrorKind = "timeout"         // the task's timeout passed
	KindCancelled      ErrorKind = "cancelled"       // CancelTask; the message is the reason
	KindPlanningFailed ErrorKind = "planning_failed" // the required state was not reached
	KindDenied         ErrorKind = "denied"          // a before_task_run hook or interceptor said no
	KindInterrupted    ErrorKind = "interrupted"     // the daemon stopped while the task ran
	KindWorkerCrashed  ErrorKind = "worker_crashed"  // a CPU worker process died under a step
	KindInternal       ErrorKind = "internal"        // none of the above: it failed outside its steps (a store write, a panic)
	KindPreempted      ErrorKind = "preempted"       // an interrupt or a preempting task paused it, and its policy said cancel
)

// workResult is what a task's work (planning, hooks, steps) ended with, as
// its context saw it: once the context is done (its budget spent, a cancel,
// the drain, a parent's end), that cause wins over whatever the work
// reported, so a task never ends SUCCEEDED late.
func workResult(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return err
}

// outcome maps how a task ended to its terminal status and TaskError. It is
// the one place that knows the mapping.
func outcome(err error) (aurav1.TaskStatus, *aurav1.TaskError) {
	if err == nil {
		return aurav1.TaskStatus_TASK_STATUS_SUCCEEDED, nil
	}
	te := &aurav1.TaskError{Message: err.Error()}
	var step *engine.StepError
	if errors.As(err, &step) {
		te.Step = step.Step
	}
	status, kind := classify(err)
	te.Kind = string(kind)
	var cancelled *cancelledError
	if kind == KindCancelled && errors.As(err, &cancelled) {
		// The kind already says "cancelled"; the message is the reason
		// alone, so "kind: message" does not say it twice.
		te.Message = cancelled.reason
		if te.Message == "" {
			te.Message = "no reason given"
		}
	}
	return status, te
}

// classify picks the terminal status and error kind of a task that ended
// with err (not nil). The first match wins: the task's own budget and the
// caller's cancel come before whatever the steps reported.
func classify(err error) (aurav1.TaskStatus, ErrorKind) {
	var (
		cancelled *cancelledError
		preempted *preemptedError
		requeued  *requeuedError
		handler   *handlerError
		denied    *hooks.DeniedError
		plan      *planningError
		crash     *workers.CrashError
		step      *engine.StepError
	)
	switch {
	case errors.Is(err, errTimeout):
		return aurav1.TaskStatus_TASK_STATUS_TIMED_OUT, KindTimeout
	case errors.As(err, &cancelled):
		return aurav1.TaskStatus_TASK_STATUS_CANCELLED, KindCancelled
	case errors.Is(err, errShutdown):
		return aurav1.TaskStatus_TASK_STATUS_INTERRUPTED, KindInterrupted
	case errors.As(err, &preempted):
		return aurav1.TaskStatus_TASK_STATUS_CANCELLED, KindPreempted
	case errors.As(err, &requeued):
		// The attempt was interrupted; the task itself goes on (requeue).
		return aurav1.TaskStatus_TASK_STATUS_INTERRUPTED, KindInterrupted
	case errors.As(err, &handler):
		if handler.status == aurav1.TaskStatus_TASK_STATUS_TIMED_OUT {
			return aurav1.TaskStatus_TASK_STATUS_TIMED_OUT, KindTimeout
		}
		return aurav1.TaskStatus_TASK_STATUS_FAILED, KindFailed
	case errors.As(err, &plan):
		return aurav1.TaskStatus_TASK_STATUS_PLANNING_FAILED, KindPlanningFailed
	case errors.As(err, &denied):
		return aurav1.TaskStatus_TASK_STATUS_FAILED, KindDenied
	case errors.As(err, &crash):
		return aurav1.TaskStatus_TASK_STATUS_FAILED, KindWorkerCrashed
	case errors.As(err, &step):
		return aurav1.TaskStatus_TASK_STATUS_FAILED, KindFailed
	}
	return aurav1.TaskStatus_TASK_STATUS_FAILED, KindInternal
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
