package schedule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/aura-dev/aura/internal/execmgr"
	"github.com/aura-dev/aura/internal/plan"
	"github.com/aura-dev/aura/internal/store"
	"github.com/aura-dev/aura/internal/template"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// Principal is who the scheduler submits as: idempotency keys are scoped
// by principal and task, so every fire of a tick, whoever asked for it
// (the timer, TriggerSchedule, BackfillSchedule), finds the others.
const Principal = "aura:scheduler"

// Label is the label every fire carries: schedule=<plan>/<name>.
const Label = "schedule"

// Event types the scheduler writes to the event log.
const (
	EventFired   = "schedule.fired"
	EventSkipped = "schedule.skipped"
)

// Tasks is what the scheduler needs of the ExecutionManager.
type Tasks interface {
	SubmitAs(ctx context.Context, principal string, req *aurav1.SubmitRequest) (*aurav1.SubmitResponse, error)
	Cancel(ctx context.Context, id, reason string) (*aurav1.Task, error)
	Get(ctx context.Context, id string) (*aurav1.Task, error)
	List(ctx context.Context, req *aurav1.ListTasksRequest) (*aurav1.ListTasksResponse, error)
}

// EventLog is what the scheduler needs of the store's event log.
type EventLog interface {
	store.EventLog
	Write(ctx context.Context, b store.Batch) *store.Pending
}

// Params build a Runner. Everything is required unless marked optional.
type Params struct {
	Tasks  Tasks
	Log    EventLog
	States store.ScheduleStore
	// DefaultZone is the zone of cron schedules that name none (aurad
	// --timezone); nil is UTC.
	DefaultZone *time.Location
	Logger      *slog.Logger // optional
	Metrics     *Metrics     // optional
	Now         func() time.Time
	// PollEvery is how often the event log is read for ended tasks;
	// default 250ms.
	PollEvery time.Duration
}

// maxBackfill bounds the ticks one BackfillSchedule fires.
const maxBackfill = 1000

// Runner fires the schedules of the current plans. Start it once the
// ExecutionManager runs; Shutdown before the manager drains.
type Runner struct {
	// Immutable after New.
	p     Params
	log   *slog.Logger
	now   func() time.Time
	m     *Metrics
	kick  chan struct{}
	stop  chan struct{}
	wg    sync.WaitGroup
	base  context.Context
	abort context.CancelFunc

	// fireMu orders fires: the timer, the event follower and the API
	// decide and submit one batch at a time, so an overlap decision always
	// sees the fires before it.
	fireMu sync.Mutex

	mu   sync.Mutex // guards book and set
	book *Book
	set  *plan.Set // the plans the book was loaded from

	// shared is States when several nodes share them (a cluster): then
	// ticks fire only while Lead runs, and every fire is claimed across
	// the nodes first. Nil: this Runner alone fires. Immutable after New.
	shared SharedStates
	// active is set while Lead runs (and fireMu is held to change it).
	active atomic.Bool

	// Accessed only by the follower goroutine (and Start before it runs).
	cursor uint64
}

// New returns a Runner; nothing runs until Start.
func New(p Params) *Runner {
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	if p.PollEvery <= 0 {
		p.PollEvery = 250 * time.Millisecond
	}
	if p.Metrics == nil {
		p.Metrics = NewMetrics(nil)
	}
	base, abort := context.WithCancel(context.Background())
	r := &Runner{p: p, log: p.Logger, now: p.Now, m: p.Metrics, kick: make(chan struct{}, 1), stop: make(chan struct{}),
		base: base, abort: abort, book: NewBook(p.DefaultZone)}
	r.shared, _ = p.States.(SharedStates)
	return r
}

