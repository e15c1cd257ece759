package hooks

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/aura-dev/aura/internal/store"
)

// Log is the durable event log the hub replays from.
type Log interface {
	Events(ctx context.Context, after uint64, f store.EventFilter, limit int) ([]store.Event, error)
	EventBounds(ctx context.Context) (oldest, last uint64, err error)
}

// Filter selects the events a follower receives.
type Filter struct {
	TaskID    string
	HooksOnly bool
	// Hooks, when non-empty, keeps only these hook points (implies HooksOnly).
	Hooks []string
	// Match, when set, is a final test on each event (e.g. a plan filter that
	// needs the decoded payload).
	Match func(store.Event) bool
	// Who says who follows, for Snapshot; it selects nothing.
	Who Follower
}

func (f *Filter) storeFilter() store.EventFilter {
	return store.EventFilter{TaskID: f.TaskID, HooksOnly: f.HooksOnly || len(f.Hooks) > 0, Types: f.Hooks}
}

// cheap reports whether ev passes the parts of the filter that need no decoding.
func (f *Filter) cheap(ev *store.Event) bool {
	if f.TaskID != "" && ev.TaskID != f.TaskID {
		return false
	}
	if (f.HooksOnly || len(f.Hooks) > 0) && !ev.Hook {
		return false
	}
	if len(f.Hooks) > 0 {
		ok := false
		for _, h := range f.Hooks {
			if h == ev.Type {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// OutOfRangeError says a follower asked to resume from a sequence the log no
// longer holds.
type OutOfRangeError struct {
	After, Oldest uint64
}

func (e *OutOfRangeError) Error() string {
	return fmt.Sprintf("after_sequence %d is older than retention: the oldest stored event is %d", e.After, e.Oldest)
}

// recentSize is how many of the latest published events the hub keeps in
// memory. A follower at most this far behind reads from memory; one further
// behind catches up from the durable log until it is within reach again.
const recentSize = 16384

// catchUpBatch is how many events one log read returns, and scanBatch how
// many ring entries one read of the ring looks at.
const (
	catchUpBatch = 512
	scanBatch    = 1024
)

// session is one Follow call, for Lag.
type session struct {
	// Immutable after Follow registers it.
	who   Follower
	hooks []string
	task  string

	seen atomic.Uint64 // last sequence passed
	// idle is set while a follower of one task sleeps with nothing of its
	// task to pass: it is not behind, whatever seen says.
	idle atomic.Bool
}

// ErrClosed is what Follow returns once the hub has shut down.
var ErrClosed = errors.New("hooks: the event hub has shut down")

// Hub fans committed events out to followers. Publish is called by the
// store's commit hook, in sequence order. It puts the events in a ring of
// the latest ones and wakes the followers, each of which reads the ring at
// its own pace: publishing costs the same whatever the number of followers,
// and a follower that cannot keep up never holds anything back.
//
// A hub is built before the store it follows, so that the store can be
// opened with Publish as its commit hook; Start then gives it the opened
// store to replay from, and Shutdown ends its followers.
type Hub struct {
	// life ends at Shutdown, ending every Follow call. Immutable after
	// construction.
	life    context.Context
	endLife context.CancelFunc

	mu  sync.RWMutex
	log Log // set by Start, before any Follow
	// ring holds the latest published events (the store's OnCommit slices,
	// which are never written again), the one with sequence s at
	// s % len(ring): (last-held, last] when held > 0.
	ring     []*store.Event
	held     uint64
	last     uint64        // highest sequence published
	wake     chan struct{} // closed, and replaced, by every Publish
	sessions map[*session]struct{}
	// taskWake holds, for followers of one task that are waiting, the
	// channel that the next Publish carrying an event of that task closes
	// (and drops): many clients waiting each for their own task are not
	// all woken by every commit.
	taskWake map[string]*waiters
}

// waiters is a wake channel shared by the followers of one task.
type waiters struct {
	ch chan struct{}
	n  int // followers waiting on ch
}

// NewHub returns a hub that takes Publish calls at once and serves
// followers once started.
func NewHub() *Hub { return newHub(recentSize) }

func newHub(ringSize int) *Hub {
	life, endLife := context.WithCancel(context.Background())
	return &Hub{life: life, endLife: endLife, ring: make([]*store.Event, ringSize), wake: make(chan struct{}),
		sessions: map[*session]struct{}{}, taskWake: map[string]*waiters{}}
}

// Start makes log the durable log followers replay from, and starts live
// followers after the last sequence it holds, so that a follower joining
// before anything is published starts at the right place.
func (h *Hub) Start(ctx context.Context, log Log) error {
	_, last, err := log.EventBounds(ctx)
	if err != nil {
		return fmt.Errorf("reading the event log's last sequence: %w", err)
	}
	h.mu.Lock()
	h.log = log
	if last > h.last {
		h.last, h.held = last, 0
	}
	h.mu.Unlock()
	return nil
}

// Shutdown ends every Follow call (they return ErrClosed) and refuses new
// ones. Publish goes on working, for the store's last commits.
func (h *Hub) Shutdown() { h.endLife() }

// Followers returns the number of active Follow calls.
func (h *Hub) Followers() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.sessions)
}

// Lag returns how many Follow calls are active and how many published
// sequences the furthest-behind of them has yet to pass.
func (h *Hub) Lag() (sessions int, maxLag uint64) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for s := range h.sessions {
		if seen := s.seen.Load(); seen < h.last && !s.idle.Load() {
			maxLag = max(maxLag, h.last-seen)
		}
	}
	return len(h.sessions), maxLag
}

// Publish adds committed events (in sequence order; the hub keeps the
// slice) to the ring and wakes the followers. It never blocks on them.
func (h *Hub) Publish(evs []store.Event) {
	if len(evs) == 0 {
		return
	}
	size := uint64(len(h.ring))
	h.mu.Lock()
	for i := range evs {
		e := &evs[i]
		if e.Seq != h.last+1 {
			h.held = 0 // not contiguous (only at start-up): start the ring over
		}
		h.ring[e.Seq%size] = e
		h.last = e.Seq
		h.held = min(h.held+1, size)
		if w := h.taskWake[e.TaskID]; w != nil {
			close(w.ch)
			delete(h.taskWake, e.TaskID)
		}
	}
	close(h.wake)
	h.wake = make(chan struct{})
	h.mu.Unlock()
}

// waitTask blocks a follower of one task that has seen everything up to
// last until an event of that task is published after it (or ctx ends).
func (h *Hub) waitTask(ctx context.Context, sess *session, task string, last uint64) error {
	h.mu.Lock()
	if h.last > last {
		h.mu.Unlock()
		return nil // published meanwhile: read again
	}
	w := h.taskWake[task]
	if w == nil {
		w = &waiters{ch: make(chan struct{})}
		h.taskWake[task] = w
	}
	w.n++
	sess.idle.Store(true)
	h.mu.Unlock()
	var err error
	select {
	case <-ctx.Done():
		err = ctx.Err()
	case <-w.ch:
	}
	sess.idle.Store(false)
	h.mu.Lock()
	if w.n--; w.n == 0 && h.taskWake[task] == w {
		delete(h.taskWake, task)
	}
	h.mu.Unlock()
	return err
}

// read looks at the ring after sequence last, up to scanBatch entries,
// appending those that pass f's cheap test to out. upTo is the last
// sequence it looked at (last when there was nothing to look at). When the
// ring no longer holds last+1, it returns fromLog (and oldest, the first it
// holds); when there is nothing after last, it returns the channel that
// the next Publish closes.
func (h *Hub) read(last uint64, f *Filter, out []*store.Event) (evs []*store.Event, upTo, oldest uint64, fromLog bool, wake <-chan struct{}) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if last >= h.last {
		return out, last, 0, false, h.wake
	}
	oldest = h.last - h.held + 1
	if last+1 < oldest {
		return out, last, oldest, true, nil
	}
	size := uint64(len(h.ring))
	upTo = min(h.last, last+scanBatch)
	for s := last + 1; s <= upTo; s++ {
		if e := h.ring[s%size]; f.cheap(e) {
			out = append(out, e)
		}
	}
	return out, upTo, oldest, false, nil
}

