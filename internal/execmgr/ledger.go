package execmgr

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/aura-dev/aura/internal/admission"
)

// Asking the Ledger: a failed claim or release is tried again
// ledgerAttempts times in all, the waits between doubling from
// defaultLedgerBackoff (0.1 + 0.2 + 0.4 + 0.8 s), long enough to ride out
// an etcd leader election, short enough that a task does not hang on a
// ledger that is gone.
const (
	ledgerAttempts       = 5
	defaultLedgerBackoff = 100 * time.Millisecond
)

// LedgerError ends a task whose shared resource slots could not be claimed:
// the Ledger kept failing, so the task never started.
type LedgerError struct {
	Keys     []string
	Attempts int
	Err      error
}

func (e *LedgerError) Error() string {
	return fmt.Sprintf("claiming the shared resource slots %q failed %d times, so the task did not start: %v; "+
		"check the daemon's connection to its ledger, then submit the task again", e.Keys, e.Attempts, e.Err)
}

func (e *LedgerError) Unwrap() error { return e.Err }

func sharedSet(keys []string) func(string) bool {
	if len(keys) == 0 {
		return nil
	}
	set := make(map[string]bool, len(keys))
	for _, k := range keys {
		set[k] = true
	}
	return func(k string) bool { return set[k] }
}

func keysOf(claims []admission.Claim) []string {
	keys := make([]string, len(claims))
	for i, c := range claims {
		keys[i] = c.Key
	}
	return keys
}

// claimLocked asks the Ledger, on a goroutine of its own, for the shared
// slots of r, which the queue has admitted (effClaim): r starts only once
// they are granted. The answer may be a network round trip away, and m.mu
// is not held while it comes, so a slow ledger stalls only the tasks that
// need it. The claim is r's work while it claims: effStop (a cancel, a
// failed creation, the drain) cancels it with its cause, and the answer is
// fed to r's lifecycle, which decides. m.mu is held.
func (m *Manager) claimLocked(r *run, claims []admission.Claim) {
	ctx, stop := context.WithCancelCause(context.Background())
	r.mu.Lock()
	r.stopWork = stop
	r.mu.Unlock()
	m.claiming[r.id] = r
	r.freedAt = m.freed
	m.claims.Add(1)
	go func() {
		defer m.claims.Done()
		defer stop(nil)
		ok, full, err := m.claim(ctx, r, claims)
		m.claimed(r, claims, ok, full, err)
	}()
}

// claim asks the Ledger for claims, again after an error, up to
// ledgerAttempts times.
func (m *Manager) claim(ctx context.Context, r *run, claims []admission.Claim) (ok bool, full int, err error) {
	delay := m.ledgerBackoff
	for attempt := 1; ; attempt++ {
		ok, full, err = m.ledger.Acquire(ctx, r.id, claims)
		if ctx.Err() != nil {
			// Stopped: the lifecycle knows why. A grant that came
			// anyway is given back with the slots (effRelease).
			return ok, full, context.Cause(ctx)
		}
		if err == nil {
			return ok, full, nil
		}
		if attempt == ledgerAttempts {
			err = &LedgerError{Keys: keysOf(claims), Attempts: attempt, Err: err}
			m.log.Error("a task did not start: its shared resource slots could not be claimed", "task_id", r.id, "task", r.def.ID, "err", err)
			return false, 0, err
		}
		m.log.Warn("claiming shared resource slots failed; asking again", "task_id", r.id, "task", r.def.ID,
			"resources", keysOf(claims), "attempt", attempt, "retry_in", delay, "err", err)
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return false, 0, context.Cause(ctx)
		}
		delay *= 2
	}
}

// claimed feeds the Ledger's answer for r to its lifecycle: granted, it
// starts; refused, it waits again in the queue; failed or stopped, it ends
// (or, on the drain, stays queued). Slots granted are noted first, so
// that whatever the lifecycle decides, effRelease gives them back unless
// the task runs.
func (m *Manager) claimed(r *run, claims []admission.Claim, ok bool, full int, err error) {
	ev := event{kind: evGranted}
	switch {
	case err != nil:
		ev = event{kind: evClaimFailed, err: err}
	case !ok:
		if full < 0 || full >= len(claims) {
			full = 0 // a Ledger that names no claim: any of them will do to wait on
		}
		ev = event{kind: evRefused, key: claims[full].Key}
	}
	var fences map[string]int64
	if f, is := m.ledger.(fencer); is && ok {
		fences = f.Fences(r.id)
	}
	m.mu.Lock()
	delete(m.claiming, r.id)
	switch {
	case ok:
		m.shared[r.id] = keysOf(claims)
		delete(m.refused, r.id)
	case err == nil:
		// The Ledger counts it among the waiters for these keys until it
		// is granted them or withdraws (see dequeueLocked).
		m.refused[r.id] = keysOf(claims)
	}
	m.mu.Unlock()
	if fences != nil {
		r.mu.Lock()
		r.fences = fences
		r.mu.Unlock()
	}
	r.feed(nil, ev)
}