// Start loads the schedules of set with what the store kept of them, and
// starts firing: first the ticks missed while aurad was down (per
// catch_up), then each tick as it comes.
func (r *Runner) Start(ctx context.Context, set *plan.Set) error {
	if err := r.load(ctx, set); err != nil {
		return err
	}
	r.wg.Add(2)
	go r.tickLoop()
	go r.followLoop()
	if r.shared != nil {
		r.wg.Add(1)
		go r.applyLoop()
	}
	return nil
}

// load reads what the store kept and fills the book.
func (r *Runner) load(ctx context.Context, set *plan.Set) error {
	states, err := r.p.States.ScheduleStates(ctx)
	if err != nil {
		return fmt.Errorf("reading the schedules' state: %w", err)
	}
	cursor, ok, err := r.p.States.ScheduleCursor(ctx)
	if err != nil {
		return fmt.Errorf("reading the schedules' state: %w", err)
	}
	if !ok {
		// The first start follows the log from here: tasks that ended
		// before there were triggers fire none.
		if _, cursor, err = r.p.Log.EventBounds(ctx); err != nil {
			return fmt.Errorf("reading the event log: %w", err)
		}
		if err := r.p.States.SetScheduleCursor(ctx, cursor); err != nil {
			return err
		}
	}
	r.cursor = cursor
	return r.loadBook(ctx, set, states)
}

// loadBook fills a new book with the schedules of set and their stored
// states, and tells it which of their fires still run.
func (r *Runner) loadBook(ctx context.Context, set *plan.Set, states map[string]store.ScheduleState) error {
	r.mu.Lock()
	r.set = set
	r.book = NewBook(r.p.DefaultZone)
	r.book.Load(set.Schedules(), states, r.now())
	// A new schedule starts from now: that is kept at once, so that a
	// restart before its first tick still catches that tick up.
	var fresh []store.ScheduleState
	for _, e := range r.book.Entries() {
		if _, ok := states[e.Sched.ID]; !ok {
			fresh = append(fresh, e.State())
		}
	}
	r.mu.Unlock()
	if err := r.p.States.SaveScheduleStates(ctx, fresh); err != nil {
		return err
	}
	return r.seedRunning(ctx)
}

// seedRunning tells the book which tasks fired before this start are
// still queued or running, for the overlap policies.
func (r *Runner) seedRunning(ctx context.Context) error {
	for _, st := range []aurav1.TaskStatus{aurav1.TaskStatus_TASK_STATUS_QUEUED, aurav1.TaskStatus_TASK_STATUS_PLANNING, aurav1.TaskStatus_TASK_STATUS_RUNNING} {
		token := ""
		for {
			resp, err := r.p.Tasks.List(ctx, &aurav1.ListTasksRequest{Status: st, LabelSelector: Label, PageSize: 1000, PageToken: token})
			if err != nil {
				return fmt.Errorf("listing the tasks schedules fired: %w", err)
			}
			r.mu.Lock()
			for _, t := range resp.Tasks {
				id := t.GetLabels()[Label]
				if e, ok := r.book.Entry(id); ok && e.LastTaskID == t.Id {
					r.book.Fired(id, e.LastFire, t.Id, true)
				} else {
					r.book.Fired(id, time.Time{}, t.Id, true)
				}
			}
			r.mu.Unlock()
			if token = resp.NextPageToken; token == "" {
				break
			}
		}
	}
	return nil
}

// SetPlans takes a reloaded plan set: changed schedules go on from their
// last tick, so the current tick never fires twice.
func (r *Runner) SetPlans(set *plan.Set) {
	r.fireMu.Lock()
	defer r.fireMu.Unlock()
	r.mu.Lock()
	r.set = set
	r.book.Load(set.Schedules(), nil, r.now())
	states := make([]store.ScheduleState, 0, r.book.Len())
	for _, e := range r.book.Entries() {
		states = append(states, e.State())
	}
	r.mu.Unlock()
	if err := r.p.States.SaveScheduleStates(r.base, states); err != nil {
		r.log.Warn("schedules: saving the reloaded schedules' state", "err", err)
	}
	r.wake()
}

