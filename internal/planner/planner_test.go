package planner

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aura-dev/aura/internal/plan"
)

// device is a simulated system with one current state. Transitions move it
// (when they do not fail), checks report whether a state holds. It is the
// real state machine the planner drives in these tests.
type device struct {
	mu       sync.Mutex
	state    string
	failures map[string]int    // transition task -> failures left (-1: always)
	landIn   map[string]string // transition task -> where it really lands
	settle   map[string]int    // state -> checks reporting false after arrival
	log      []string          // "check:<state>" and "run:<task>", in order

	// onCheck, when set, replaces the check's answer (for concurrency tests).
	onCheck func(ctx context.Context, st *plan.State) (bool, error)
	// onTransition runs before a transition takes effect.
	onTransition func(ctx context.Context, tr *plan.Transition) error
}

func (d *device) Check(ctx context.Context, st *plan.State) (bool, error) {
	if !InPlanning(ctx) {
		return false, errors.New("check ran outside the planning context")
	}
	d.mu.Lock()
	d.log = append(d.log, "check:"+st.Name)
	hook := d.onCheck
	d.mu.Unlock()
	if hook != nil {
		return hook(ctx, st)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state == st.Name && d.settle[st.Name] > 0 {
		d.settle[st.Name]--
		return false, nil
	}
	return d.state == st.Name, nil
}

func (d *device) Transition(ctx context.Context, tr *plan.Transition) error {
	d.mu.Lock()
	d.log = append(d.log, "run:"+tr.Task)
	hook := d.onTransition
	d.mu.Unlock()
	if hook != nil {
		if err := hook(ctx, tr); err != nil {
			return err
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if n := d.failures[tr.Task]; n != 0 {
		d.failures[tr.Task] = n - 1
		return fmt.Errorf("device refused %s", tr.Task)
	}
	if d.state != tr.From {
		return fmt.Errorf("%s needs %s, device is in %s", tr.Task, tr.From, d.state)
	}
	d.state = tr.To
	if to, ok := d.landIn[tr.Task]; ok {
		d.state = to
	}
	return nil
}

func (d *device) runs() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, l := range d.log {
		if task, ok := strings.CutPrefix(l, "run:"); ok {
			out = append(out, task)
		}
	}
	return out
}

func newDevice(state string) *device {
	return &device{state: state, failures: map[string]int{}, landIn: map[string]string{}, settle: map[string]int{}}
}

// recorder collects the planner's events.
type recorder struct {
	events []Event
}

func (r *recorder) planner(rn Runner) *Planner {
	return &Planner{
		Runner:  rn,
		Observe: func(e Event) { r.events = append(r.events, e) },
	}
}

func (r *recorder) kinds() []string {
	var out []string
	for _, e := range r.events {
		out = append(out, e.Kind)
	}
	return out
}

func (r *recorder) count(kind string) int {
	n := 0
	for _, e := range r.events {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

// lobbyMap: logged_out -> logged_in -> lobby, plus a costly shortcut and
// an unreachable state.
func lobbyMap() *plan.StateMap {
	sm := stateMap([]string{"logged_out", "logged_in", "lobby", "shop", "maintenance"},
		tr("logged_out", "logged_in", "login", 1),
		tr("logged_in", "lobby", "enter_lobby", 1),
		tr("logged_out", "lobby", "quick_join", 5),
		tr("lobby", "shop", "open_shop", 1),
		tr("shop", "logged_out", "logout", 1),
		tr("lobby", "logged_out", "logout_lobby", 1))
	sm.States["logged_out"].Priority = 10
	return sm
}

func TestReachDirectPath(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := newDevice("logged_in")
		var rec recorder
		if err := rec.planner(dev).Reach(context.Background(), lobbyMap(), "lobby"); err != nil {
			t.Fatal(err)
		}
		if dev.state != "lobby" || !slices.Equal(dev.runs(), []string{"enter_lobby"}) {
			t.Fatalf("device in %s after %v", dev.state, dev.runs())
		}
		want := []string{EventDetect, EventTransitionStart, EventTransitionOK, EventReached}
		if !slices.Equal(rec.kinds(), want) {
			t.Fatalf("events %v, want %v", rec.kinds(), want)
		}
		if e := rec.events[0]; e.From != "logged_in" || e.To != "lobby" {
			t.Fatalf("detect event %+v", e)
		}
	})
}

func TestReachAlreadyThere(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := newDevice("lobby")
		var rec recorder
		if err := rec.planner(dev).Reach(context.Background(), lobbyMap(), "lobby"); err != nil {
			t.Fatal(err)
		}
		if len(dev.runs()) != 0 || !slices.Equal(rec.kinds(), []string{EventDetect, EventReached}) {
			t.Fatalf("ran %v, events %v", dev.runs(), rec.kinds())
		}
	})
}

