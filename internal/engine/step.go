package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aura-dev/aura/internal/plan"
	"github.com/aura-dev/aura/internal/template"
)

// job is a prepared step: params are evaluated, the action and lane are
// chosen. execute only reads it and the run's immutable fields, so it may
// run on its own goroutine.
type job struct {
	ru     *run
	step   *plan.Step
	index  int
	action Action
	lane   Lane
	one    any   // params of a plain step (map[string]any)
	loop   bool  // params holds one entry per iteration
	params []any // per iteration
	// first is the attempt to start with: a step aborted by a pause runs
	// again with the attempt it was aborted in (0: the first).
	first int
}

// execute runs the step (all attempts, all iterations) and reports the
// outcome; it never panics.
func (j job) execute(ctx context.Context) (o outcome) {
	run := ctx
	ctx = j.ru.req.Pause.stepContext(ctx)
	defer func() {
		o.aborted = aborted(run, ctx, o.err)
	}()
	defer func() {
		// Actions and lanes are already guarded; this catches an observer
		// panicking on a step goroutine, which would otherwise kill the
		// process.
		if p := recover(); p != nil {
			o = outcome{index: j.index, attempts: 1, err: fmt.Errorf("step panicked: %v", p), finished: time.Now()}
		}
	}()
	if !j.loop {
		out, attempts, err := j.attempts(ctx, j.one.(map[string]any), true)
		return outcome{index: j.index, out: out, attempts: attempts, err: err, finished: time.Now()}
	}
	id := j.step.ID
	obs := j.ru.obs
	if obs != nil {
		obs.StepStarted(id, 1)
	}
	out, attempts, err := j.runLoop(ctx)
	if obs != nil {
		status := StepSucceeded
		if err != nil {
			status = failedStatus(ctx)
		}
		obs.StepFinished(id, 1, status, err)
	}
	return outcome{index: j.index, out: out, attempts: attempts, err: err, finished: time.Now()}
}

// runLoop runs the iterations, at most Parallelism at a time. The first
// failing iteration stops new ones from starting; the output is the list
// of iteration outputs in order.
func (j job) runLoop(ctx context.Context) (any, int, error) {
	n := len(j.params)
	outs := make([]any, n)
	errs := make([]error, n)
	var maxAttempts atomic.Int64
	var failed atomic.Bool
	var next, completed atomic.Int64
	work := func() {
		for {
			k := int(next.Add(1) - 1)
			if k >= n || failed.Load() || ctx.Err() != nil {
				return
			}
			out, a, err := j.attempts(ctx, j.params[k].(map[string]any), false)
			for {
				cur := maxAttempts.Load()
				if int64(a) <= cur || maxAttempts.CompareAndSwap(cur, int64(a)) {
					break
				}
			}
			outs[k], errs[k] = out, err
			completed.Add(1)
			if err != nil {
				failed.Store(true)
			}
		}
	}
	workers := min(j.step.Loop.Parallelism, n)
	if workers <= 1 {
		work()
	} else {
		var wg sync.WaitGroup
		for range workers {
			wg.Go(work)
		}
		wg.Wait()
	}
	for k, err := range errs {
		if err != nil {
			return nil, int(maxAttempts.Load()), fmt.Errorf("iteration %d: %w", k, err)
		}
	}
	if int(completed.Load()) < n { // only ctx ends a loop early without an error
		return nil, int(maxAttempts.Load()), context.Cause(ctx)
	}
	attempts := int(maxAttempts.Load())
	if attempts == 0 {
		attempts = 1 // an empty loop still ran once
	}
	return outs, attempts, nil
}