// Shutdown stops firing and waits for a fire under way to be recorded;
// one that takes longer than shutdownWait is cancelled (its tick fires
// again at the next start, deduplicated by its key if it got through).
func (r *Runner) Shutdown() {
	close(r.stop)
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(shutdownWait):
		r.abort()
		<-done
	}
	r.abort()
}

const shutdownWait = 5 * time.Second

func (r *Runner) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// tickLoop sleeps until the next tick is due and fires what is due.
func (r *Runner) tickLoop() {
	defer r.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		r.fireDue(r.base)
		r.mu.Lock()
		wake, ok := r.book.NextWake()
		r.mu.Unlock()
		wait := time.Hour
		if ok && r.firing() {
			// A clock that jumps is read again within a minute at most.
			wait = min(max(wake.Sub(r.now()), 0), time.Minute)
		}
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

// followLoop reads task.finished events from the durable cursor: the ends
// of the tasks the schedules fired (overlap) and the tasks after triggers
// follow. Reading the log rather than hearing a callback is what makes an
// end that happened while aurad restarted fire its trigger, once.
func (r *Runner) followLoop() {
	defer r.wg.Done()
	tick := time.NewTicker(r.p.PollEvery)
	defer tick.Stop()
	var lastSkip time.Time
	for {
		var err error
		if r.following() {
			err = r.follow(r.base)
		} else if time.Since(lastSkip) > idleSkipEvery {
			lastSkip = time.Now()
			err = r.skipIdle(r.base)
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			r.log.Warn("schedules: reading the event log", "err", err, "after_sequence", r.cursor)
		}
		select {
		case <-r.stop:
			return
		case <-tick.C:
		}
	}
}

// fireDue fires (and records skipped) every tick due now.
func (r *Runner) fireDue(ctx context.Context) []fired {
	r.fireMu.Lock()
	defer r.fireMu.Unlock()
	if !r.firing() {
		return nil
	}
	r.mu.Lock()
	actions := r.book.Due(r.now())
	r.mu.Unlock()
	return r.carryOut(ctx, actions, "tick")
}

// idleSkipEvery is how often the cursor is moved past the events nobody
// waited for.
const idleSkipEvery = 10 * time.Second

func (r *Runner) following() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.book.Following()
}

// skipIdle moves the cursor to the end of the log while nothing waits
// for a task to end, so that it is never far behind. It holds fireMu: a
// fire after it has its end after the new cursor.
func (r *Runner) skipIdle(ctx context.Context) error {
	r.fireMu.Lock()
	defer r.fireMu.Unlock()
	if r.following() {
		return nil
	}
	_, last, err := r.p.Log.EventBounds(ctx)
	if err != nil || last <= r.cursor {
		return err
	}
	if err := r.p.States.SetScheduleCursor(ctx, last); err != nil {
		return err
	}
	r.cursor = last
	return nil
}

var finishedOnly = store.EventFilter{Types: []string{"task.finished"}}

// follow handles the ended tasks after the cursor, then moves it.
func (r *Runner) follow(ctx context.Context) error {
	oldest, last, err := r.p.Log.EventBounds(ctx)
	if err != nil || last <= r.cursor {
		return err
	}
	if r.cursor+1 < oldest {
		r.log.Warn("schedules: the event log was pruned past what the after triggers had read; tasks that ended meanwhile fire none",
			"after_sequence", r.cursor, "oldest", oldest)
		r.cursor = oldest - 1
	}
	for r.cursor < last {
		evs, err := r.p.Log.Events(ctx, r.cursor, finishedOnly, 1000)
		if err != nil {
			return err
		}
		upTo := last
		if len(evs) == 1000 {
			upTo = evs[len(evs)-1].Seq
		}
		r.fireMu.Lock()
		for _, ev := range evs {
			r.finished(ctx, ev)
		}
		r.fireMu.Unlock()
		if err := r.p.States.SetScheduleCursor(ctx, upTo); err != nil {
			return err
		}
		r.cursor = upTo
	}
	return nil
}

