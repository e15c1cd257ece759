package interrupt

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/aura-dev/aura/internal/plan"
)

// Request is what an interrupt asks of the task it interrupts.
type Request struct {
	// Rule is the rule that fired, "<plan>/<name>"; Target what it fired
	// on ("device:emulator-5554", "plan", "global").
	Rule, Target string
	// Handler is the task run in the interrupted task's place, on its
	// instance, "plan/task"; Inputs are its inputs.
	Handler string
	Inputs  map[string]any
	// AbortStep cancels the running step rather than waiting for it.
	AbortStep bool
	// Preempted is what becomes of the task once the handler succeeded:
	// plan.PreemptedResume, PreemptedRequeue or PreemptedCancel.
	Preempted string
}

// ErrNotInterruptible is what Manager.Interrupt's error wraps when the task
// could not be interrupted (it ended, or another interrupt is under way).
var ErrNotInterruptible = errors.New("task cannot be interrupted now")

// Manager is what the poller needs of the ExecutionManager.
type Manager interface {
	// Holders lists the running tasks and the instances they hold.
	Holders() []Holder
	// Check runs checkTask under the resources taskID holds and reports
	// whether its result is truthy.
	Check(ctx context.Context, taskID, checkTask string) (bool, error)
	// Interrupt pauses taskID, runs the handler in its place and then
	// resumes, requeues or cancels it; it returns once that is done. An
	// error for a task that cannot be interrupted now wraps
	// ErrNotInterruptible.
	Interrupt(ctx context.Context, taskID string, req Request) error
}

// Params build a Runner. Manager is required.
type Params struct {
	Manager Manager
	Logger  *slog.Logger // optional
	Metrics *Metrics     // optional
	Now     func() time.Time
	// MaxChecks bounds the checks running at once; default 64. A check
	// that finds no room waits for one, and its target is not checked
	// again until it ran.
	MaxChecks int
}

// Slack is how early a check due soon is started with one due now (a
// tenth of its rule's interval at most), so that checks falling close
// together share a wake-up.
const Slack = 100 * time.Millisecond

// maxRefresh bounds how long the poller goes without asking what runs,
// whatever its rules' intervals.
const maxRefresh = time.Second

// Runner polls the rules' checks while what they watch is held, and
// interrupts the holders when a check fires. Start it once the
// ExecutionManager runs; Shutdown before the manager drains.
type Runner struct {
	// Immutable after New.
	p     Params
	log   *slog.Logger
	now   func() time.Time
	m     *Metrics
	kick  chan struct{}
	stop  chan struct{}
	sem   chan struct{}
	wg    sync.WaitGroup
	base  context.Context
	abort context.CancelFunc

	mu    sync.Mutex // guards board and wakeAt
	board *Board
	// wakeAt is when the loop means to look next: a check that ends with
	// its next due before then wakes it, any other need not.
	wakeAt time.Time
}

// New returns a Runner; nothing runs until Start.
func New(p Params) *Runner {
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	if p.Metrics == nil {
		p.Metrics = NewMetrics(nil)
	}
	if p.MaxChecks <= 0 {
		p.MaxChecks = 64
	}
	base, abort := context.WithCancel(context.Background())
	return &Runner{p: p, log: p.Logger, now: p.Now, m: p.Metrics, kick: make(chan struct{}, 1), stop: make(chan struct{}),
		sem: make(chan struct{}, p.MaxChecks), base: base, abort: abort, board: NewBoard()}
}

// Start loads the rules of set and starts polling.
func (r *Runner) Start(set *plan.Set) {
	r.SetPlans(set)
	r.wg.Add(1)
	go r.loop()
}

// SetPlans takes a (re)loaded plan set: rules that stay keep their
// figures and cooldowns; new ones start polling at once.
func (r *Runner) SetPlans(set *plan.Set) {
	rules := set.Interrupts()
	r.mu.Lock()
	r.board.Load(rules)
	r.mu.Unlock()
	r.wake()
}

// Shutdown stops polling: checks under way are cancelled, interrupts
// already asked for are the manager's to finish.
func (r *Runner) Shutdown() {
	close(r.stop)
	r.abort()
	r.wg.Wait()
}