// attempts runs the action up to the retry policy's max attempts. With
// observe, each attempt is reported to the observer.
func (j job) attempts(ctx context.Context, params map[string]any, observe bool) (any, int, error) {
	s := j.step
	obs := j.ru.obs
	if !observe {
		obs = nil
	}
	var err error
	for a := max(j.first, 1); ; a++ {
		if obs != nil {
			obs.StepStarted(s.ID, a)
		}
		var out any
		out, err = j.attempt(ctx, j.ru.withResourceEnv(s.Action, params))
		if err == nil {
			if obs != nil {
				obs.StepFinished(s.ID, a, StepSucceeded, nil)
			}
			return out, a, nil
		}
		if obs != nil {
			obs.StepFinished(s.ID, a, failedStatus(ctx), err)
		}
		if a >= s.Retry.MaxAttempts || ctx.Err() != nil {
			return nil, a, err
		}
		d := s.Retry.DelayBefore(a + 1)
		if ro, ok := obs.(RetryObserver); ok {
			ro.StepRetrying(s.ID, a+1, s.Retry.MaxAttempts, d, err)
		}
		if d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, a, err
			case <-t.C:
			}
		}
	}
}

// failedStatus is how a failed attempt ended: StepCancelled when the task
// itself was stopped meanwhile (the error is then the task's cause, not the
// step's own failure), else StepFailed.
func failedStatus(ctx context.Context) StepStatus {
	if ctx.Err() != nil {
		return StepCancelled
	}
	return StepFailed
}

// attempt makes one action call with the step's timeout.
func (j job) attempt(ctx context.Context, params map[string]any) (out any, err error) {
	defer func() {
		if p := recover(); p != nil {
			out, err = nil, fmt.Errorf("action %s: output could not be used: %v", j.step.Action, p)
		}
	}()
	s := j.step
	actx := ctx
	if s.Timeout > 0 {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeoutCause(ctx, s.Timeout, &StepTimeoutError{Step: s.ID, Timeout: s.Timeout})
		defer cancel()
	}
	if j.lane == nil {
		out, err = j.call(actx, params)
	} else {
		out, err = j.onLane(actx, params)
	}
	if err != nil {
		if ctx.Err() != nil {
			// The task itself was stopped; say so rather than echoing
			// whatever the action made of the cancellation.
			return nil, context.Cause(ctx)
		}
		var te *StepTimeoutError
		if cause := context.Cause(actx); actx != ctx && errors.As(cause, &te) {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return nil, te
			}
			return nil, fmt.Errorf("%w: %v", te, err)
		}
		return nil, err
	}
	out = template.Normalize(out)
	if err := j.ru.hold(out); err != nil {
		return nil, err
	}
	return out, nil
}

// onLane hands the call to a lane, recovering a panicking lane.
func (j job) onLane(ctx context.Context, params map[string]any) (out any, err error) {
	defer func() {
		if p := recover(); p != nil {
			out, err = nil, fmt.Errorf("lane panicked running %s: %v", j.step.Action, p)
		}
	}()
	env := j.env()
	return j.lane.Do(ctx, Call{
		Action: j.step.Action,
		Params: params,
		Plan:   j.ru.task.Plan,
		Run:    func(ctx context.Context) (any, error) { return j.callEnv(ctx, env, params) },
		Env:    env,
	})
}

// call runs the action in-process, turning a panic into an error.
func (j job) call(ctx context.Context, params map[string]any) (any, error) {
	return j.callEnv(ctx, j.env(), params)
}

// env is the run's shared environment, or a copy naming the step when
// output is collected.
func (j job) env() *ActionEnv {
	if j.ru.env.Output == nil {
		return &j.ru.env
	}
	e := j.ru.env
	e.Step = j.step.ID
	return &e
}

// callEnv runs the action in-process with env, turning a panic into an
// error.
func (j job) callEnv(ctx context.Context, env *ActionEnv, params map[string]any) (out any, err error) {
	defer func() {
		if p := recover(); p != nil {
			out, err = nil, fmt.Errorf("action %s panicked: %v", j.step.Action, p)
		}
	}()
	return j.action.Run(ctx, env, params)
}
