package workers

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// ErrClosed is returned by a pool that has been closed.
var ErrClosed = errors.New("workers: pool closed")

// ErrJobTimeout is wrapped by the error Run returns when a job outlives its
// Job.Timeout. It also matches context.DeadlineExceeded under errors.Is.
var ErrJobTimeout = fmt.Errorf("workers: job timed out: %w", context.DeadlineExceeded)

// ErrUnsupportedValue is wrapped when a param or output is not a JSON-like
// value (nil, bool, numbers, string, lists, string-keyed maps).
var ErrUnsupportedValue = errors.New("workers: unsupported value")

// JobError is an action's own failure, reported by the worker. Output is
// whatever the action returned alongside its error (for example exec's
// exit code and captured streams).
type JobError struct {
	Msg    string
	Output any
}

func (e *JobError) Error() string { return e.Msg }

// CrashError reports a worker process that died while it ran a job (panic,
// os.Exit, a fatal signal, the kernel's OOM killer, an outside SIGKILL).
type CrashError struct {
	PID      int
	ExitCode int    // -1 when a signal ended the worker
	Signal   string // the signal's name, e.g. "SIGSEGV"; empty when it exited
	Detail   string // the panic report the worker sent before dying, if any
}

func (e *CrashError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "worker process %d crashed: ", e.PID)
	if e.Signal != "" {
		fmt.Fprintf(&b, "killed by signal %s", e.Signal)
	} else {
		fmt.Fprintf(&b, "exit code %d", e.ExitCode)
	}
	if e.Detail != "" {
		first, _, _ := strings.Cut(e.Detail, "\n")
		b.WriteString(": ")
		b.WriteString(first)
	}
	return b.String()
}

// PanicError is a panic recovered from a function run by IOPool.Do.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("workers: io job panicked: %v", e.Value) }
