package admission

import (
	"maps"
	"slices"
)

// ResourceDetail describes one resource for an operator: its limit, who
// holds it and who waits for it.
type ResourceDetail struct {
	Key string
	// Pool and Instance are set on an instance's row; Pool alone on a
	// pool's own row ("<pool>:*": every instance together, and the waiters
	// that asked for any instance).
	Pool, Instance string
	Limit          int
	InUse          int      // slots held by this queue's admitted requests
	Holders        []string // admitted requests of this queue holding it, sorted
	Waiting        int      // waiting requests that need it
	Waiters        []string // the first of them in priority, then arrival, order
}

// Details returns every resource that is configured, part of a pool, held
// or wanted, sorted by key, with at most firstWaiters waiter IDs each. It
// walks every admitted and waiting request: for an operator's look, not a
// hot path.
func (q *Queue) Details(firstWaiters int) []ResourceDetail {
	holders := map[*resource][]string{}
	for id, w := range q.admitted {
		for _, k := range w.keys {
			if r := q.resources[k]; r != nil {
				holders[r] = append(holders[r], id)
				if r.of != nil {
					holders[r.of.any] = append(holders[r.of.any], id)
				}
			}
		}
	}
	waiters := map[*resource][]*waiter{}
	for _, w := range q.waiting {
		for _, r := range w.res {
			waiters[r] = append(waiters[r], w)
		}
	}
	var out []ResourceDetail
	for _, k := range slices.Sorted(maps.Keys(q.resources)) {
		r := q.resources[k]
		d := ResourceDetail{Key: k, Limit: r.limit(), Waiting: r.waiting}
		switch {
		case r.pool != nil:
			if r.pool.gone && r.waiting == 0 && q.poolStats(r.pool).InUse == 0 {
				continue
			}
			st := q.poolStats(r.pool)
			d.Pool, d.Limit, d.InUse = r.pool.name, st.Limit, st.InUse
		case r.of != nil:
			d.Pool, d.Instance, d.InUse = r.of.name, r.instanceName(), q.held.held(k)
			if r.gone && d.InUse == 0 && r.waiting == 0 {
				continue // no longer declared, and no one holds or names it
			}
		default:
			d.InUse = q.held.held(k)
			if r.configured == 0 && d.InUse == 0 && r.waiting == 0 {
				continue
			}
		}
		d.Holders = slices.Sorted(slices.Values(holders[r]))
		ws := waiters[r]
		slices.SortFunc(ws, func(a, b *waiter) int {
			if before(a, b) {
				return -1
			}
			return 1
		})
		for _, w := range ws[:min(len(ws), firstWaiters)] {
			d.Waiters = append(d.Waiters, w.id)
		}
		out = append(out, d)
	}
	return out
}