func TestReachTakesCheapestPath(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := newDevice("logged_out")
		var rec recorder
		if err := rec.planner(dev).Reach(context.Background(), lobbyMap(), "lobby"); err != nil {
			t.Fatal(err)
		}
		if got := dev.runs(); !slices.Equal(got, []string{"login", "enter_lobby"}) {
			t.Fatalf("ran %v, want login then enter_lobby (cost 2, not quick_join at 5)", got)
		}
	})
}

func TestReachVerifyRetrySucceeds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := newDevice("logged_in")
		dev.settle["lobby"] = 2 // the lobby takes two checks to show up
		var rec recorder
		sm := lobbyMap()
		start := time.Now() // the bubble's clock: it moves only while everyone waits
		if err := rec.planner(dev).Reach(context.Background(), sm, "lobby"); err != nil {
			t.Fatal(err)
		}
		if n := rec.count(EventVerifyFailed); n != 2 {
			t.Fatalf("%d verify.failed events, want 2: %v", n, rec.kinds())
		}
		if waited := time.Since(start); waited != 2*sm.Planning.VerifyDelay {
			t.Fatalf("planning took %s, want two verify delays of %s", waited, sm.Planning.VerifyDelay)
		}
		if rec.count(EventReplan) != 0 || !slices.Equal(dev.runs(), []string{"enter_lobby"}) {
			t.Fatalf("replanned or reran: %v, ran %v", rec.kinds(), dev.runs())
		}
	})
}

func TestReachBrokenTransitionFailsAfterMaxReplans(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := newDevice("logged_out")
		dev.failures["enter_lobby"] = -1
		dev.failures["quick_join"] = -1
		var rec recorder
		sm := lobbyMap()
		start := time.Now()
		err := rec.planner(dev).Reach(context.Background(), sm, "lobby")
		var perr *Error
		if !errors.As(err, &perr) {
			t.Fatalf("error %v, want *Error", err)
		}
		if perr.Current != "logged_in" || perr.Stuck != "enter_lobby" || perr.Replans != 3 || perr.Target != "lobby" {
			t.Fatalf("error %+v, want stuck at logged_in on enter_lobby after 3 replans", perr)
		}
		want := `planning to "lobby": stuck at "logged_in" after 3 replans: transition "enter_lobby" failed: device refused enter_lobby`
		if err.Error() != want {
			t.Fatalf("message\n %s\nwant\n %s", err, want)
		}
		if got := dev.runs(); !slices.Equal(got, []string{"login", "enter_lobby", "enter_lobby", "enter_lobby", "enter_lobby"}) {
			t.Fatalf("ran %v: want login once, then enter_lobby on every attempt", got)
		}
		if rec.count(EventReplan) != 3 || rec.count(EventTransitionFailed) != 4 {
			t.Fatalf("events %v", rec.kinds())
		}
		if waited := time.Since(start); waited != 3*sm.Planning.ReplanDelay {
			t.Fatalf("planning took %s, want three replan delays of %s", waited, sm.Planning.ReplanDelay)
		}
	})
}