func (r *Runner) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// loop asks what runs and starts the due checks, then sleeps until the
// next is due or it is time to look at what runs again (a task that
// starts holding an instance).
func (r *Runner) loop() {
	defer r.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var lastLook time.Time
	for {
		r.mu.Lock()
		n, refresh := r.board.Len(), min(r.board.MinEvery(), maxRefresh)
		next, due := r.board.NextDue()
		r.mu.Unlock()
		now := r.now()
		wait := time.Hour
		if n > 0 {
			look := lastLook.Add(refresh)
			if due && next.Before(look) {
				look = next
			}
			if !look.After(now) {
				r.poll(now)
				lastLook = now
				continue
			}
			wait = look.Sub(now)
		}
		r.mu.Lock()
		r.wakeAt = now.Add(wait)
		r.mu.Unlock()
		timer.Reset(wait)
		select {
		case <-r.stop:
			return
		case <-r.kick:
			if !timer.Stop() {
				<-timer.C
			}
		case <-timer.C:
		}
	}
}

// poll asks the manager what runs and starts the checks due.
func (r *Runner) poll(now time.Time) {
	holders := r.p.Manager.Holders()
	r.mu.Lock()
	due := r.board.Observe(holders, now, Slack)
	r.mu.Unlock()
	for _, d := range due {
		r.wg.Add(1)
		go r.check(d)
	}
}

// check runs one due check and carries out its fire.
func (r *Runner) check(d Due) {
	defer r.wg.Done()
	select {
	case r.sem <- struct{}{}:
	case <-r.stop:
		r.done(d, false, context.Canceled, true)
		return
	}
	truthy, err := r.p.Manager.Check(r.base, d.TaskID, d.Rule.Check)
	<-r.sem
	gone := false
	if err != nil {
		// A holder that ended while its check ran says nothing about the
		// check; nor does a shutdown.
		gone = r.base.Err() != nil || !r.holds(d)
	}
	f, early := r.done(d, truthy, err, gone)
	switch {
	case err != nil && !gone:
		r.log.Warn("interrupt check failed; the rule does not fire on it", "rule", d.Rule.ID, "target", d.Target,
			"check", d.Rule.Check, "task_id", d.TaskID, "err", err)
	case err != nil:
		r.log.Debug("interrupt check ended with its holder", "rule", d.Rule.ID, "target", d.Target, "err", err)
	}
	if early {
		r.wake()
	}
	if f != nil {
		r.fire(f)
	}
}

// done records a check's result on the board and in the metrics; early
// reports the target's next check is due before the loop means to look.
func (r *Runner) done(d Due, truthy bool, err error, gone bool) (f *Fire, early bool) {
	r.mu.Lock()
	f, next := r.board.Checked(d, truthy, err, gone, r.now())
	early = !next.IsZero() && next.Before(r.wakeAt)
	r.mu.Unlock()
	if !gone || err == nil {
		r.m.checks.WithLabelValues(d.Rule.ID).Inc()
		if err != nil {
			r.m.checkErrs.WithLabelValues(d.Rule.ID).Inc()
		}
	}
	return f, early
}

// holds reports whether d's holder still holds d's target.
func (r *Runner) holds(d Due) bool {
	for _, h := range r.p.Manager.Holders() {
		if h.TaskID == d.TaskID {
			return true
		}
	}
	return false
}

// fire interrupts the holders of the fired target, each on its own
// goroutine: an interrupt lasts until its handler ran and its policy was
// applied, and one task that ended meanwhile does not hold up the others.
func (r *Runner) fire(f *Fire) {
	r.m.fires.WithLabelValues(f.Rule.ID).Inc()
	rule := f.Rule
	r.log.Info("interrupt fired", "rule", rule.ID, "target", f.Target, "task_ids", f.TaskIDs, "handler", rule.Handler, "preempted", rule.Preempted)
	req := Request{Rule: rule.ID, Target: f.Target, Handler: rule.Handler, Inputs: rule.Inputs, AbortStep: rule.AbortStep, Preempted: rule.Preempted}
	var wg sync.WaitGroup
	for _, id := range f.TaskIDs {
		wg.Go(func() {
			err := r.p.Manager.Interrupt(r.base, id, req)
			switch {
			case err == nil:
			case r.base.Err() != nil:
				// Shutting down: the manager's drain settles the task.
			case errors.Is(err, ErrNotInterruptible):
				r.log.Info("interrupt found the task no longer interruptible", "rule", rule.ID, "target", f.Target, "task_id", id, "err", err)
			default:
				r.log.Warn("interrupt failed", "rule", rule.ID, "target", f.Target, "task_id", id, "err", err)
			}
		})
	}
	wg.Wait()
	r.mu.Lock()
	r.board.Settled(f, r.now())
	r.mu.Unlock()
	r.wake()
}

// List describes the rules (of planName, or all) for the listing.
func (r *Runner) List(planName string) []RuleView {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.board.View(planName, r.now())
}
