package schedule

import (
	"container/heap"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"
	"time"

	"github.com/aura-dev/aura/internal/plan"
	"github.com/aura-dev/aura/internal/store"
)

// Skip reasons, as schedule.skipped events and the skips metric give them.
const (
	ReasonMissed     = "missed"      // older than catch_up when the scheduler got to it
	ReasonCoalesced  = "coalesced"   // a later missed tick fired instead (skip, buffer_one, cancel_previous)
	ReasonOverlap    = "overlap"     // the previous fire still runs (skip)
	ReasonBufferFull = "buffer_full" // the previous fire still runs and one fire already waits (buffer_one)
	ReasonSubmit     = "submit_failed"
)

// lateGrace is how late a tick may fire with catch_up unset: a busy or
// briefly stopped scheduler still fires the tick it was about to.
const lateGrace = time.Minute

// maxMissedEvents is the most missed ticks recorded one event each; more
// are recorded as one event for the range, so a clock jump or a long
// downtime never floods the log.
const maxMissedEvents = 10

// Action is one thing a Book decided: fire a tick, or record it skipped.
type Action struct {
	Schedule *plan.Schedule
	Tick     time.Time
	Fire     bool
	// Reason says why a tick is skipped; Skipped is how many ticks this
	// action stands for (a range of missed ticks, from Tick to Until).
	Reason  string
	Skipped int
	Until   time.Time
	// Cancel are this schedule's running tasks to cancel before firing
	// (cancel_previous).
	Cancel []string
	// Due is when the tick was due (tick plus jitter), for lateness.
	Due time.Time
	// Trigger is the task whose end fires an after trigger.
	Trigger map[string]any
	// Key overrides the tick in the idempotency key (after triggers: the
	// ended task's ID).
	Key string
}

// Entry is the Book's state of one schedule.
type Entry struct {
	Sched  *plan.Schedule
	Timing Timing
	// Last is the last tick fired or recorded skipped; ticks after it are
	// still to come. LastFire and LastTaskID are the last fire.
	Last, LastFire time.Time
	LastTaskID     string
	// PausedOverride is the API's pause state (nil: the file decides).
	PausedOverride *bool
	// Next is the next tick (zero for an after trigger or without one).
	Next time.Time
	due  time.Time // Next plus its jitter

	running map[string]bool // tasks this schedule fired that have not ended
	// buffered is a fire waiting for the running task to end (buffer_one).
	// It lives in memory only: after a restart the tick is a missed one,
	// which catch-up fires again.
	buffered *Action
	// ended are tasks of this schedule that ended before their fire was
	// recorded (a task faster than its own bookkeeping); a few at most.
	ended map[string]bool
	index int // in the heap; -1 when not in it
}

// Paused reports whether the entry fires no ticks.
func (e *Entry) Paused() bool {
	if e.PausedOverride != nil {
		return *e.PausedOverride
	}
	return e.Sched.Paused
}

