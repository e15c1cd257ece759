package engine

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/aura-dev/aura/internal/plan"
)

// ActionSet finds actions by name (the internal/actions registry).
type ActionSet interface {
	Lookup(name string) (Action, bool)
}

// Action is one builtin action.
type Action interface {
	// Run performs the action. params holds JSON-like values and must not
	// be modified. The output must be JSON-like too (the engine normalizes
	// common Go types).
	Run(ctx context.Context, env *ActionEnv, params map[string]any) (any, error)
	// Portable reports whether the action may run on the cpu lane, in a
	// worker process.
	Portable() bool
}

// Waiter is implemented by actions that only wait for other work, such as
// run_task waiting for a child task. When Waits reports true the action runs
// on the step's own goroutine instead of a lane: the work it waits for needs
// lane slots itself, and holding one while waiting would let a full pool of
// waiting parents starve their children forever.
type Waiter interface {
	Waits() bool
}

// ActionEnv is what an action may touch. One ActionEnv is shared by all
// steps of a run; actions must not modify it.
type ActionEnv struct {
	Plan   *plan.Plan
	TaskID string
	Task   string // the task's name, "plan/task"
	Step   string // the step this call belongs to
	// TraceID is the run's trace id ("" when not tracing).
	TraceID string
	// Logger is the runner's logger, without the run's attributes: add
	// LogAttrs when logging (done lazily, as most runs never log).
	Logger  *slog.Logger
	RunTask func(ctx context.Context, task string, inputs map[string]any) (any, error)
	// Output, when set, receives a child process's output as it is
	// written: the step, "stdout" or "stderr", and the bytes (not kept).
	Output func(step, stream string, p []byte)
}

// LogAttrs are the attributes that tie a log record to this run: task_id,
// task and, when tracing, trace_id.
func (e *ActionEnv) LogAttrs() []any {
	attrs := []any{"task_id", e.TaskID, "task", e.Task}
	if e.TraceID != "" {
		attrs = append(attrs, "trace_id", e.TraceID)
	}
	return attrs
}

// Lane runs action calls: the io pool runs call.Run on a pool goroutine;
// the cpu pool ships Action, Params and Plan.Dir to a worker process.
type Lane interface {
	Do(ctx context.Context, call Call) (any, error)
}

// Call is one action invocation handed to a Lane.
type Call struct {
	Action string
	Params map[string]any
	Plan   *plan.Plan
	// Run performs the call in-process (panics already recovered).
	Run func(ctx context.Context) (any, error)
	// Env is the call's environment (its step, its output sink).
	Env *ActionEnv
}

// DefaultMaxLoopIterations bounds a loop's iterations unless
// Config.MaxLoopIterations says otherwise. Every iteration's params and
// output are held until the step ends: a million iterations of a no-op
// cost aurad well over 100 MiB.
const DefaultMaxLoopIterations = 10_000

// DefaultMaxTaskOutput bounds the estimated bytes of step output one task
// run keeps unless Config.MaxTaskOutput says otherwise: room for a few
// maximal http.request bodies, while a loop of them fails instead of
// filling aurad's memory.
const DefaultMaxTaskOutput = 64 << 20

// Config builds a Runner.
type Config struct {
	Actions ActionSet
	IO, CPU Lane // nil runs calls inline in the caller's goroutine
	Logger  *slog.Logger
	// MaxLoopIterations bounds each loop's iterations (loop.times, the
	// length of loop.for_each); 0 means DefaultMaxLoopIterations.
	MaxLoopIterations int
	// MaxTaskOutput bounds the estimated bytes of the step outputs one run
	// keeps (a run_task child is a run of its own); 0 means
	// DefaultMaxTaskOutput. The call that would pass it fails its step.
	MaxTaskOutput int64
}

// Request is one task run.
type Request struct {
	Task     *plan.Task
	TaskID   string         // the run's id; "" uses Task.ID
	Inputs   map[string]any // already resolved by Task.ResolveInputs
	Mode     string         // "" = the task's meta, else "io" | "cpu"
	Observer Observer       // may be nil
	RunTask  func(ctx context.Context, task string, inputs map[string]any) (any, error)
	// Output, when set, receives child processes' output live (see ActionEnv).
	Output func(step, stream string, p []byte)
	// Binding holds the pool instances the task holds (pool -> instance):
	// template scope resources.<pool>, and AURA_RESOURCE_<POOL> for exec.
	Binding map[string]string
	// Pause, when set, can hold the run at a step boundary (see Pauser).
	Pause *Pauser
}

// Observer hears about step progress. Its methods may be called from
// several goroutines at once (steps of a graph run concurrently) and must
// not block for long.
type Observer interface {
	// StepStarted is called before each attempt (attempt counts from 1;
	// a loop step reports one attempt for the whole loop).
	StepStarted(step string, attempt int)
	// StepFinished reports the outcome of an attempt: StepSucceeded,
	// StepFailed (also for attempts that will be retried), StepCancelled
	// (the task was stopped while the attempt ran) or StepSkipped (attempt
	// 0, without a StepStarted).
	StepFinished(step string, attempt int, status StepStatus, err error)
}

// RetryObserver is an Observer that also hears about retries: an Observer
// that implements it is told, after a failed attempt's StepFinished, that
// attempt next of maxAttempts starts after delay. err is why the previous
// attempt failed.
type RetryObserver interface {
	StepRetrying(step string, next, maxAttempts int, delay time.Duration, err error)
}

// StepStatus is where a step stands.
type StepStatus int

const (
	StepPending StepStatus = iota
	StepRunning
	StepSucceeded
	StepFailed
	StepSkipped
	// StepCancelled is a step that was running when the task was stopped
	// (cancelled, timed out, interrupted): it did not fail on its own.
	StepCancelled
)

var statusNames = [...]string{"pending", "running", "succeeded", "failed", "skipped", "cancelled"}

func (s StepStatus) String() string {
	if s >= 0 && int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("StepStatus(%d)", int(s))
}

// settled reports whether the step will not change any more.
func (s StepStatus) settled() bool { return s >= StepSucceeded }

// StepState is a step's final record.
type StepState struct {
	ID                    string
	Status                StepStatus
	Attempts              int
	StartedAt, FinishedAt time.Time
	Error                 string
}

// Result is the outcome of Runner.Run.
type Result struct {
	Returns any   // the task's returns; nil when it has none or failed
	Err     error // nil on success; see Runner.Run
	Steps   []StepState
}

// StepError is a task failure caused by one step.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return fmt.Sprintf("step %q: %v", e.Step, e.Err) }
func (e *StepError) Unwrap() error { return e.Err }

// StepTimeoutError is a step attempt that ran past the step's timeout. It
// deliberately does not wrap context.DeadlineExceeded: the task did not
// time out, one step did.
type StepTimeoutError struct {
	Step    string
	Timeout time.Duration
}

func (e *StepTimeoutError) Error() string {
	return fmt.Sprintf("timed out after %s (the step's timeout)", e.Timeout)
}

// ReturnsError is a task whose steps succeeded but whose returns could not
// be evaluated.
type ReturnsError struct{ Err error }

func (e *ReturnsError) Error() string { return "returns: " + e.Err.Error() }
func (e *ReturnsError) Unwrap() error { return e.Err }