// fencer is a Ledger whose grants carry fencing tokens: the revision of
// each slot's grant, by key (a cluster's etcd Ledger).
type fencer interface {
	Fences(holder string) map[string]int64
}

// withdrawLocked tells the Ledger that r, refused a slot before, leaves
// the queue without one, on a goroutine of its own: a Ledger that keeps
// the waiters in line (a cluster's) lets the next one go first. m.mu is
// held.
func (m *Manager) withdrawLocked(r *run) {
	keys, ok := m.refused[r.id]
	if !ok {
		return
	}
	delete(m.refused, r.id)
	m.claims.Add(1)
	go m.releaseShared(r, keys)
}

// releaseSharedLocked gives back the shared slots r held, if any, on a
// goroutine of its own (the Ledger may be slow). m.mu is held.
func (m *Manager) releaseSharedLocked(r *run) {
	keys, ok := m.shared[r.id]
	if !ok {
		return
	}
	delete(m.shared, r.id)
	m.claims.Add(1)
	go m.releaseShared(r, keys)
}

// releaseShared gives r's slots of keys back to the Ledger, again after
// an error, then lets the tasks refused on them try again.
func (m *Manager) releaseShared(r *run, keys []string) {
	defer m.claims.Done()
	delay := m.ledgerBackoff
	for attempt := 1; ; attempt++ {
		err := m.ledger.Release(m.ledgerCtx, r.id, keys)
		if err == nil {
			break
		}
		if attempt == ledgerAttempts || m.ledgerCtx.Err() != nil {
			m.log.Error("releasing shared resource slots failed; they stay held until the ledger drops them",
				"task_id", r.id, "task", r.def.ID, "resources", keys, "attempts", attempt, "err", err)
			return
		}
		m.log.Warn("releasing shared resource slots failed; trying again", "task_id", r.id, "task", r.def.ID,
			"resources", keys, "attempt", attempt, "retry_in", delay, "err", err)
		select {
		case <-time.After(delay):
		case <-m.ledgerCtx.Done():
		}
		delay *= 2
	}
	m.ResourcesFreed(keys...)
}

// ResourcesFreed tells the manager that slots of shared keys may have been
// given back to the Ledger (by a holder here or in another process): the
// tasks it refused on them try again.
func (m *Manager) ResourcesFreed(keys ...string) {
	m.mu.Lock()
	m.freed++
	for _, k := range slices.Compact(slices.Sorted(slices.Values(keys))) {
		m.queue.Changed(k)
	}
	next := m.admitLocked()
	m.mu.Unlock()
	m.tasks.run(next)
}

// EndInterrupted stops the given tasks of this daemon, wherever they are
// in their lifecycle, and ends them INTERRUPTED with error kind kind and
// cause as the message (never requeued, whatever on_interrupt says). A
// running task's steps are stopped as a cancel stops them. Ids that are
// not live here (ended already, another node's), and tasks waiting in the
// queue (they hold no slot; one the drain put back stays queued), are
// skipped. The tasks are
// told all at once, since the caller may be racing a deadline; it returns
// the ids it stopped once each has been told (a running task's end is
// recorded when its steps have stopped).
func (m *Manager) EndInterrupted(ids []string, kind ErrorKind, cause error) []string {
	m.mu.Lock()
	var rs []*run
	for _, id := range ids {
		if r := m.live[id]; r != nil && r.holdsSlots() {
			rs = append(rs, r)
		}
	}
	m.mu.Unlock()
	out := make([]string, 0, len(rs))
	var told sync.WaitGroup
	for _, r := range rs {
		told.Go(func() { r.feed(nil, event{kind: evCancel, err: &interruptError{kind: kind, err: cause}}) })
		out = append(out, r.id)
	}
	told.Wait()
	return out
}

// holdsSlots reports whether r is between admission and its end: it may
// hold slots (claiming, admitted, planning, asked about or running).
func (r *run) holdsSlots() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lc.state >= stateClaiming && r.lc.state < stateEnding
}