func TestReachReplansAfterLandingElsewhere(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := newDevice("logged_in")
		dev.landIn["enter_lobby"] = "logged_out" // the first attempt kicks us out
		var rec recorder
		p := rec.planner(dev)
		dev.onTransition = func(_ context.Context, tr *plan.Transition) error {
			if tr.Task == "login" {
				delete(dev.landIn, "enter_lobby") // logging in again fixes it
			}
			return nil
		}
		sm := lobbyMap()
		start := time.Now()
		if err := p.Reach(context.Background(), sm, "lobby"); err != nil {
			t.Fatal(err)
		}
		if got := dev.runs(); !slices.Equal(got, []string{"enter_lobby", "login", "enter_lobby"}) {
			t.Fatalf("ran %v", got)
		}
		if rec.count(EventReplan) != 1 || rec.count(EventVerifyFailed) != 3 {
			t.Fatalf("events %v", rec.kinds())
		}
		// Three failed checks of lobby, two verify delays apart, then one
		// replan delay.
		if waited, want := time.Since(start), 2*sm.Planning.VerifyDelay+sm.Planning.ReplanDelay; waited != want {
			t.Fatalf("planning took %s, want %s", waited, want)
		}
	})
}

func TestReachUnreachableTarget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := newDevice("logged_in")
		var rec recorder
		err := rec.planner(dev).Reach(context.Background(), lobbyMap(), "maintenance")
		var perr *Error
		if !errors.As(err, &perr) || !errors.Is(err, ErrNoPath) || perr.Current != "logged_in" || perr.Replans != 0 {
			t.Fatalf("error %#v, want *Error with ErrNoPath at logged_in and no replans", err)
		}
		if len(dev.runs()) != 0 || rec.count(EventReplan) != 0 {
			t.Fatalf("ran %v, events %v", dev.runs(), rec.kinds())
		}
	})
}

func TestReachUnknownTarget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec recorder
		err := rec.planner(newDevice("lobby")).Reach(context.Background(), lobbyMap(), "moon")
		if !errors.Is(err, ErrUnknownState) {
			t.Fatalf("error %v, want ErrUnknownState", err)
		}
	})
}

func TestReachUndetectableState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := newDevice("limbo") // no state's check holds
		var rec recorder
		sm := lobbyMap()
		sm.Planning.MaxReplans = 1
		start := time.Now()
		err := rec.planner(dev).Reach(context.Background(), sm, "lobby")
		var perr *Error
		if !errors.As(err, &perr) || !errors.Is(err, ErrUndetectable) || perr.Current != "" || perr.Replans != 1 {
			t.Fatalf("error %v, want *Error with ErrUndetectable after 1 replan", err)
		}
		if !strings.Contains(err.Error(), "current state unknown") {
			t.Fatalf("message %q does not say the state is unknown", err)
		}
		if rec.count(EventDetect) != 2 || rec.events[0].From != "" {
			t.Fatalf("events %+v", rec.events)
		}
		if waited := time.Since(start); waited != sm.Planning.ReplanDelay {
			t.Fatalf("planning took %s, want one replan delay of %s", waited, sm.Planning.ReplanDelay)
		}
	})
}

func TestReachRecursionIsAnError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec recorder
		err := rec.planner(newDevice("lobby")).Reach(WithPlanning(context.Background()), lobbyMap(), "lobby")
		if !errors.Is(err, ErrRecursivePlanning) {
			t.Fatalf("error %v, want ErrRecursivePlanning", err)
		}
		if InPlanning(context.Background()) {
			t.Fatal("a plain context reports planning")
		}
	})
}

func TestReachCancelledMidPlan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := newDevice("logged_out")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		dev.onTransition = func(ctx context.Context, tr *plan.Transition) error {
			if tr.Task == "enter_lobby" {
				cancel() // the task is cancelled while this transition runs
				<-ctx.Done()
				return errors.New("interrupted")
			}
			return nil
		}
		var rec recorder
		err := rec.planner(dev).Reach(ctx, lobbyMap(), "lobby")
		var perr *Error
		if !errors.As(err, &perr) || !errors.Is(err, context.Canceled) || perr.Current != "logged_in" {
			t.Fatalf("error %v, want *Error wrapping context.Canceled at logged_in", err)
		}
		if rec.count(EventReplan) != 0 || !slices.Equal(dev.runs(), []string{"login", "enter_lobby"}) {
			t.Fatalf("kept planning after cancellation: ran %v, events %v", dev.runs(), rec.kinds())
		}
	})
}

