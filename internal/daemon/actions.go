package daemon

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/aura-dev/aura/internal/actions"
	"github.com/aura-dev/aura/internal/containment"
	"github.com/aura-dev/aura/internal/engine"
	"github.com/aura-dev/aura/internal/plan"
	"github.com/aura-dev/aura/internal/workers"
)

// actionSet adapts the builtin action registry to the engine.
type actionSet struct {
	reg       *actions.Registry
	log       *slog.Logger
	killGrace time.Duration
	envAllow  []string
	runAs     *syscall.Credential // exec children's user; nil = aurad's own
	work      string              // <data>/work: plans' workspaces are its subdirectories
	procs     *containment.Tree   // nil: exec steps keep their process group only

	mu    sync.Mutex
	roots map[string]*os.Root // plan dir -> root, opened once
}

func newActionSet(reg *actions.Registry, log *slog.Logger, killGrace time.Duration, envAllow []string, runAs *syscall.Credential, work string, procs *containment.Tree) *actionSet {
	return &actionSet{reg: reg, log: log, killGrace: killGrace, envAllow: envAllow, runAs: runAs, work: work, procs: procs, roots: map[string]*os.Root{}}
}

// workspace is a plan's writable directory. It is not opened here: actions
// create it on first write and open it per call, so a workspace removed
// while aurad runs comes back instead of leaving a root on a deleted inode.
func workspace(work string, p *plan.Plan) string {
	return filepath.Join(work, p.Name)
}

func (s *actionSet) Lookup(name string) (engine.Action, bool) {
	spec, ok := s.reg.Lookup(name)
	if !ok {
		return nil, false
	}
	return action{spec: spec, set: s}, true
}

// root returns the plan's source directory's root, opened once; nil lets
// the action open its own. Actions only read through it.
func (s *actionSet) root(dir string) *os.Root {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.roots[dir]; ok {
		return r
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil
	}
	s.roots[dir] = r
	return r
}

func (s *actionSet) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for dir, r := range s.roots {
		r.Close()
		delete(s.roots, dir)
	}
}

type action struct {
	spec actions.Spec
	set  *actionSet
}

func (a action) Portable() bool { return a.spec.Portable }
func (a action) Waits() bool    { return a.spec.Waits }

func (a action) Run(ctx context.Context, env *engine.ActionEnv, params map[string]any) (any, error) {
	logger := env.Logger
	if logger == nil {
		logger = a.set.log
	}
	e := &actions.Env{
		Logger:    logger, // actions add task_id, task and trace_id when they log
		TaskID:    env.TaskID,
		Task:      env.Task,
		TraceID:   env.TraceID,
		RunTask:   env.RunTask,
		KillGrace: a.set.killGrace,
		EnvAllow:  a.set.envAllow,
		RunAs:     a.set.runAs,
		Processes: a.set.procs,
	}
	if env.Plan != nil {
		e.PlanDir = env.Plan.Dir
		e.Root = a.set.root(env.Plan.Dir)
		e.WorkDir = workspace(a.set.work, env.Plan)
		e.HTTPAllowHosts = env.Plan.HTTP.AllowHosts
	}
	if out, step := env.Output, env.Step; out != nil {
		e.Output = func(stream string, p []byte) { out(step, stream, p) }
	}
	return a.spec.Run(ctx, e, params)
}

// ioLane runs calls on the bounded goroutine pool.
type ioLane struct{ pool *workers.IOPool }

func (l ioLane) Do(ctx context.Context, c engine.Call) (any, error) {
	return l.pool.Do(ctx, c.Run)
}

// cpuLane ships calls to a worker process, which sees the same plan source
// and workspace as the io lane.
type cpuLane struct {
	pool *workers.CPUPool
	work string // as actionSet.work
}

func (l cpuLane) Do(ctx context.Context, c engine.Call) (any, error) {
	job := workers.Job{Action: c.Action, Params: c.Params}
	if c.Plan != nil {
		job.PlanDir = c.Plan.Dir
		job.WorkDir = workspace(l.work, c.Plan)
	}
	out, err := l.pool.Run(ctx, job)
	if c.Env != nil && c.Env.Output != nil {
		// A worker process cannot stream; its exec output arrives whole.
		res := out
		var je *workers.JobError
		if errors.As(err, &je) {
			res = je.Output
		}
		if m, ok := res.(map[string]any); ok {
			for _, stream := range []string{"stdout", "stderr"} {
				if s, ok := m[stream].(string); ok && s != "" {
					c.Env.Output(c.Env.Step, stream, []byte(s))
				}
			}
		}
	}
	return out, err
}

// PlanOptions are the plan loader's options for the builtin actions: unknown
// actions and misspelt params are load errors with file:line, and so are
// loops written with more than engine.DefaultMaxLoopIterations iterations
// (set MaxLoopIterations for another limit).
func PlanOptions(reg *actions.Registry, skipBroken bool) plan.Options {
	return plan.Options{
		SkipBroken: skipBroken,
		ActionKnown: func(name string) bool {
			_, ok := reg.Lookup(name)
			return ok
		},
		ActionNames: reg.Names,
		ActionParams: func(name string) ([]string, bool) {
			s, ok := reg.Lookup(name)
			if !ok || s.AnyParams {
				return nil, false
			}
			return s.Params, true
		},
		HTTPHostValid:     actions.ParseHostRule,
		MaxLoopIterations: engine.DefaultMaxLoopIterations,
	}
}
