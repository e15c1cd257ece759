package actions

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/aura-dev/aura/internal/containment"
)

// Env is what an action may reach besides its parameters. The caller builds
// one per step; actions never modify it.
type Env struct {
	// PlanDir is the plan's absolute source directory, where its plan.yaml
	// and tasks live. Actions read it and never write it.
	PlanDir string
	// Root is opened on PlanDir by the caller. When nil, actions open their own
	// root on PlanDir for the duration of one call.
	Root *os.Root
	// WorkDir is the plan's absolute workspace, <data>/work/<plan>: the only
	// place file actions write and exec's default working directory. It is
	// created on first write (owned by RunAs when set) inside its parent,
	// which must exist; reads look in it before PlanDir. Empty makes writes
	// and exec fail.
	WorkDir string
	// Logger receives the log action's messages; nil discards them.
	Logger *slog.Logger
	// TaskID, when set, is attached to every log record as task_id (with
	// Task as task); leave it empty when Logger already carries them.
	TaskID string
	// Task is the task's name ("plan/task"), attached to log records as task.
	Task string
	// TraceID, when set with TaskID, is attached to log records as trace_id.
	TraceID string
	// RunTask runs another task of the same plan and returns its returns.
	// Nil makes run_task fail. Recursion depth is bounded by the caller.
	RunTask func(ctx context.Context, task string, inputs map[string]any) (any, error)
	// KillGrace is the delay between SIGTERM and SIGKILL for an exec process
	// group that is cancelled or times out; 0 means 5s.
	KillGrace time.Duration
	// EnvAllow names the variables of aurad's own environment that exec
	// children may inherit; nil means PATH, HOME, LANG and TZ.
	EnvAllow []string
	// Output, when set, receives exec children's stdout and stderr as they
	// are written (stream "stdout" or "stderr"), for live task logs. It
	// must not keep p.
	Output func(stream string, p []byte)
	// HTTPAllowHosts are the plan's http.allow_hosts entries (see
	// ParseHostRule): addresses http.request may reach besides the public
	// ones. Added to the registry's Options.HTTPAllowHosts.
	HTTPAllowHosts []string
	// RunAs, when set, is the user and group exec children run as
	// (aurad --run-as-user when it runs as root). Supplementary groups are
	// dropped unless listed in RunAs.Groups.
	RunAs *syscall.Credential
	// Processes keeps every process an exec step starts findable and
	// killable (a cgroup, or a subreaper's view of the tree). Nil keeps
	// only the step's process group, which setsid escapes.
	Processes *containment.Tree
}

// Func runs one action with evaluated parameters.
type Func func(ctx context.Context, env *Env, params map[string]any) (any, error)

// Spec describes one action.
type Spec struct {
	Name string
	Run  Func
	// Portable actions are pure computation, file access or process spawning,
	// so they may run in a CPU worker process (exec, hash, file.*, noop, fail,
	// assert). run_task, sleep, set, log and http.request are not portable.
	Portable bool
	// Params lists the accepted parameter names, so a plan loader can report
	// unknown ones at load time. Ignored when AnyParams is set.
	Params []string
	// AnyParams marks actions that accept any map (set).
	AnyParams bool
	// Waits marks actions that only wait for other work to finish (run_task
	// waits for a child task whose steps take io slots of their own). They
	// run on the step's goroutine, never on a lane: a parent holding an io
	// slot while its child queues for one deadlocks a full pool.
	Waits bool
}

// Options configure the builtin actions for the whole daemon.
type Options struct {
	// HTTPAllowHosts are allow_hosts entries (see ParseHostRule) every
	// plan's http.request may reach, on top of each plan's own.
	HTTPAllowHosts []string
	// HTTPMaxBody bounds the response body http.request reads, in bytes
	// (0: DefaultHTTPMaxBody).
	HTTPMaxBody int64
	// MaxJSONValues bounds how many values a JSON response may decode to
	// (0: DefaultMaxJSONValues).
	MaxJSONValues int
}