// A task cancelled while planning waits between checks stops at once, not
// after the delay.
func TestDelayEndsWithContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := newDevice("logged_in")
		dev.settle["lobby"] = 100
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		sm := lobbyMap()
		sm.Planning.VerifyDelay = time.Hour
		p := &Planner{Runner: dev, Observe: func(e Event) {
			if e.Kind == EventVerifyFailed {
				cancel() // the wait for the next check must end with ctx
			}
		}}
		start := time.Now()
		if err := p.Reach(ctx, sm, "lobby"); !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v, want context.Canceled", err)
		}
		if waited := time.Since(start); waited != 0 {
			t.Fatalf("planning went on for %s after its context ended", waited)
		}
	})
}

func TestRunnerPanicIsAnError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := newDevice("logged_in")
		dev.onTransition = func(context.Context, *plan.Transition) error { panic("driver bug") }
		var rec recorder
		sm := lobbyMap()
		sm.Planning.MaxReplans = 0
		err := rec.planner(dev).Reach(context.Background(), sm, "lobby")
		if err == nil || !strings.Contains(err.Error(), "driver bug") {
			t.Fatalf("error %v, want the panic reported", err)
		}
	})
}

func TestDetectFirstSuccessCancelsOthers(t *testing.T) {
	sm := stateMap([]string{"a", "b", "c", "seq"})
	sm.States["seq"].Sequential = true
	dev := newDevice("")
	var (
		mu        sync.Mutex
		started   = map[string]bool{}
		cancelled = map[string]bool{}
		allStart  = make(chan struct{})
	)
	dev.onCheck = func(ctx context.Context, st *plan.State) (bool, error) {
		mu.Lock()
		started[st.Name] = true
		if len(started) == 3 {
			close(allStart)
		}
		mu.Unlock()
		if st.Name == "b" {
			<-allStart // answer only once every concurrent check is running
			return true, nil
		}
		<-ctx.Done()
		mu.Lock()
		// Canceled, not the test's deadline: the planner cancelled it.
		cancelled[st.Name] = errors.Is(ctx.Err(), context.Canceled)
		mu.Unlock()
		return false, ctx.Err()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var rec recorder
	got, err := rec.planner(dev).Detect(ctx, sm, "a")
	if err != nil || got != "b" {
		t.Fatalf("Detect = %q, %v; want b", got, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !cancelled["a"] || !cancelled["c"] {
		t.Fatalf("cancelled %v, want a and c cancelled once b held", cancelled)
	}
	if started["seq"] {
		t.Fatal("sequential check ran although a concurrent one held")
	}
}

func TestDetectSequentialAfterConcurrent(t *testing.T) {
	sm := stateMap([]string{"a", "b", "s1", "s2"})
	sm.States["s1"].Sequential = true
	sm.States["s2"].Sequential = true
	sm.States["s2"].Priority = 5 // checked before s1
	dev := newDevice("s1")
	var mu sync.Mutex
	active := 0
	var overlap []string
	dev.onCheck = func(_ context.Context, st *plan.State) (bool, error) {
		mu.Lock()
		active++
		if sm.States[st.Name].Sequential && active > 1 {
			overlap = append(overlap, st.Name)
		}
		mu.Unlock()
		defer func() { mu.Lock(); active--; mu.Unlock() }()
		return dev.state == st.Name, nil
	}
	var rec recorder
	got, err := rec.planner(dev).Detect(context.Background(), sm, "")
	if err != nil || got != "s1" {
		t.Fatalf("Detect = %q, %v; want s1", got, err)
	}
	if len(overlap) > 0 {
		t.Fatalf("sequential checks %v ran alongside other checks", overlap)
	}
	seq := slices.DeleteFunc(slices.Clone(dev.log), func(l string) bool { return l != "check:s1" && l != "check:s2" })
	if !slices.Equal(seq, []string{"check:s2", "check:s1"}) || dev.log[len(dev.log)-1] != "check:s1" {
		t.Fatalf("check order %v: want a and b first, then s2, then s1", dev.log)
	}
}

func TestDetectOrderNearestToTarget(t *testing.T) {
	sm := lobbyMap()
	dev := newDevice("maintenance")
	var rec recorder
	p := rec.planner(dev)
	p.CheckParallelism = 1 // one at a time makes the start order visible
	got, err := p.Detect(context.Background(), sm, "lobby")
	if err != nil || got != "maintenance" {
		t.Fatalf("Detect = %q, %v", got, err)
	}
	// Distances to lobby: lobby 0, logged_in 1, logged_out 2 (priority 10),
	// shop 3; maintenance cannot reach it.
	want := []string{"check:lobby", "check:logged_in", "check:logged_out", "check:shop", "check:maintenance"}
	if !slices.Equal(dev.log, want) {
		t.Fatalf("check order %v, want %v", dev.log, want)
	}
}

func TestDetectCheckErrorsCountAsNotHolding(t *testing.T) {
	sm := stateMap([]string{"a", "b"})
	dev := newDevice("b")
	dev.onCheck = func(_ context.Context, st *plan.State) (bool, error) {
		if st.Name == "a" {
			return false, errors.New("adb offline")
		}
		return false, nil
	}
	var rec recorder
	_, err := rec.planner(dev).Detect(context.Background(), sm, "a")
	if !errors.Is(err, ErrUndetectable) || !strings.Contains(err.Error(), "adb offline") {
		t.Fatalf("error %v, want ErrUndetectable naming the failed check", err)
	}
}

// Every check that errors is named with its own error, concurrent and
// sequential alike, in check order, and each is reported as it happens.
func TestDetectNamesEveryCheckThatErrored(t *testing.T) {
	sm := stateMap([]string{"locked", "unlocked", "app_open"})
	sm.States["locked"].Sequential = true
	dev := newDevice("limbo")
	dev.onCheck = func(_ context.Context, st *plan.State) (bool, error) {
		switch st.Name {
		case "app_open":
			return false, errors.New(`exec: "adbb": executable file not found in $PATH`)
		case "locked":
			return false, errors.New("device offline")
		}
		return false, nil // unlocked answers: it does not hold
	}
	var rec recorder
	_, err := rec.planner(dev).Detect(context.Background(), sm, "app_open")
	var ue *UndetectableError
	if !errors.As(err, &ue) || !errors.Is(err, ErrUndetectable) {
		t.Fatalf("error %v, want *UndetectableError", err)
	}
	want := `current state undetectable: none of 3 states holds; 2 checks errored: ` +
		`check "checks/app_open" of state "app_open": exec: "adbb": executable file not found in $PATH; ` +
		`check "checks/locked" of state "locked": device offline`
	if err.Error() != want {
		t.Fatalf("error\n%s\nwant\n%s", err, want)
	}
	if rec.count(EventCheckFailed) != 2 {
		t.Fatalf("events %v, want two %s", rec.kinds(), EventCheckFailed)
	}
	for _, e := range rec.events {
		if e.Kind == EventCheckFailed && (e.Task == "" || !strings.Contains(e.Message, e.Task)) {
			t.Fatalf("event %+v does not name its check task", e)
		}
	}
}

// A check cancelled because another state was found is no failure.
func TestDetectFoundStateHidesNoErrors(t *testing.T) {
	sm := stateMap([]string{"a", "b"})
	dev := newDevice("b")
	dev.onCheck = func(ctx context.Context, st *plan.State) (bool, error) {
		if st.Name == "a" {
			<-ctx.Done()
			return false, ctx.Err()
		}
		return true, nil
	}
	var rec recorder
	got, err := rec.planner(dev).Detect(context.Background(), sm, "a")
	if err != nil || got != "b" || rec.count(EventCheckFailed) != 0 {
		t.Fatalf("Detect = %q, %v, events %v", got, err, rec.kinds())
	}
}