// finished handles one task.finished event.
func (r *Runner) finished(ctx context.Context, ev store.Event) {
	var te aurav1.TaskEvent
	if err := proto.Unmarshal(ev.Data, &te); err != nil || te.Task == nil {
		return
	}
	t := te.Task
	status := strings.ToLower(strings.TrimPrefix(t.Status.String(), "TASK_STATUS_"))
	r.mu.Lock()
	var actions []Action
	if id := t.GetLabels()[Label]; id != "" {
		actions = r.book.Ended(id, t.Id)
	}
	if r.book.Follows(t.Task) {
		trigger := map[string]any{"task": map[string]any{
			"id": t.Id, "name": t.Task, "status": status,
			"result": template.Normalize(t.GetResult().AsInterface()), "inputs": template.Normalize(t.GetInputs().AsMap()),
			"error": t.GetError().GetMessage(),
		}}
		actions = append(actions, r.book.Finished(t.Id, t.Task, status, trigger, r.now())...)
	}
	r.mu.Unlock()
	r.carryOut(ctx, actions, "after")
}

// fired is the outcome of one fire.
type fired struct {
	TaskID, Reason string
	Dedup          bool
}

// carryOut does what the book decided, in order, and records it: the
// fires through the ExecutionManager, both in the event log, the states
// in the store. kind labels the fires metric. Callers hold fireMu.
func (r *Runner) carryOut(ctx context.Context, actions []Action, kind string) []fired {
	if len(actions) == 0 {
		return nil
	}
	out := make([]fired, len(actions))
	var events []store.Event
	touched := map[string]bool{}
	for i, a := range actions {
		touched[a.Schedule.ID] = true
		if !a.Fire {
			out[i] = fired{Reason: a.Reason}
			events = append(events, r.skipEvent(a, ""))
			r.m.skips.WithLabelValues(a.Reason).Add(float64(max(a.Skipped, 1)))
			continue
		}
		f, err := r.fire(ctx, a)
		if err != nil {
			reason := ReasonSubmit
			var ie *inputsError
			if errors.As(err, &ie) {
				reason = "inputs"
			}
			r.log.Warn("schedule fire failed", "schedule", a.Schedule.ID, "tick", a.Tick, "err", err)
			a.Reason = reason
			out[i] = fired{Reason: reason}
			events = append(events, r.skipEvent(a, err.Error()))
			r.m.skips.WithLabelValues(reason).Inc()
			continue
		}
		out[i] = f
		if f.Dedup {
			continue // fired before (a restart, a reload, a second node): recorded then
		}
		k := kind
		if kind == "tick" && a.Due.Before(r.now().Add(-lateGrace)) {
			k = "catch_up"
		}
		r.m.fires.WithLabelValues(a.Schedule.Plan.Name, k).Inc()
		if !a.Due.IsZero() && (kind == "tick" || kind == "trigger") {
			r.m.lateness.Observe(max(r.now().Sub(a.Due), 0).Seconds())
		}
		events = append(events, r.event(EventFired, f.TaskID, fmt.Sprintf("%s %s: fired task %s", a.Schedule.ID, tickName(a), f.TaskID)))
	}
	if len(events) > 0 {
		if err := r.p.Log.Write(ctx, store.Batch{Events: events}).Wait(); err != nil {
			r.log.Warn("schedules: recording fires in the event log", "err", err)
		}
	}
	r.mu.Lock()
	states := make([]store.ScheduleState, 0, len(touched))
	for id := range touched {
		if e, ok := r.book.Entry(id); ok {
			states = append(states, e.State())
		}
	}
	r.mu.Unlock()
	if err := r.p.States.SaveScheduleStates(ctx, states); err != nil {
		r.log.Warn("schedules: saving the last fired ticks", "err", err)
	}
	return out
}

