package schedule

import (
	"context"
	"time"

	"github.com/aura-dev/aura/internal/store"
)

// SharedStates is a ScheduleStore several nodes share (a cluster's: see
// cluster.ScheduleStates). A Runner on one is in standby: it fires ticks
// only while Lead runs (on the cluster's elected leader), it hears of the
// states other nodes write (a pause set through any node applies on
// every node), and it claims every fire across the nodes before it
// submits it, so that no tick fires twice whichever node fires it.
type SharedStates interface {
	store.ScheduleStore
	// Changes delivers the states written by any node.
	Changes() <-chan store.ScheduleState
	// Claim claims the fire with idempotency key key for this node;
	// claimed false: it was claimed before, and prior is the task it
	// submitted ("" when unknown).
	Claim(ctx context.Context, key string) (prior string, claimed bool, err error)
	// Fired records the task a claimed fire submitted.
	Fired(ctx context.Context, key, taskID string) error
}

// firing reports whether ticks fire now: always for a Runner alone, while
// Lead runs for one on shared states.
func (r *Runner) firing() bool { return r.shared == nil || r.active.Load() }

// Lead fires the schedules' ticks until ctx ends: a Runner on shared
// states calls it on the cluster's leader. It first reads the states the
// previous leader left, so it goes on from the last tick fired anywhere;
// it returns once a fire under way is recorded, so no two nodes fire at
// once. A Runner alone fires all along: Lead only waits.
func (r *Runner) Lead(ctx context.Context) {
	if r.shared == nil {
		<-ctx.Done()
		return
	}
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		err := r.takeOver(ctx)
		if err == nil {
			break
		}
		r.log.Warn("schedules: taking over the schedules' state failed; retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
	r.log.Info("schedules: firing on this node (the cluster's leader)")
	r.wake()
	<-ctx.Done()
	r.fireMu.Lock()
	r.active.Store(false)
	r.fireMu.Unlock()
	r.log.Info("schedules: no longer firing on this node")
}

// takeOver reloads the book from the shared states and starts firing.
func (r *Runner) takeOver(ctx context.Context) error {
	r.fireMu.Lock()
	defer r.fireMu.Unlock()
	states, err := r.p.States.ScheduleStates(ctx)
	if err != nil {
		return err
	}
	r.mu.Lock()
	set := r.set
	r.mu.Unlock()
	if err := r.loadBook(ctx, set, states); err != nil {
		return err
	}
	r.active.Store(true)
	return nil
}

// applyLoop applies the states other nodes write: their pause state, and
// on a node that does not fire, their last ticks and fires (what List
// shows).
func (r *Runner) applyLoop() {
	defer r.wg.Done()
	for {
		select {
		case <-r.stop:
			return
		case st := <-r.shared.Changes():
			r.apply(st)
		}
	}
}

func (r *Runner) apply(st store.ScheduleState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.book.Entry(st.ID)
	if !ok {
		return
	}
	if !samePause(e.PausedOverride, st.Paused) {
		r.book.SetPausedOverride(st.ID, st.Paused, r.now())
		r.wake()
	}
	if r.active.Load() {
		return
	}
	if st.LastFire.After(e.LastFire) {
		e.LastFire, e.LastTaskID = st.LastFire, st.LastTaskID
	}
	if st.LastTick.After(e.Last) {
		// The next fire times List shows go on from the leader's tick.
		e.Last = st.LastTick
		r.book.SetPausedOverride(st.ID, e.PausedOverride, r.now())
	}
}

func samePause(a, b *bool) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