// Follow calls send for every event matching f, in sequence order, with no
// gap and no duplicate, until send asks to stop, send fails, or ctx ends.
// With after == nil it starts live from now; otherwise it first replays the
// stored events after *after. It returns nil when send asked to stop. A
// follower reads the latest events from the hub's ring and anything older
// from the log; it returns an OutOfRangeError if what it still needs has
// been pruned from the log meanwhile.
func (h *Hub) Follow(ctx context.Context, after *uint64, f Filter, send func(store.Event) (stop bool, err error)) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer context.AfterFunc(h.life, func() { cancel(ErrClosed) })()
	err := h.follow(ctx, after, f, send)
	if err != nil && context.Cause(ctx) == ErrClosed {
		return ErrClosed
	}
	return err
}

func (h *Hub) follow(ctx context.Context, after *uint64, f Filter, send func(store.Event) (stop bool, err error)) error {
	if h.life.Err() != nil {
		return ErrClosed
	}
	sess := &session{who: f.Who, hooks: f.Hooks, task: f.TaskID}
	h.mu.Lock()
	if h.log == nil {
		h.mu.Unlock()
		return errors.New("hooks: Follow before the hub was started")
	}
	last := h.last
	h.sessions[sess] = struct{}{}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.sessions, sess)
		h.mu.Unlock()
	}()
	if after != nil {
		last = *after
		if err := h.inRange(ctx, last); err != nil {
			return err
		}
	}
	sess.seen.Store(last)
	deliver := func(ev *store.Event) (bool, error) {
		if f.Match != nil && !f.Match(*ev) {
			return false, nil
		}
		return send(*ev)
	}
	var buf []*store.Event
	for {
		evs, upTo, oldest, fromLog, wake := h.read(last, &f, buf[:0])
		switch {
		case fromLog:
			next, stop, err := h.catchUp(ctx, last, oldest, &f, deliver)
			if stop || err != nil {
				return err
			}
			last = next
		case wake != nil && f.TaskID != "":
			if err := h.waitTask(ctx, sess, f.TaskID, last); err != nil {
				return err
			}
		case wake != nil:
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-wake:
			}
		default:
			for _, ev := range evs {
				if stop, err := deliver(ev); stop || err != nil {
					return err
				}
			}
			clear(evs) // let the ring's events go once the ring drops them
			buf, last = evs, upTo
		}
		sess.seen.Store(last)
	}
}

