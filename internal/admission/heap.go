package admission

// waiterHeap is a binary heap of waiters in queue order (priority desc,
// then arrival). A waiter sits in at most one "place" heap (the ready heap or
// one resource's blocked heap) and in the queue-wide order heap, so each
// heap kind keeps its own index field in the waiter for O(log n) removal.
type waiterHeap struct {
	items []*waiter
	order bool // true: uses waiter.orderIdx; false: waiter.placeIdx
}

// before reports whether a comes before b in queue order.
func before(a, b *waiter) bool {
	if a.priority != b.priority {
		return a.priority > b.priority
	}
	return a.seq < b.seq
}

func (h *waiterHeap) len() int { return len(h.items) }

func (h *waiterHeap) peek() *waiter {
	if len(h.items) == 0 {
		return nil
	}
	return h.items[0]
}

func (h *waiterHeap) setIdx(w *waiter, i int) {
	if h.order {
		w.orderIdx = i
	} else {
		w.placeIdx = i
	}
}

func (h *waiterHeap) idx(w *waiter) int {
	if h.order {
		return w.orderIdx
	}
	return w.placeIdx
}

func (h *waiterHeap) push(w *waiter) {
	h.items = append(h.items, w)
	h.setIdx(w, len(h.items)-1)
	h.up(len(h.items) - 1)
}

func (h *waiterHeap) pop() *waiter {
	if len(h.items) == 0 {
		return nil
	}
	w := h.items[0]
	h.removeAt(0)
	return w
}

func (h *waiterHeap) remove(w *waiter) {
	if i := h.idx(w); i >= 0 && i < len(h.items) && h.items[i] == w {
		h.removeAt(i)
	}
}

func (h *waiterHeap) removeAt(i int) {
	last := len(h.items) - 1
	w := h.items[i]
	if i != last {
		h.swap(i, last)
	}
	h.items[last] = nil
	h.items = h.items[:last]
	h.setIdx(w, -1)
	if i != last {
		if !h.down(i) {
			h.up(i)
		}
	}
}

func (h *waiterHeap) swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.setIdx(h.items[i], i)
	h.setIdx(h.items[j], j)
}

func (h *waiterHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !before(h.items[i], h.items[p]) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h *waiterHeap) down(i int) bool {
	start := i
	n := len(h.items)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && before(h.items[r], h.items[l]) {
			m = r
		}
		if !before(h.items[m], h.items[i]) {
			break
		}
		h.swap(i, m)
		i = m
	}
	return i > start
}
