package admission

// owner is the queue's state for one Request.Owner: the unit that gets a
// fair share of the global limit.
type owner struct {
	name    string
	inUse   int        // admitted requests holding slots
	waiting int        // waiting requests
	ready   waiterHeap // its waiters to try, in queue order
	order   waiterHeap // all its waiters, in queue order (order: true)

	readyIdx, orderIdx int // positions in Queue.readyOwners and Queue.orderOwners; -1: absent
}

// ownerHeap orders owners by fair share: fewest admitted requests first,
// then by their first waiter in queue order. One heap looks at the owners'
// ready waiters (what Admit tries next), the other at all their waiters
// (whose first is the head of the queue, for the starvation rule).
type ownerHeap struct {
	items []*owner
	ready bool // true: keyed by ready.peek(), uses readyIdx; false: order.peek(), orderIdx
}

func (h *ownerHeap) first(o *owner) *waiter {
	if h.ready {
		return o.ready.peek()
	}
	return o.order.peek()
}

func (h *ownerHeap) idx(o *owner) *int {
	if h.ready {
		return &o.readyIdx
	}
	return &o.orderIdx
}

func (h *ownerHeap) less(a, b *owner) bool {
	if a.inUse != b.inUse {
		return a.inUse < b.inUse
	}
	return before(h.first(a), h.first(b))
}

func (h *ownerHeap) peek() *owner {
	if len(h.items) == 0 {
		return nil
	}
	return h.items[0]
}

// fix puts o where its key says: in the heap when it has waiters of the
// heap's kind, out of it otherwise. Call it after o's inUse or waiters
// change.
func (h *ownerHeap) fix(o *owner) {
	i := *h.idx(o)
	if i >= 0 && len(h.items) == 1 && h.first(o) != nil {
		return // alone: nothing to reorder (one owner is the common case)
	}
	switch empty := h.first(o) == nil; {
	case empty && i >= 0:
		h.removeAt(i)
	case empty:
	case i < 0:
		h.items = append(h.items, o)
		*h.idx(o) = len(h.items) - 1
		h.up(len(h.items) - 1)
	default:
		if !h.down(i) {
			h.up(i)
		}
	}
}

func (h *ownerHeap) removeAt(i int) {
	last := len(h.items) - 1
	o := h.items[i]
	if i != last {
		h.swap(i, last)
	}
	h.items[last] = nil
	h.items = h.items[:last]
	*h.idx(o) = -1
	if i != last && !h.down(i) {
		h.up(i)
	}
}

func (h *ownerHeap) swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	*h.idx(h.items[i]) = i
	*h.idx(h.items[j]) = j
}

func (h *ownerHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(h.items[i], h.items[p]) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h *ownerHeap) down(i int) bool {
	start := i
	n := len(h.items)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && h.less(h.items[r], h.items[l]) {
			m = r
		}
		if !h.less(h.items[m], h.items[i]) {
			break
		}
		h.swap(i, m)
		i = m
	}
	return i > start
}
