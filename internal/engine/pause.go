package engine

import (
	"context"
	"errors"
	"sync"
)

// ErrStepAborted is the cause a running step's context ends with when a
// pause asks for the running steps to stop first (Pauser.Pause with abort):
// the step runs again once the pause is over, and the aborted attempt is
// not counted as a failed one.
var ErrStepAborted = errors.New("step aborted by a pause; it runs again when the task resumes")

// A Pauser holds a run at a step boundary when asked (Request.Pause). The
// engine asks it before each step starts and once after the last one; a
// graph stops starting steps once a pause is asked and reaches the
// boundary when none of its steps runs. There it calls the function given
// to Pause on the goroutine that called Run, while no step of the run
// runs: its nil error lets the run go on with the next step, and an error
// ends the run with it (the steps not started stay pending). With abort,
// the steps running when the pause is asked are cancelled with
// ErrStepAborted first and run again after it.
//
// A Pauser is safe for concurrent use: Pause is called from any goroutine.
// The zero value is ready; one Pauser serves one run.
type Pauser struct {
	mu    sync.Mutex
	at    func(context.Context) error // the pause asked; nil when none
	abort bool
	// steps is the context the run's steps start in until an abort
	// cancels it (one per run, not one per step: most runs never pause);
	// made on first use.
	steps  context.Context
	cancel context.CancelCauseFunc
}

// Pause asks the run to stop at its next step boundary and call at there.
// It reports false, changing nothing, when a pause is already asked and
// has not reached its boundary yet.
func (p *Pauser) Pause(abort bool, at func(ctx context.Context) error) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.at != nil {
		return false
	}
	p.at, p.abort = at, abort
	if abort && p.cancel != nil {
		p.cancel(ErrStepAborted)
		p.steps, p.cancel = nil, nil // the steps after the pause start afresh
	}
	return true
}

// asked reports whether a pause waits for the next boundary.
func (p *Pauser) asked() bool {
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.at != nil
}

// stepContext is the context a step of the run (whose context is ctx)
// runs in: a pause with abort cancels it, also when the pause was asked
// just before the step started.
func (p *Pauser) stepContext(ctx context.Context) context.Context {
	if p == nil {
		return ctx
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.at != nil && p.abort {
		sctx, cancel := context.WithCancelCause(ctx)
		cancel(ErrStepAborted)
		return sctx
	}
	if p.steps == nil {
		p.steps, p.cancel = context.WithCancelCause(ctx)
	}
	return p.steps
}

// done lets go of the steps' context once the run is over.
func (p *Pauser) done() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cancel != nil {
		p.cancel(nil)
		p.steps, p.cancel = nil, nil
	}
}

// hold is a step boundary: when a pause is asked, it runs it. The pause
// is taken off first, so the next one may be asked while this one runs
// (it holds at the next boundary). ctx is the run's.
func (p *Pauser) hold(ctx context.Context) error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	at := p.at
	p.at, p.abort = nil, false
	p.mu.Unlock()
	if at == nil {
		return nil
	}
	err := at(ctx)
	if ctx.Err() != nil {
		return stopErr(ctx)
	}
	return err
}

// aborted reports whether a step that ended with err in sctx (its own
// context, under the run's ctx) was aborted by a pause rather than failed
// or stopped with the task.
func aborted(ctx, sctx context.Context, err error) bool {
	return err != nil && ctx.Err() == nil && errors.Is(context.Cause(sctx), ErrStepAborted)
}

// boundary is a step boundary of the run: false when the run must stop
// (its context ended, or the pause ended it), with ru.err set.
func (ru *run) boundary() bool {
	if ru.ctx.Err() != nil {
		if ru.err == nil {
			ru.err = stopErr(ru.ctx)
		}
		return false
	}
	if err := ru.req.Pause.hold(ru.ctx); err != nil {
		if ru.err == nil {
			ru.err = err
		}
		return false
	}
	return true
}
