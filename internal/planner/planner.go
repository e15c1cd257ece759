package planner

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aura-dev/aura/internal/plan"
)

var (
	// ErrUndetectable: no state's check holds.
	ErrUndetectable = errors.New("current state undetectable")
	// ErrNotVerified: a transition ran but its target state did not hold.
	ErrNotVerified = errors.New("arrival not verified")
	// ErrRecursivePlanning: Reach was called from inside a Reach (a check or
	// transition task that itself requires an initial state).
	ErrRecursivePlanning = errors.New("state planning inside state planning")
)

// Event kinds passed to Planner.Observe.
const (
	EventDetect           = "detect"            // From: detected state, To: target
	EventTransitionStart  = "transition.start"  // Attempt: replans so far
	EventTransitionOK     = "transition.ok"     // arrival verified
	EventTransitionFailed = "transition.failed" // Message: the error
	EventVerifyFailed     = "verify.failed"     // Attempt: check number, 1-based
	EventReplan           = "replan"            // Attempt: replan number, Message: the cause
	EventReached          = "reached"           // To: target
	// EventCheckFailed: a check task errored during detection (Task: the
	// check task, To: its state, Message: the error). It counts as the
	// state not holding; the error is kept for the planning failure.
	EventCheckFailed = "check.failed"
)

// Event reports planning progress, for task events and logs.
type Event struct {
	Kind           string
	From, To, Task string
	Message        string
	Attempt        int
}

// Runner runs a state map's tasks as the caller sees fit (the execution
// manager: checks inline, transitions as child tasks of the task being
// planned). Both methods must honour ctx.
type Runner interface {
	// Check runs st's check task; true means the state holds.
	Check(ctx context.Context, st *plan.State) (bool, error)
	// Transition runs tr's task.
	Transition(ctx context.Context, tr *plan.Transition) error
}

// Error is a planning failure; it says where planning got stuck.
type Error struct {
	Target  string
	Current string // last state known to hold; "" when none was detected
	Stuck   string // the transition task that failed or was not verified; "" otherwise
	Replans int    // replans performed
	Err     error  // the last cause
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "planning to %q: ", e.Target)
	if e.Current != "" {
		fmt.Fprintf(&b, "stuck at %q", e.Current)
	} else {
		b.WriteString("current state unknown")
	}
	if e.Replans > 0 {
		fmt.Fprintf(&b, " after %d replans", e.Replans)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// CheckError is one check task that errored (rather than answering).
type CheckError struct {
	State, Check string
	Err          error
}

func (e *CheckError) Error() string {
	return fmt.Sprintf("check %q of state %q: %v", e.Check, e.State, e.Err)
}

func (e *CheckError) Unwrap() error { return e.Err }

// UndetectableError is a detection in which no state held. It lists every
// check that errored, with its own error, so a typo in one check task is
// not hidden behind "none holds".
type UndetectableError struct {
	States int           // states checked
	Failed []*CheckError // the checks that errored, in check order
}

func (e *UndetectableError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v: none of %d states holds", ErrUndetectable, e.States)
	if len(e.Failed) == 0 {
		return b.String()
	}
	if len(e.Failed) == 1 {
		b.WriteString("; 1 check errored: ")
	} else {
		fmt.Fprintf(&b, "; %d checks errored: ", len(e.Failed))
	}
	for i, f := range e.Failed {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(f.Error())
	}
	return b.String()
}

// Is makes errors.Is(err, ErrUndetectable) true.
func (e *UndetectableError) Is(target error) bool { return target == ErrUndetectable }

// Unwrap gives the failed checks' errors to errors.Is and errors.As.
func (e *UndetectableError) Unwrap() []error {
	out := make([]error, len(e.Failed))
	for i, f := range e.Failed {
		out[i] = f
	}
	return out
}

type planningKey struct{}

// WithPlanning marks ctx as belonging to state planning; Reach refuses to
// run under such a context.
func WithPlanning(ctx context.Context) context.Context {
	return context.WithValue(ctx, planningKey{}, true)
}

// InPlanning reports whether ctx comes from state planning.
func InPlanning(ctx context.Context) bool {
	v, _ := ctx.Value(planningKey{}).(bool)
	return v
}

// Planner runs state planning. The zero value needs only Runner.
type Planner struct {
	Runner Runner
	// Observe receives progress events on the goroutine that called Reach
	// or Detect; nil discards them.
	Observe func(Event)
	// CheckParallelism bounds concurrent check tasks during detection;
	// 0 runs all non-sequential checks at once.
	CheckParallelism int
}

func (p *Planner) observe(e Event) {
	if p.Observe != nil {
		p.Observe(e)
	}
}

// sleep waits d between verify checks and replans, or until ctx ends.
func (p *Planner) sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// check and transition call the Runner, turning a panic into an error.
func (p *Planner) check(ctx context.Context, st *plan.State) (ok bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			ok, err = false, fmt.Errorf("check %q panicked: %v", st.Check, r)
		}
	}()
	return p.Runner.Check(ctx, st)
}

