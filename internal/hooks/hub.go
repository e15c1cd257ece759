package hooks

import (
	"context"
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

// bufferSize is how many live events a follower may have pending before it
// is switched to catching up from the log.
const bufferSize = 1024

// catchUpBatch is how many events one log read returns.
const catchUpBatch = 512

// session is one Follow call, for Lag.
type session struct {
	seen atomic.Uint64            // last sequence passed
	live atomic.Pointer[follower] // set while on the live feed
}

type follower struct {
	filter *Filter
	ch     chan store.Event
	lagged chan struct{} // closed when the follower missed a live event
}

// Hub fans committed events out to followers. Publish is called by the
// store's commit hook, in sequence order.
type Hub struct {
	log Log

	mu        sync.Mutex
	followers map[*follower]struct{}
	sessions  map[*session]struct{} // one per active Follow
	last      uint64                // highest sequence published
}

// NewHub returns a hub that replays from log.
func NewHub(log Log) *Hub {
	return &Hub{log: log, followers: map[*follower]struct{}{}, sessions: map[*session]struct{}{}}
}

// SetLast records the highest committed sequence at start-up, so live
// followers that join before anything is published start at the right place.
func (h *Hub) SetLast(seq uint64) {
	h.mu.Lock()
	if seq > h.last {
		h.last = seq
	}
	h.mu.Unlock()
}

// Followers returns the number of live followers.
func (h *Hub) Followers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.followers)
}

// Lag returns how many Follow calls are active and how many published
// sequences the furthest-behind of them has yet to pass.
func (h *Hub) Lag() (sessions int, maxLag uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.sessions {
		var lag uint64
		if f := s.live.Load(); f != nil {
			lag = uint64(len(f.ch)) // live: what is buffered for it
		} else if seen := s.seen.Load(); seen < h.last {
			lag = h.last - seen // catching up from the log
		}
		maxLag = max(maxLag, lag)
	}
	return len(h.sessions), maxLag
}

// Publish delivers committed events to every follower without blocking: a
// follower whose buffer is full is marked lagged and catches up from the log.
func (h *Hub) Publish(evs []store.Event) {
	if len(evs) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.last = evs[len(evs)-1].Seq
	for f := range h.followers {
		for i := range evs {
			if !f.filter.cheap(&evs[i]) {
				continue
			}
			select {
			case f.ch <- evs[i]:
			default:
				close(f.lagged)
				delete(h.followers, f)
			}
			if _, still := h.followers[f]; !still {
				break
			}
		}
	}
}

func (h *Hub) join(f *Filter) (*follower, uint64) {
	fl := &follower{filter: f, ch: make(chan store.Event, bufferSize), lagged: make(chan struct{})}
	h.mu.Lock()
	h.followers[fl] = struct{}{}
	last := h.last
	h.mu.Unlock()
	return fl, last
}

func (h *Hub) leave(fl *follower) {
	h.mu.Lock()
	delete(h.followers, fl)
	h.mu.Unlock()
}

// Follow calls send for every event matching f, in sequence order, with no
// gap and no duplicate, until send asks to stop, send fails, or ctx ends.
// With after == nil it starts live from now; otherwise it first replays the
// stored events after *after. It returns nil when send asked to stop.
func (h *Hub) Follow(ctx context.Context, after *uint64, f Filter, send func(store.Event) (stop bool, err error)) error {
	var last uint64
	replay := after != nil
	if replay {
		last = *after
		oldest, _, err := h.log.EventBounds(ctx)
		if err != nil {
			return err
		}
		if oldest > 0 && last+1 < oldest {
			return &OutOfRangeError{After: last, Oldest: oldest}
		}
	}
	sess := &session{}
	h.mu.Lock()
	h.sessions[sess] = struct{}{}
	if !replay {
		sess.seen.Store(h.last)
	} else {
		sess.seen.Store(last)
	}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.sessions, sess)
		h.mu.Unlock()
	}()
	deliver := func(ev store.Event) (bool, error) {
		if ev.Seq <= last {
			return false, nil
		}
		last = ev.Seq
		sess.seen.Store(last)
		if !f.cheap(&ev) || (f.Match != nil && !f.Match(ev)) {
			return false, nil
		}
		return send(ev)
	}
	for {
		fl, liveFrom := h.join(&f)
		if !replay {
			last = liveFrom
			replay = true // every later round (after a lag) catches up from the log
		} else {
			stop, err := h.catchUp(ctx, &last, &f, deliver)
			if stop || err != nil {
				h.leave(fl)
				return err
			}
		}
		sess.live.Store(fl)
		stop, err := h.live(ctx, fl, deliver)
		sess.live.Store(nil)
		h.leave(fl)
		if stop || err != nil {
			return err
		}
		// lagged: go round, catching up from the log.
	}
}

func (h *Hub) catchUp(ctx context.Context, last *uint64, f *Filter, deliver func(store.Event) (bool, error)) (bool, error) {
	for {
		evs, err := h.log.Events(ctx, *last, f.storeFilter(), catchUpBatch)
		if err != nil {
			return false, err
		}
		for _, ev := range evs {
			if stop, err := deliver(ev); stop || err != nil {
				return stop, err
			}
		}
		if len(evs) < catchUpBatch {
			return false, nil
		}
	}
}

// live drains the follower's channel until stop, error, ctx end or lag
// (stop=false, err=nil).
func (h *Hub) live(ctx context.Context, fl *follower, deliver func(store.Event) (bool, error)) (bool, error) {
	for {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case ev := <-fl.ch:
			if stop, err := deliver(ev); stop || err != nil {
				return stop, err
			}
		case <-fl.lagged:
			// Deliver what was buffered before the lag, then catch up.
			for {
				select {
				case ev := <-fl.ch:
					if stop, err := deliver(ev); stop || err != nil {
						return stop, err
					}
				default:
					return false, nil
				}
			}
		}
	}
}

// Last returns the highest sequence published so far.
func (h *Hub) Last() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}
