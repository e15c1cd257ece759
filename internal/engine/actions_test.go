package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// testActions is a small set of real actions for the engine tests.
type testActions struct {
	mu       sync.Mutex
	barriers map[string]chan struct{}
	arrived  map[string]int
	flaky    map[string]int
}

func newTestActions() *testActions {
	return &testActions{barriers: map[string]chan struct{}{}, arrived: map[string]int{}, flaky: map[string]int{}}
}

type actionFunc struct {
	run      func(ctx context.Context, env *ActionEnv, p map[string]any) (any, error)
	portable bool
	waits    bool
}

func (a actionFunc) Run(ctx context.Context, env *ActionEnv, p map[string]any) (any, error) {
	return a.run(ctx, env, p)
}
func (a actionFunc) Portable() bool { return a.portable }
func (a actionFunc) Waits() bool    { return a.waits }

func (ta *testActions) Lookup(name string) (Action, bool) {
	switch name {
	case "noop":
		return actionFunc{run: func(context.Context, *ActionEnv, map[string]any) (any, error) { return nil, nil }}, true
	case "set":
		return actionFunc{portable: true, run: func(_ context.Context, _ *ActionEnv, p map[string]any) (any, error) { return p, nil }}, true
	case "fail":
		return actionFunc{run: func(_ context.Context, _ *ActionEnv, p map[string]any) (any, error) {
			return nil, fmt.Errorf("%v", p["message"])
		}}, true
	case "fail_if":
		return actionFunc{run: func(_ context.Context, _ *ActionEnv, p map[string]any) (any, error) {
			if p["fail"] == true {
				return nil, errors.New("asked to fail")
			}
			return "ok", nil
		}}, true
	case "sleep":
		return actionFunc{run: func(ctx context.Context, _ *ActionEnv, p map[string]any) (any, error) {
			d, err := time.ParseDuration(p["duration"].(string))
			if err != nil {
				return nil, err
			}
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-t.C:
				return nil, nil
			}
		}}, true
	case "run_child":
		return actionFunc{waits: true, run: func(ctx context.Context, env *ActionEnv, p map[string]any) (any, error) {
			return env.RunTask(ctx, p["task"].(string), p["inputs"].(map[string]any))
		}}, true
	case "panic":
		return actionFunc{run: func(context.Context, *ActionEnv, map[string]any) (any, error) { panic("kaboom") }}, true
	case "barrier":
		// Waits until `parties` callers with the same name have arrived:
		// it only succeeds when steps really run at the same time.
		return actionFunc{run: func(ctx context.Context, _ *ActionEnv, p map[string]any) (any, error) {
			name, parties := p["name"].(string), int(p["parties"].(int64))
			ta.mu.Lock()
			ch, ok := ta.barriers[name]
			if !ok {
				ch = make(chan struct{})
				ta.barriers[name] = ch
			}
			ta.arrived[name]++
			if ta.arrived[name] == parties {
				close(ch)
			}
			ta.mu.Unlock()
			select {
			case <-ch:
				return nil, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(5 * time.Second):
				return nil, errors.New("barrier: the other party never arrived")
			}
		}}, true
	case "flaky":
		// Fails the first `failures` calls for a key.
		return actionFunc{run: func(_ context.Context, _ *ActionEnv, p map[string]any) (any, error) {
			key, failures := p["key"].(string), int(p["failures"].(int64))
			ta.mu.Lock()
			defer ta.mu.Unlock()
			ta.flaky[key]++
			if ta.flaky[key] <= failures {
				return nil, fmt.Errorf("flaky failure %d", ta.flaky[key])
			}
			return ta.flaky[key], nil
		}}, true
	}
	return nil, false
}

// event is one observer callback.
type event struct {
	Step    string
	Attempt int
	Status  string // "started" or a StepStatus
}

type recorder struct {
	mu     sync.Mutex
	events []event
}

func (r *recorder) StepStarted(step string, attempt int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, event{step, attempt, "started"})
}

func (r *recorder) StepFinished(step string, attempt int, status StepStatus, _ error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, event{step, attempt, status.String()})
}

// StepRetrying records a retry as the next attempt with status "retrying"
// and the delay before it.
func (r *recorder) StepRetrying(step string, next, maxAttempts int, delay time.Duration, _ error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, event{step, next, fmt.Sprintf("retrying %d/%d in %s", next, maxAttempts, delay)})
}

func (r *recorder) forStep(step string) []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []event
	for _, e := range r.events {
		if e.Step == step {
			out = append(out, e)
		}
	}
	return out
}

// laneRecorder is a lane that runs calls in-process on a fresh goroutine
// and remembers which actions it saw.
type laneRecorder struct {
	mu    sync.Mutex
	calls []string
}

func (l *laneRecorder) Do(ctx context.Context, c Call) (any, error) {
	l.mu.Lock()
	l.calls = append(l.calls, c.Action)
	l.mu.Unlock()
	type res struct {
		v   any
		err error
	}
	ch := make(chan res, 1)
	go func() {
		v, err := c.Run(ctx)
		ch <- res{v, err}
	}()
	r := <-ch
	return r.v, r.err
}

func (l *laneRecorder) seen() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.calls...)
}