func (p *Planner) transition(ctx context.Context, tr *plan.Transition) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panicked: %v", r)
		}
	}()
	return p.Runner.Transition(ctx, tr)
}

// Reach brings the system into target: detect the current state, take the
// cheapest path, run each transition and verify arrival (up to
// VerifyRetries checks, VerifyDelay apart), and on failure replan (up to
// MaxReplans times, ReplanDelay apart). Every failure is an *Error;
// cancellation of ctx stops planning at once (errors.Is(err, ctx.Err())).
func (p *Planner) Reach(ctx context.Context, sm *plan.StateMap, target string) error {
	fail := func(current, stuck string, replans int, err error) error {
		return &Error{Target: target, Current: current, Stuck: stuck, Replans: replans, Err: err}
	}
	if InPlanning(ctx) {
		return fail("", "", 0, ErrRecursivePlanning)
	}
	if sm == nil {
		return fail("", "", 0, fmt.Errorf("no state map: %w", ErrUnknownState))
	}
	if _, ok := sm.States[target]; !ok {
		return fail("", "", 0, fmt.Errorf("target %q: %w", target, ErrUnknownState))
	}
	// Index the graph and order the checks once for all attempts.
	g, err := newGraph(sm, false)
	if err != nil {
		return fail("", "", 0, err)
	}
	concurrent, sequential, err := checkOrder(sm, target)
	if err != nil {
		return fail("", "", 0, err)
	}
	ctx = WithPlanning(ctx)
	cfg := sm.Planning
	current := ""
	for replans := 0; ; replans++ {
		stuck, err := p.attempt(ctx, sm, g, concurrent, sequential, target, replans, &current)
		if err == nil {
			return nil
		}
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			err = fmt.Errorf("%w (%v)", cerr, err)
		}
		if ctx.Err() != nil || errors.Is(err, ErrNoPath) || errors.Is(err, ErrUnknownState) || errors.Is(err, ErrInvalidCost) {
			return fail(current, stuck, replans, err)
		}
		if replans >= cfg.MaxReplans {
			return fail(current, stuck, replans, err)
		}
		p.observe(Event{Kind: EventReplan, From: current, To: target, Task: stuck, Message: err.Error(), Attempt: replans + 1})
		if serr := p.sleep(ctx, cfg.ReplanDelay); serr != nil {
			return fail(current, stuck, replans, fmt.Errorf("%w (%v)", serr, err))
		}
	}
}

// attempt is one pass of Reach: detect, find a path, walk it. It keeps
// *current at the last state known to hold and returns the transition task
// it got stuck on, if any.
func (p *Planner) attempt(ctx context.Context, sm *plan.StateMap, g *graph, concurrent, sequential []*plan.State,
	target string, replans int, current *string) (string, error) {
	st, err := p.detect(ctx, sm, concurrent, sequential, target)
	if err != nil {
		*current = ""
		return "", err
	}
	*current = st
	if st == target {
		p.observe(Event{Kind: EventReached, From: st, To: target})
		return "", nil
	}
	path, err := g.path(st, target)
	if err != nil {
		return "", err
	}
	for _, tr := range path.Transitions {
		p.observe(Event{Kind: EventTransitionStart, From: tr.From, To: tr.To, Task: tr.Task, Attempt: replans})
		if err := p.transition(ctx, tr); err != nil {
			err = fmt.Errorf("transition %q failed: %w", tr.Task, err)
			p.observe(Event{Kind: EventTransitionFailed, From: tr.From, To: tr.To, Task: tr.Task, Message: err.Error(), Attempt: replans})
			return tr.Task, err
		}
		if err := p.verify(ctx, sm, tr); err != nil {
			p.observe(Event{Kind: EventTransitionFailed, From: tr.From, To: tr.To, Task: tr.Task, Message: err.Error(), Attempt: replans})
			return tr.Task, err
		}
		*current = tr.To
		p.observe(Event{Kind: EventTransitionOK, From: tr.From, To: tr.To, Task: tr.Task, Attempt: replans})
	}
	p.observe(Event{Kind: EventReached, From: st, To: target})
	return "", nil
}

