package admission

import (
	"errors"
	"fmt"
)

// ErrNotShared is returned by Refused for a key the request does not hold
// or that Config.Shared does not name.
var ErrNotShared = errors.New("admission: not a shared key of the request")

// Claims returns the slots an admitted request must still take from the
// Ledger before it may start: one for each of its keys that Config.Shared
// names, with the key's limit. It returns nil when there are none (no key
// is shared, or id is not admitted), and a new slice otherwise.
func (q *Queue) Claims(id string) []Claim {
	if q.shared == nil {
		return nil
	}
	w := q.admitted[id]
	if w == nil {
		return nil
	}
	var out []Claim
	// w.keys, not w.res: a pool's key there is the instance bound to w.
	for _, k := range w.keys {
		if q.shared(k) {
			out = append(out, Claim{Key: k, Limit: q.resources[k].limit()})
		}
	}
	return out
}

// Refused puts an admitted request back among the waiters because the
// Ledger had no room for its shared key: it gives back the slots it held
// here and waits again in its original place in the queue, parked on key
// until Changed(key) says a slot of it may be free. Call Admit afterwards.
func (q *Queue) Refused(id, key string) error {
	w, ok := q.admitted[id]
	if !ok {
		return fmt.Errorf("refused %q: %w", id, ErrNotAdmitted)
	}
	var at *resource
	for _, r := range w.res {
		if r.key == key {
			at = r
		}
	}
	if at == nil || q.shared == nil || !q.shared(key) {
		return fmt.Errorf("refused %q on %q: %w", id, key, ErrNotShared)
	}
	delete(q.admitted, id)
	q.held.release(w.keys)
	q.inUse--
	for _, r := range w.res {
		r.waiting++
		if r != at {
			// Its slot here is free again for the waiters parked on r. Not
			// at's: the Ledger just said that one is full.
			q.markDirty(r)
		}
	}
	o := w.owner
	o.inUse--
	o.waiting++
	q.waiting[id] = w
	o.order.push(w) // by its arrival: it keeps its place
	q.park(w, at)
	q.fixOwner(o)
	q.maybeReserve()
	return nil
}