// Running returns the schedule's tasks that have not ended, sorted.
func (e *Entry) Running() []string {
	out := make([]string, 0, len(e.running))
	for id := range e.running {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// State is what must outlive a restart.
func (e *Entry) State() store.ScheduleState {
	return store.ScheduleState{ID: e.Sched.ID, LastTick: e.Last, LastFire: e.LastFire, LastTaskID: e.LastTaskID, Paused: e.PausedOverride}
}

// Book holds every schedule's entry and decides what fires when. It does
// no I/O and keeps no clock: every method is told the time. Not safe for
// concurrent use.
type Book struct {
	entries map[string]*Entry
	after   map[string][]*Entry // after triggers by the task they follow
	queue   dueQueue            // timed, unpaused entries by due time
	defLoc  *time.Location
	running int // the entries' running tasks, all together
}

// NewBook returns an empty book; defLoc is the zone of cron schedules
// that name none (nil: UTC).
func NewBook(defLoc *time.Location) *Book {
	if defLoc == nil {
		defLoc = time.UTC
	}
	return &Book{entries: map[string]*Entry{}, after: map[string][]*Entry{}, defLoc: defLoc}
}

// Entry returns a schedule's entry.
func (b *Book) Entry(id string) (*Entry, bool) {
	e, ok := b.entries[id]
	return e, ok
}

// Entries returns every entry, by ID.
func (b *Book) Entries() []*Entry {
	out := make([]*Entry, 0, len(b.entries))
	for _, e := range b.entries {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Sched.ID < out[j].Sched.ID })
	return out
}

// Len is the number of schedules.
func (b *Book) Len() int { return len(b.entries) }

// Load sets the schedules: at start with the stored states, and on every
// plan reload (states nil). An entry already in the book keeps where it
// was (its last tick, running tasks, buffered fire), so a reload fires no
// tick twice; a changed timing goes on from the later of its last tick
// and now. A new schedule starts from now: it does not catch up ticks
// from before it existed.
func (b *Book) Load(scheds []*plan.Schedule, states map[string]store.ScheduleState, now time.Time) {
	old := b.entries
	b.entries = make(map[string]*Entry, len(scheds))
	b.after = map[string][]*Entry{}
	b.queue = b.queue[:0]
	b.running = 0
	for _, sc := range scheds {
		tm := Timing{Cron: sc.Cron, Every: sc.Every, Loc: sc.Location}
		if tm.Loc == nil {
			tm.Loc = b.defLoc
		}
		e, had := old[sc.ID]
		switch {
		case had:
			changed := e.Timing != tm
			e.Sched, e.Timing = sc, tm
			if changed && e.Last.Before(now) {
				e.Last = now
			}
		default:
			e = &Entry{Sched: sc, Timing: tm, Last: now, running: map[string]bool{}}
			if st, ok := states[sc.ID]; ok {
				if !st.LastTick.IsZero() {
					e.Last = st.LastTick
				}
				e.LastFire, e.LastTaskID, e.PausedOverride = st.LastFire, st.LastTaskID, st.Paused
			}
		}
		e.index = -1
		b.running += len(e.running)
		b.entries[sc.ID] = e
		if sc.After != nil {
			b.after[sc.After.Task] = append(b.after[sc.After.Task], e)
			e.Next, e.due = time.Time{}, time.Time{}
			continue
		}
		b.schedule(e, e.Last)
	}
	heap.Init(&b.queue)
}

// schedule sets e's next tick after t and queues it (unless paused).
func (b *Book) schedule(e *Entry, t time.Time) {
	next, err := e.Timing.Next(t)
	if err != nil {
		next = time.Time{}
	}
	b.scheduleAt(e, next)
}

// scheduleAt queues e for its next tick, next (zero: none).
func (b *Book) scheduleAt(e *Entry, next time.Time) {
	if e.index >= 0 {
		heap.Remove(&b.queue, e.index)
	}
	if next.IsZero() {
		e.Next, e.due = time.Time{}, time.Time{}
		return
	}
	e.Next, e.due = next, next.Add(jitter(e.Sched, next))
	if !e.Paused() {
		heap.Push(&b.queue, e)
	}
}

// jitter is the delay of a tick: the same for that tick on every start,
// spread over [0, Jitter) by the schedule's name and the tick.
func jitter(sc *plan.Schedule, tick time.Time) time.Duration {
	if sc.Jitter <= 0 {
		return 0
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%s@%d", sc.ID, tick.UnixNano())
	return time.Duration(h.Sum64() % uint64(sc.Jitter))
}

// Following reports whether anything waits for a task to end: an after
// trigger, or a fire that has not ended.
func (b *Book) Following() bool {
	return len(b.after) > 0 || b.running > 0
}

// Follows reports whether an after trigger follows task.
func (b *Book) Follows(task string) bool { return len(b.after[task]) > 0 }

// NextWake returns when the earliest queued tick is due.
func (b *Book) NextWake() (time.Time, bool) {
	if len(b.queue) == 0 {
		return time.Time{}, false
	}
	return b.queue[0].due, true
}

// Due returns what to do about every tick due at now, oldest schedule
// first, and moves each entry past them. Ticks missed by more than the
// catch-up window are skipped (ReasonMissed); of the missed ticks inside
// it, skip, buffer_one and cancel_previous fire only the latest
// (ReasonCoalesced), allow fires them all; each fire then meets the
// overlap policy.
func (b *Book) Due(now time.Time) []Action {
	var out []Action
	for len(b.queue) > 0 && !b.queue[0].due.After(now) {
		e := heap.Pop(&b.queue).(*Entry)
		actions, next := b.dueTicks(e, now)
		out = append(out, actions...)
		b.scheduleAt(e, next)
	}
	return out
}

// dueTicks decides e's ticks due at now, moves e.Last past them and
// returns the tick after them.
func (b *Book) dueTicks(e *Entry, now time.Time) (_ []Action, next time.Time) {
	sc := e.Sched
	window := max(sc.CatchUp, lateGrace)
	edge := now.Add(-window) // ticks at or before edge are missed
	var out []Action
	first := e.Next
	if !first.After(edge) {
		// Ticks in [first, edge]: counted, not fired.
		inWindow, err := e.Timing.Next(edge)
		if err != nil {
			inWindow = now.Add(time.Nanosecond)
		}
		out = append(out, b.missed(e, first, inWindow)...)
		first = inWindow
	}
	var fires []time.Time
	next = first
	for !next.IsZero() && !next.Add(jitter(sc, next)).After(now) {
		fires = append(fires, next)
		n, err := e.Timing.Next(next)
		if err != nil {
			n = time.Time{}
		}
		next = n
	}
	if len(fires) > 1 && sc.Overlap != plan.OverlapAllow {
		for _, t := range fires[:len(fires)-1] {
			out = append(out, Action{Schedule: sc, Tick: t, Reason: ReasonCoalesced, Skipped: 1})
		}
		fires = fires[len(fires)-1:]
	}
	for _, t := range fires {
		if a, buffered := b.overlap(e, Action{Schedule: sc, Tick: t, Due: t.Add(jitter(sc, t))}); !buffered {
			out = append(out, a)
		}
	}
	switch {
	case len(fires) > 0:
		e.Last = fires[len(fires)-1]
	case len(out) > 0:
		last := out[len(out)-1]
		e.Last = last.Tick
		if !last.Until.IsZero() {
			e.Last = last.Until
		}
	}
	return out, next
}

// missed records the ticks in [from, until) skipped: one action each, or
// one for the whole range when there are many.
func (b *Book) missed(e *Entry, from, until time.Time) []Action {
	var ts []time.Time
	for t := from; t.Before(until) && len(ts) <= maxMissedEvents; {
		ts = append(ts, t)
		next, err := e.Timing.Next(t)
		if err != nil {
			break
		}
		t = next
	}
	if len(ts) <= maxMissedEvents {
		out := make([]Action, len(ts))
		for i, t := range ts {
			out[i] = Action{Schedule: e.Sched, Tick: t, Reason: ReasonMissed, Skipped: 1}
		}
		return out
	}
	last, n := lastBefore(e.Timing, from, until)
	return []Action{{Schedule: e.Sched, Tick: from, Until: last, Reason: ReasonMissed, Skipped: n}}
}

// lastBefore returns the last tick before until, counting from from (an
// interval is counted by arithmetic; a cron up to a bound, past which the
// count is a lower bound).
func lastBefore(tm Timing, from, until time.Time) (time.Time, int) {
	if tm.Every > 0 {
		n := int(until.Sub(from)/tm.Every) + 1
		last := from.Add(time.Duration(n-1) * tm.Every)
		if !last.Before(until) {
			n--
			last = last.Add(-tm.Every)
		}
		return last, n
	}
	last, n := from, 1
	for n < 100000 {
		next, err := tm.Next(last)
		if err != nil || !next.Before(until) {
			break
		}
		last, n = next, n+1
	}
	return last, n
}

// overlap applies the schedule's overlap policy to fire a: it fires, is
// skipped (Reason set), or is buffered to fire when the running task ends.
func (b *Book) overlap(e *Entry, a Action) (_ Action, buffered bool) {
	if len(e.running) == 0 {
		a.Fire = true
		return a, false
	}
	switch e.Sched.Overlap {
	case plan.OverlapAllow:
		a.Fire = true
	case plan.OverlapCancelPrevious:
		a.Fire, a.Cancel = true, e.Running()
	case plan.OverlapBufferOne:
		if e.buffered == nil {
			a.Fire = true
			e.buffered = &a
			return a, true
		}
		a.Reason, a.Skipped = ReasonBufferFull, 1
	default:
		a.Reason, a.Skipped = ReasonOverlap, 1
	}
	return a, false
}

// Fired records a fire of e's tick that submitted taskID (running until
// Ended says otherwise).
func (b *Book) Fired(id string, tick time.Time, taskID string, running bool) {
	e, ok := b.entries[id]
	if !ok {
		return
	}
	if tick.After(e.LastFire) || e.LastFire.IsZero() {
		e.LastFire, e.LastTaskID = tick, taskID
	}
	if e.ended[taskID] {
		delete(e.ended, taskID)
		return
	}
	if running && !e.running[taskID] {
		e.running[taskID] = true
		b.running++
	}
}

// Ended records that one of a schedule's tasks ended; it returns the fire
// that was waiting for it (buffer_one), if any.
func (b *Book) Ended(id, taskID string) []Action {
	e, ok := b.entries[id]
	if !ok {
		return nil
	}
	if !e.running[taskID] {
		if e.ended == nil || len(e.ended) > 64 {
			e.ended = map[string]bool{}
		}
		e.ended[taskID] = true
		return nil
	}
	delete(e.running, taskID)
	b.running--
	if len(e.running) > 0 || e.buffered == nil {
		return nil
	}
	a := *e.buffered
	e.buffered = nil
	return []Action{a}
}

// Finished returns the fires of the after triggers that follow task when
// it ends with status (lower-case name), at now; trigger is what their
// inputs see as trigger.task.
func (b *Book) Finished(taskID, task, status string, trigger map[string]any, now time.Time) []Action {
	var out []Action
	for _, e := range b.after[task] {
		if e.Paused() || !contains(e.Sched.After.Statuses, status) {
			continue
		}
		if a, buffered := b.overlap(e, Action{Schedule: e.Sched, Tick: now.UTC(), Trigger: trigger, Key: taskID}); !buffered {
			out = append(out, a)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// Trigger returns a fire of schedule id now (TriggerSchedule): a tick at
// now, under the overlap policy, whatever the timing and pause state.
// buffered says it waits for the running task (buffer_one).
func (b *Book) Trigger(id string, now time.Time) (a Action, buffered, ok bool) {
	e, ok := b.entries[id]
	if !ok {
		return Action{}, false, false
	}
	// A tick of its own (to the nanosecond): not deduplicated against a
	// timed tick of the same second.
	tick := now.UTC()
	a, buffered = b.overlap(e, Action{Schedule: e.Sched, Tick: tick, Due: tick})
	return a, buffered, true
}

// SetPaused sets the API's pause state. Resuming goes on from now: the
// ticks that passed while paused are not caught up.
func (b *Book) SetPaused(id string, paused bool, now time.Time) (*Entry, bool) {
	return b.SetPausedOverride(id, &paused, now)
}

// SetPausedOverride sets the API's pause state; nil gives the decision
// back to the file.
func (b *Book) SetPausedOverride(id string, paused *bool, now time.Time) (*Entry, bool) {
	e, ok := b.entries[id]
	if !ok {
		return nil, false
	}
	e.PausedOverride = paused
	if e.Sched.After != nil {
		return e, true
	}
	if !e.Paused() && e.Last.Before(now) {
		e.Last = now
	}
	b.schedule(e, e.Last)
	return e, true
}

// Ticks returns e's ticks in [from, to), at most limit of them; more
// gives an error (BackfillSchedule's bound).
func (e *Entry) Ticks(from, to time.Time, limit int) ([]time.Time, error) {
	var out []time.Time
	t := from.Add(-time.Nanosecond)
	for {
		next, err := e.Timing.Next(t)
		if err != nil {
			return nil, err
		}
		if !next.Before(to) {
			return out, nil
		}
		if len(out) == limit {
			return nil, fmt.Errorf("more than %d ticks between %s and %s; backfill a shorter range", limit, from.Format(time.RFC3339), to.Format(time.RFC3339))
		}
		out = append(out, next)
		t = next
	}
}

// NextTicks returns e's next n ticks (none for an after trigger or a
// paused schedule).
func (e *Entry) NextTicks(n int) []time.Time {
	if e.Sched.After != nil || e.Paused() || e.Next.IsZero() {
		return nil
	}
	out := []time.Time{e.Next}
	for len(out) < n {
		next, err := e.Timing.Next(out[len(out)-1])
		if err != nil {
			break
		}
		out = append(out, next)
	}
	return out
}

// dueQueue is a min-heap of entries by due time.
type dueQueue []*Entry

func (q dueQueue) Len() int { return len(q) }
func (q dueQueue) Less(i, j int) bool {
	if !q[i].due.Equal(q[j].due) {
		return q[i].due.Before(q[j].due)
	}
	return q[i].Sched.ID < q[j].Sched.ID
}
func (q dueQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}
func (q *dueQueue) Push(x any) {
	e := x.(*Entry)
	e.index = len(*q)
	*q = append(*q, e)
}
func (q *dueQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.index = -1
	*q = old[:len(old)-1]
	return e
}