// Registry maps action names to their specs. It is safe for concurrent
// lookups once built; Register must not race with Lookup.
type Registry struct {
	specs map[string]Spec
	opts  Options

	// clientsMu guards clients: one HTTP client per distinct host policy,
	// so connections are reused within a policy and never handed from a
	// plan allowed to reach an address to one that is not.
	clientsMu sync.Mutex
	clients   map[string]*http.Client
}

// Builtin returns a registry holding every builtin action with the default
// options. Call Close when the registry is no longer used to release pooled
// HTTP connections.
func Builtin() *Registry {
	r, err := BuiltinWith(Options{})
	if err != nil {
		panic(err) // the zero Options are valid
	}
	return r
}

// BuiltinWith is Builtin with options; it fails when an option is invalid
// (an allow_hosts entry that does not parse).
func BuiltinWith(opts Options) (*Registry, error) {
	for _, h := range opts.HTTPAllowHosts {
		if err := ParseHostRule(h); err != nil {
			return nil, fmt.Errorf("http allow_hosts: %w", err)
		}
	}
	r := &Registry{specs: make(map[string]Spec), opts: opts, clients: map[string]*http.Client{}}
	for _, s := range []Spec{
		noopSpec(), logSpec(), sleepSpec(), failSpec(), setSpec(), assertSpec(),
		execSpec(),
		r.httpSpec(),
		fileReadSpec(), fileWriteSpec(), fileExistsSpec(), fileListSpec(), fileDeleteSpec(),
		hashSpec(),
		runTaskSpec(),
	} {
		s.Run = recoverPanics(s.Name, s.Run)
		r.specs[s.Name] = s
	}
	return r, nil
}

// Register adds an action. It fails when the name is empty, already taken or
// the spec has no Run function. A panic in its Run becomes a *PanicError.
func (r *Registry) Register(s Spec) error {
	if s.Name == "" || s.Run == nil {
		return fmt.Errorf("actions: register %q: a spec needs a name and a Run function", s.Name)
	}
	if r.specs == nil {
		r.specs = make(map[string]Spec)
	}
	if _, dup := r.specs[s.Name]; dup {
		return fmt.Errorf("actions: register %q: already registered", s.Name)
	}
	s.Run = recoverPanics(s.Name, s.Run)
	r.specs[s.Name] = s
	return nil
}

// PanicError is returned instead of a panic escaping an action.
type PanicError struct {
	Action string
	Value  any
	Stack  []byte
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("%s: internal error: panic: %v", e.Action, e.Value)
}

// recoverPanics turns a panic in run into a *PanicError, logged with its
// stack, so one broken action cannot take down the daemon or a worker.
func recoverPanics(action string, run Func) Func {
	return func(ctx context.Context, env *Env, params map[string]any) (out any, err error) {
		defer func() {
			if v := recover(); v != nil {
				pe := &PanicError{Action: action, Value: v, Stack: debug.Stack()}
				env.logger().ErrorContext(ctx, "action panicked", "action", action, "panic", fmt.Sprint(v), "stack", string(pe.Stack))
				out, err = nil, pe
			}
		}()
		return run(ctx, env, params)
	}
}

// Lookup returns the spec registered under name.
func (r *Registry) Lookup(name string) (Spec, bool) {
	s, ok := r.specs[name]
	return s, ok
}

// Names returns every registered action name, sorted.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.specs))
	for n := range r.specs {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Close releases idle HTTP connections held for http.request.
func (r *Registry) Close() {
	r.clientsMu.Lock()
	defer r.clientsMu.Unlock()
	for _, c := range r.clients {
		c.CloseIdleConnections()
	}
}

// logger is safe on a nil Env.
func (e *Env) logger() *slog.Logger {
	if e == nil {
		return slog.New(slog.DiscardHandler)
	}
	l := e.Logger
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	if e.TaskID == "" {
		return l // the caller's logger already says which task
	}
	attrs := []any{slog.String("task_id", e.TaskID), slog.String("task", e.Task)}
	if e.TraceID != "" {
		attrs = append(attrs, slog.String("trace_id", e.TraceID))
	}
	return l.With(attrs...)
}