// verify checks that tr.To holds, up to VerifyRetries times (at least once).
func (p *Planner) verify(ctx context.Context, sm *plan.StateMap, tr *plan.Transition) error {
	to, ok := sm.States[tr.To]
	if !ok {
		return fmt.Errorf("transition %q leads to %q: %w", tr.Task, tr.To, ErrUnknownState)
	}
	tries := max(sm.Planning.VerifyRetries, 1)
	var last error
	for i := 1; i <= tries; i++ {
		holds, err := p.check(ctx, to)
		if err == nil && holds {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		last = err
		msg := fmt.Sprintf("state %q does not hold", tr.To)
		if err != nil {
			msg = err.Error()
		}
		p.observe(Event{Kind: EventVerifyFailed, From: tr.From, To: tr.To, Task: tr.Task, Message: msg, Attempt: i})
		if i < tries {
			if err := p.sleep(ctx, sm.Planning.VerifyDelay); err != nil {
				return err
			}
		}
	}
	err := fmt.Errorf("transition %q: state %q did not hold after %d checks: %w", tr.Task, tr.To, tries, ErrNotVerified)
	if last != nil {
		err = fmt.Errorf("%w (last check: %w)", err, last)
	}
	return err
}

// Detect returns the state that holds now. Checks of states not marked
// sequential run concurrently, started nearest to target first (by path
// cost to target, then state priority, then name); the first that holds
// wins and the others are cancelled. Sequential states are checked one by
// one, in the same order, after all concurrent checks failed. A check that
// errors counts as not holding; when none holds, the *UndetectableError
// names every check that errored. target may be "" (no preference in order).
// The checks run under WithPlanning(ctx).
func (p *Planner) Detect(ctx context.Context, sm *plan.StateMap, target string) (string, error) {
	if sm == nil || len(sm.States) == 0 {
		return "", fmt.Errorf("detect: no states: %w", ErrUndetectable)
	}
	concurrent, sequential, err := checkOrder(sm, target)
	if err != nil {
		return "", fmt.Errorf("detect: %w", err)
	}
	return p.detect(WithPlanning(ctx), sm, concurrent, sequential, target)
}

// checkOrder splits sm's states into concurrent and sequential checks, each
// nearest to target first.
func checkOrder(sm *plan.StateMap, target string) (concurrent, sequential []*plan.State, err error) {
	var dist map[string]float64
	if _, ok := sm.States[target]; ok {
		if dist, err = distancesTo(sm, target); err != nil {
			return nil, nil, err
		}
	}
	distOf := func(name string) float64 {
		if d, ok := dist[name]; ok {
			return d
		}
		return math.Inf(1)
	}
	for _, st := range sm.States {
		if st.Sequential {
			sequential = append(sequential, st)
		} else {
			concurrent = append(concurrent, st)
		}
	}
	byNearness := func(a, b *plan.State) int {
		return cmp.Or(cmp.Compare(distOf(a.Name), distOf(b.Name)), cmp.Compare(b.Priority, a.Priority), cmp.Compare(a.Name, b.Name))
	}
	slices.SortFunc(concurrent, byNearness)
	slices.SortFunc(sequential, byNearness)
	return concurrent, sequential, nil
}

func (p *Planner) detect(ctx context.Context, sm *plan.StateMap, concurrent, sequential []*plan.State, target string) (string, error) {
	found, failed := p.checkConcurrently(ctx, concurrent)
	for _, st := range sequential {
		if found != "" || ctx.Err() != nil {
			break
		}
		holds, err := p.check(ctx, st)
		if err != nil && ctx.Err() == nil {
			failed = append(failed, p.checkFailed(st, err))
		} else if err == nil && holds {
			found = st.Name
		}
	}
	if found == "" && ctx.Err() != nil {
		return "", ctx.Err()
	}
	p.observe(Event{Kind: EventDetect, From: found, To: target, Message: detectMessage(found, len(sm.States))})
	if found == "" {
		return "", &UndetectableError{States: len(sm.States), Failed: failed}
	}
	return found, nil
}

// checkFailed records a check's error and reports it as it happens.
func (p *Planner) checkFailed(st *plan.State, err error) *CheckError {
	ce := &CheckError{State: st.Name, Check: st.Check, Err: err}
	p.observe(Event{Kind: EventCheckFailed, To: st.Name, Task: st.Check, Message: ce.Error()})
	return ce
}

func detectMessage(found string, n int) string {
	if found == "" {
		return "none of " + strconv.Itoa(n) + " states holds"
	}
	return "current state " + strconv.Quote(found)
}

// checkConcurrently runs the states' checks, at most CheckParallelism at a
// time, starting in the given order; the first that holds wins and the rest
// are cancelled. It returns once every check it started has returned, with
// the checks that errored in the given order.
func (p *Planner) checkConcurrently(ctx context.Context, states []*plan.State) (string, []*CheckError) {
	if len(states) == 0 {
		return "", nil
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		i     int
		holds bool
		err   error
	}
	results := make(chan result, len(states))
	limit := p.CheckParallelism
	if limit <= 0 || limit > len(states) {
		limit = len(states)
	}
	var (
		found   string
		failed  = make([]*CheckError, len(states)) // by position, so the order does not depend on timing
		next    int
		running int
	)
	for {
		for found == "" && next < len(states) && running < limit && cctx.Err() == nil {
			i := next
			next++
			running++
			go func() {
				holds, err := p.check(cctx, states[i])
				results <- result{i, holds, err}
			}()
		}
		if running == 0 {
			var errs []*CheckError
			for _, f := range failed {
				if f != nil {
					errs = append(errs, f)
				}
			}
			return found, errs
		}
		r := <-results
		running--
		switch {
		case found != "":
		case r.err == nil && r.holds:
			found = states[r.i].Name
			cancel()
		case r.err != nil && ctx.Err() == nil:
			failed[r.i] = p.checkFailed(states[r.i], r.err)
		}
	}
}
