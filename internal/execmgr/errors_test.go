package execmgr

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/aura-dev/aura/internal/engine"
	"github.com/aura-dev/aura/internal/hooks"
	"github.com/aura-dev/aura/internal/workers"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// TestOutcome pins what a client sees of every way a task can end: its
// terminal status and its error's kind, message and step.
func TestOutcome(t *testing.T) {
	stepFailed := &engine.StepError{Step: "fetch", Err: errors.New("HTTP 503")}
	crashed := &engine.StepError{Step: "crunch", Err: &workers.CrashError{PID: 42, ExitCode: -1, Signal: "SIGSEGV"}}
	stopped := func(cause error) context.Context {
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(cause)
		return ctx
	}
	live := context.Background()
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		err     error
		status  aurav1.TaskStatus
		kind    ErrorKind // "" means no error at all
		message string
		step    string
	}{
		{name: "success", ctx: live, status: aurav1.TaskStatus_TASK_STATUS_SUCCEEDED},
		{name: "a step failed", ctx: live, err: stepFailed,
			status: aurav1.TaskStatus_TASK_STATUS_FAILED, kind: KindFailed, message: stepFailed.Error(), step: "fetch"},
		{name: "timed out", ctx: stopped(errTimeout),
			status: aurav1.TaskStatus_TASK_STATUS_TIMED_OUT, kind: KindTimeout, message: errTimeout.Error()},
		{name: "the timeout wins over the step error it caused", ctx: stopped(errTimeout), err: stepFailed,
			status: aurav1.TaskStatus_TASK_STATUS_TIMED_OUT, kind: KindTimeout, message: errTimeout.Error()},
		{name: "the timeout wins over a late success", ctx: stopped(errTimeout),
			status: aurav1.TaskStatus_TASK_STATUS_TIMED_OUT, kind: KindTimeout, message: errTimeout.Error()},
		{name: "a wrapped timeout", ctx: live, err: fmt.Errorf("planning: %w", errTimeout),
			status: aurav1.TaskStatus_TASK_STATUS_TIMED_OUT, kind: KindTimeout, message: "planning: task timed out"},
		{name: "cancelled with a reason", ctx: stopped(&cancelledError{reason: "operator says stop"}), err: stepFailed,
			status: aurav1.TaskStatus_TASK_STATUS_CANCELLED, kind: KindCancelled, message: "operator says stop"},
		{name: "cancelled while queued, no reason", ctx: live, err: &cancelledError{},
			status: aurav1.TaskStatus_TASK_STATUS_CANCELLED, kind: KindCancelled, message: "no reason given"},
		{name: "the daemon stopped", ctx: stopped(errShutdown),
			status: aurav1.TaskStatus_TASK_STATUS_INTERRUPTED, kind: KindInterrupted, message: errShutdown.Error()},
		{name: "planning failed", ctx: live, err: &planningError{errors.New(`planning to "lobby": stuck`)},
			status: aurav1.TaskStatus_TASK_STATUS_PLANNING_FAILED, kind: KindPlanningFailed, message: `planning to "lobby": stuck`},
		{name: "an interceptor denied it", ctx: live, err: &hooks.DeniedError{By: "freeze", Reason: "change freeze"},
			status: aurav1.TaskStatus_TASK_STATUS_FAILED, kind: KindDenied, message: "denied by freeze: change freeze"},
		{name: "a worker crashed under a step", ctx: live, err: crashed,
			status: aurav1.TaskStatus_TASK_STATUS_FAILED, kind: KindWorkerCrashed, message: crashed.Error(), step: "crunch"},
		{name: "anything else is internal", ctx: live, err: errors.New("recording status RUNNING: disk I/O error"),
			status: aurav1.TaskStatus_TASK_STATUS_FAILED, kind: KindInternal, message: "recording status RUNNING: disk I/O error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, te := outcome(workResult(tc.ctx, tc.err))
			if status != tc.status {
				t.Errorf("status %s, want %s", status, tc.status)
			}
			if tc.kind == "" {
				if te != nil {
					t.Errorf("error %v, want none", te)
				}
				return
			}
			if te.GetKind() != string(tc.kind) || te.GetMessage() != tc.message || te.GetStep() != tc.step {
				t.Errorf("error {kind %q, message %q, step %q}, want {%q, %q, %q}",
					te.GetKind(), te.GetMessage(), te.GetStep(), tc.kind, tc.message, tc.step)
			}
			if !Terminal(status) {
				t.Errorf("%s is not terminal", status)
			}
		})
	}
}
