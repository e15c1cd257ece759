package execmgr

import (
	"maps"
	"slices"
)

// Defaults for the bounds on waiting tasks. A waiting task costs about
// 1.5 KB of aurad's memory (its encoded snapshot and its place in the
// queue), so the total bound keeps a flooded daemon near 300 MB; a
// principal gets half of it, so one caller alone cannot fill the queue and
// lock every other caller out.
const (
	DefaultMaxQueued             = 200_000
	DefaultMaxQueuedPerPrincipal = 100_000
)

// backlog counts the tasks waiting for admission, in all and per
// principal, and refuses a submission beyond either bound. A task counts
// from the moment its submission is accepted for recording until it is
// admitted, cancelled while waiting, or its submission fails. Guarded by
// Manager.mu.
type backlog struct {
	max, perPrincipal int // immutable; 0: unbounded
	total             int
	by                map[string]int
}

func newBacklog(max, perPrincipal int) *backlog {
	return &backlog{max: max, perPrincipal: perPrincipal, by: map[string]int{}}
}

// reserve counts one more waiting task of principal, or refuses it when
// a bound is reached.
func (b *backlog) reserve(principal string) error {
	if b.perPrincipal > 0 && b.by[principal] >= b.perPrincipal {
		return &QueueFullError{PerPrincipal: true, Principal: principal, Waiting: b.by[principal], Limit: b.perPrincipal}
	}
	if b.max > 0 && b.total >= b.max {
		return &QueueFullError{Waiting: b.total, Limit: b.max}
	}
	b.add(principal)
	return nil
}

// add counts a waiting task whatever the bounds: tasks recovered from the
// store were accepted before, and are never dropped.
func (b *backlog) add(principal string) {
	b.total++
	b.by[principal]++
}

// done uncounts a task that no longer waits.
func (b *backlog) done(principal string) {
	b.total--
	if n := b.by[principal]; n > 1 {
		b.by[principal] = n - 1
	} else {
		delete(b.by, principal)
	}
}

// PrincipalStats is one principal's part of admission: the global slots
// its tasks hold, its tasks waiting to start (as the bounds count them)
// and its bound on those (0: unbounded).
type PrincipalStats struct {
	Principal  string
	InUse      int
	Waiting    int
	MaxWaiting int
}

// Principals reports every principal with tasks admitted or waiting,
// sorted by name, and the bound on waiting tasks in all (0: unbounded).
func (m *Manager) Principals() ([]PrincipalStats, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	by := map[string]*PrincipalStats{}
	get := func(name string) *PrincipalStats {
		if p, ok := by[name]; ok {
			return p
		}
		p := &PrincipalStats{Principal: name, MaxWaiting: m.backlog.perPrincipal}
		by[name] = p
		return p
	}
	for _, o := range m.queue.Stats().Owners {
		if o.InUse > 0 {
			get(o.Owner).InUse = o.InUse
		}
	}
	for name, n := range m.backlog.by {
		get(name).Waiting = n
	}
	out := make([]PrincipalStats, 0, len(by))
	for _, name := range slices.Sorted(maps.Keys(by)) {
		out = append(out, *by[name])
	}
	return out, m.backlog.max
}