// inRange fails with an OutOfRangeError when the log no longer holds the
// events after last.
func (h *Hub) inRange(ctx context.Context, last uint64) error {
	oldest, _, err := h.log.EventBounds(ctx)
	if err != nil {
		return err
	}
	if oldest > 0 && last+1 < oldest {
		return &OutOfRangeError{After: last, Oldest: oldest}
	}
	return nil
}

// catchUp reads one batch of the log after last and delivers it. It
// returns the sequence the follower has passed: the batch's last event,
// or, when the batch was not full, at least ringOldest-1 (everything
// before the ring's oldest event was committed, so the log showed all of
// it that matches).
func (h *Hub) catchUp(ctx context.Context, last, ringOldest uint64, f *Filter, deliver func(*store.Event) (bool, error)) (next uint64, stop bool, err error) {
	if err := h.inRange(ctx, last); err != nil {
		return last, false, err
	}
	evs, err := h.log.Events(ctx, last, f.storeFilter(), catchUpBatch)
	if err != nil {
		return last, false, err
	}
	for i := range evs {
		if stop, err := deliver(&evs[i]); stop || err != nil {
			return last, stop, err
		}
		last = evs[i].Seq
	}
	if len(evs) < catchUpBatch {
		last = max(last, ringOldest-1)
	}
	return last, false, nil
}

// Last returns the highest sequence published so far.
func (h *Hub) Last() uint64 {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.last
}
