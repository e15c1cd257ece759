package admission

import (
	"cmp"
	"slices"
)

// Preemption pairs a waiting request that may preempt with the admitted
// request whose slots it may take.
type Preemption struct {
	Waiter, Victim string
}

// Preemptions chooses, for each waiting request pushed with Preempt that
// asks for a pool instance, the admitted request it may take over: one
// pushed Preemptible, of lower priority, not excused by busy (nil: none
// is), that holds every slot the waiter asks for (the same key, or for
// "<pool>:*" an instance of the pool), since the waiter runs under the
// victim's slots. Among the victims that fit it takes the lowest
// priority, then the latest to arrive (the least work lost). Waiters are
// served by priority, then arrival, and each victim goes to one waiter. It
// changes nothing; the caller carries the preemptions out.
func (q *Queue) Preemptions(busy func(id string) bool) []Preemption {
	if len(q.preempting) == 0 {
		return nil
	}
	ws := make([]*waiter, 0, len(q.preempting))
	for _, w := range q.preempting {
		if w.wantsInstance() {
			ws = append(ws, w)
		}
	}
	slices.SortFunc(ws, func(a, b *waiter) int {
		if c := cmp.Compare(b.priority, a.priority); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	})
	var out []Preemption
	taken := map[*waiter]bool{}
	for _, w := range ws {
		var best *waiter
		for _, v := range q.admitted {
			if !v.preemptible || taken[v] || v.priority >= w.priority || !v.covers(w) || busy != nil && busy(v.id) {
				continue
			}
			if best == nil || v.priority < best.priority || v.priority == best.priority && v.seq > best.seq {
				best = v
			}
		}
		if best != nil {
			taken[best] = true
			out = append(out, Preemption{Waiter: w.id, Victim: best.id})
		}
	}
	return out
}

// wantsInstance reports whether w asks for a pool instance, any or named.
func (w *waiter) wantsInstance() bool {
	for _, r := range w.res {
		if r.pool != nil || r.of != nil {
			return true
		}
	}
	return false
}

// covers reports whether the admitted v holds a slot of everything w
// asks for.
func (v *waiter) covers(w *waiter) bool {
	for _, r := range w.res {
		if !v.holds(r) {
			return false
		}
	}
	return true
}

func (v *waiter) holds(r *resource) bool {
	if r.pool != nil {
		for _, b := range v.bound {
			if b.of == r.pool {
				return true
			}
		}
		return false
	}
	return slices.Contains(v.res, r) || slices.Contains(v.bound, r)
}
