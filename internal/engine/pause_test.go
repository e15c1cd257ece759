package engine

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aura-dev/aura/internal/plan"
)

// holds is an action set with one action, hold: it counts its calls by
// name and blocks until the test opens that name or its context ends.
type holds struct {
	mu    sync.Mutex
	calls map[string]int
	open  map[string]chan struct{}
}

func newHolds() *holds { return &holds{calls: map[string]int{}, open: map[string]chan struct{}{}} }

func (h *holds) gate(name string) chan struct{} {
	ch := h.open[name]
	if ch == nil {
		ch = make(chan struct{})
		h.open[name] = ch
	}
	return ch
}

func (h *holds) Lookup(string) (Action, bool) {
	return actionFunc{run: func(ctx context.Context, _ *ActionEnv, p map[string]any) (any, error) {
		name := p["name"].(string)
		h.mu.Lock()
		h.calls[name]++
		ch := h.gate(name)
		h.mu.Unlock()
		select {
		case <-ch:
			return name, nil
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}}, true
}

func (h *holds) release(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	close(h.gate(name))
}

func (h *holds) count(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls[name]
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func pauseTask(t *testing.T) *plan.Task {
	t.Helper()
	set, err := plan.Load("testdata/pause", plan.Options{ActionKnown: func(string) bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	tk, err := set.Task("p/three")
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// startPaused runs p/three with a Pauser on its own goroutine.
func startPaused(t *testing.T, h *holds, obs Observer) (*Pauser, <-chan Result) {
	p := &Pauser{}
	done := make(chan Result, 1)
	go func() {
		done <- New(Config{Actions: h}).Run(context.Background(), Request{Task: pauseTask(t), Pause: p, Observer: obs})
	}()
	return p, done
}

func TestPauseHoldsTheNextStepUntilThePauseIsOver(t *testing.T) {
	h := newHolds()
	p, done := startPaused(t, h, nil)
	waitFor(t, "step one", func() bool { return h.count("one") == 1 })
	at := make(chan struct{})
	resume := make(chan struct{})
	if !p.Pause(false, func(context.Context) error {
		close(at)
		<-resume
		return nil
	}) {
		t.Fatal("Pause refused")
	}
	if p.Pause(false, func(context.Context) error { return nil }) {
		t.Fatal("a second pause was taken before the first reached its boundary")
	}
	h.release("one")
	<-at
	if h.count("two") != 0 {
		t.Fatal("step two started during the pause")
	}
	close(resume)
	h.release("two")
	h.release("three")
	res := <-done
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	for _, n := range []string{"one", "two", "three"} {
		if h.count(n) != 1 {
			t.Errorf("%s ran %d times", n, h.count(n))
		}
	}
}

func TestPauseWithAbortRunsTheStepAgainAsTheSameAttempt(t *testing.T) {
	h := newHolds()
	obs := &recorder{}
	p, done := startPaused(t, h, obs)
	waitFor(t, "step one", func() bool { return h.count("one") == 1 })
	p.Pause(true, func(context.Context) error {
		h.release("one")
		return nil
	})
	h.release("two")
	h.release("three")
	res := <-done
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if h.count("one") != 2 || res.Steps[0].Attempts != 1 || res.Steps[0].Status != StepSucceeded {
		t.Fatalf("step one ran %d times, %d attempts, %s; want 2 runs as attempt 1", h.count("one"), res.Steps[0].Attempts, res.Steps[0].Status)
	} // Observers see the abort as a cancelled attempt 1, then attempt 1 again.
	want := []event{{"one", 1, "started"}, {"one", 1, "cancelled"}, {"one", 1, "started"}, {"one", 1, "succeeded"}}
	if got := obs.forStep("one"); !slices.Equal(got, want) {
		t.Fatalf("observed %v, want %v", got, want)
	}
}

func TestPauseThatFailsEndsTheRun(t *testing.T) {
	h := newHolds()
	p, done := startPaused(t, h, nil)
	waitFor(t, "step one", func() bool { return h.count("one") == 1 })
	stop := errors.New("policy: cancel")
	p.Pause(false, func(context.Context) error { return stop })
	h.release("one")
	res := <-done
	if !errors.Is(res.Err, stop) {
		t.Fatalf("Run: %v, want the pause's error", res.Err)
	}
	if res.Steps[1].Status != StepPending || res.Steps[2].Status != StepPending || h.count("two") != 0 {
		t.Fatalf("steps after the pause: %v %v", res.Steps[1].Status, res.Steps[2].Status)
	}
}

func TestPauseAskedDuringTheLastStepHoldsBeforeTheEnd(t *testing.T) {
	h := newHolds()
	p, done := startPaused(t, h, nil)
	h.release("one")
	h.release("two")
	waitFor(t, "step three", func() bool { return h.count("three") == 1 })
	held := false
	p.Pause(false, func(context.Context) error {
		held = true
		return nil
	})
	h.release("three")
	if res := <-done; res.Err != nil || !held {
		t.Fatalf("Run: %v, paused %v; want the pause held after the last step", res.Err, held)
	}
}
