package hooks

import (
	"cmp"
	"slices"
	"time"
)

// Follower says who a Follow call serves, for Snapshot.
type Follower struct {
	Kind string // what follows: "subscribe", "stream", "ui", ...
	Name string // the principal, or the follower's own name
	Peer string // the remote address, when there is one
	Plan string // the plan filter, when there is one
}

// FollowerSnapshot is one active Follow call as Snapshot sees it.
type FollowerSnapshot struct {
	Follower
	Hooks  []string // the hook points it receives; empty: all it matches
	TaskID string   // the one task it follows, when set
	Cursor uint64   // the last sequence it has passed
	Lag    uint64   // published sequences it has yet to pass
}

// Snapshot lists the active Follow calls, by kind, name and peer. It is a
// copy: reading it holds nothing up.
func (h *Hub) Snapshot() []FollowerSnapshot {
	h.mu.RLock()
	out := make([]FollowerSnapshot, 0, len(h.sessions))
	for s := range h.sessions {
		fs := FollowerSnapshot{Follower: s.who, Hooks: slices.Clone(s.hooks), TaskID: s.task, Cursor: s.seen.Load()}
		if fs.Cursor < h.last && !s.idle.Load() {
			fs.Lag = h.last - fs.Cursor
		}
		out = append(out, fs)
	}
	h.mu.RUnlock()
	slices.SortFunc(out, func(a, b FollowerSnapshot) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name), cmp.Compare(a.Peer, b.Peer), cmp.Compare(a.Cursor, b.Cursor))
	})
	return out
}

// InterceptorSnapshot is one registered interceptor and what it has
// answered since it registered.
type InterceptorSnapshot struct {
	Name     string
	Plan     string // its plan filter, when it reports one (PlanFilter)
	Timeout  time.Duration
	FailOpen bool
	Calls    uint64 // before_task_run decisions asked of it
	Denials  uint64 // of those, the ones that stopped the task (a denial, or no answer while fail-closed)
}

// PlanFilter is implemented by an interceptor that asks only about tasks of
// one plan, so that a snapshot can show which.
type PlanFilter interface {
	Plan() string
}

// Snapshot lists the registered interceptors in registration order.
func (r *Registry) Snapshot() []InterceptorSnapshot {
	v := r.view.Load()
	out := make([]InterceptorSnapshot, 0, len(v.interceptors))
	for _, ic := range v.interceptors {
		is := InterceptorSnapshot{Name: ic.Name(), Timeout: ic.Timeout(), FailOpen: ic.FailOpen(),
			Calls: ic.calls.Load(), Denials: ic.denials.Load()}
		if pf, ok := ic.Interceptor.(PlanFilter); ok {
			is.Plan = pf.Plan()
		}
		out = append(out, is)
	}
	return out
}