type inputsError struct{ err error }

func (e *inputsError) Error() string { return "inputs: " + e.err.Error() }

// fire submits one fire: an ordinary submission with the tick's
// idempotency key and the schedule's label.
func (r *Runner) fire(ctx context.Context, a Action) (fired, error) {
	sc := a.Schedule
	if r.shared != nil {
		// Claimed across the nodes before anything is done: a node's
		// store deduplicates only the keys submitted to it.
		prior, claimed, err := r.shared.Claim(ctx, Key(a))
		if err != nil {
			return fired{}, err
		}
		if !claimed {
			if prior != "" {
				r.mu.Lock()
				r.book.Fired(sc.ID, a.Tick, prior, false)
				r.mu.Unlock()
			}
			return fired{TaskID: prior, Dedup: true}, nil
		}
	}
	for _, id := range a.Cancel {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := r.p.Tasks.Cancel(cctx, id, fmt.Sprintf("schedule %s fired again (overlap: cancel_previous)", sc.ID))
		cancel()
		if err != nil {
			r.log.Warn("schedule: cancelling the previous fire", "schedule", sc.ID, "task_id", id, "err", err)
		}
	}
	req := &aurav1.SubmitRequest{Task: sc.Task, IdempotencyKey: Key(a), Labels: map[string]string{Label: sc.ID}}
	if sc.Inputs != nil {
		var scope map[string]any
		if a.Trigger != nil {
			scope = map[string]any{"trigger": a.Trigger}
		}
		v, err := sc.Inputs.Eval(scope)
		if err != nil {
			return fired{}, &inputsError{err}
		}
		m, _ := v.(map[string]any)
		if req.Inputs, err = structpb.NewStruct(m); err != nil {
			return fired{}, &inputsError{err}
		}
	}
	resp, err := r.p.Tasks.SubmitAs(ctx, Principal, req)
	if err != nil {
		return fired{}, err
	}
	r.mu.Lock()
	r.book.Fired(sc.ID, a.Tick, resp.TaskId, !execmgr.Terminal(resp.Status))
	r.mu.Unlock()
	if r.shared != nil {
		if err := r.shared.Fired(ctx, Key(a), resp.TaskId); err != nil {
			r.log.Warn("schedules: recording the fire's task in the cluster", "schedule", sc.ID, "task_id", resp.TaskId, "err", err)
		}
	}
	return fired{TaskID: resp.TaskId, Dedup: resp.Deduplicated}, nil
}

// Key is a fire's idempotency key: schedule:<plan>/<name>@<tick>, the
// tick in RFC 3339 UTC; for an after trigger, @ the ID of the task whose
// end fired it.
func Key(a Action) string {
	return "schedule:" + a.Schedule.ID + "@" + tickName(a)
}

func tickName(a Action) string {
	if a.Key != "" {
		return a.Key
	}
	return a.Tick.UTC().Format(time.RFC3339Nano)
}

func (r *Runner) skipEvent(a Action, detail string) store.Event {
	msg := fmt.Sprintf("%s %s: skipped (%s)", a.Schedule.ID, tickName(a), a.Reason)
	if a.Skipped > 1 {
		msg = fmt.Sprintf("%s %s to %s: %d ticks skipped (%s)", a.Schedule.ID, tickName(a), a.Until.UTC().Format(time.RFC3339Nano), a.Skipped, a.Reason)
	}
	if detail != "" {
		msg += ": " + detail
	}
	return r.event(EventSkipped, "", msg)
}

func (r *Runner) event(typ, taskID, msg string) store.Event {
	now := r.now()
	data, _ := proto.Marshal(&aurav1.TaskEvent{TaskId: taskID, Type: typ, Time: timestamppb.New(now), Message: msg})
	return store.Event{TaskID: taskID, Type: typ, Time: now, Data: data}
}
