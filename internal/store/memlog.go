package store

// eventLog is the in-memory twin's event log: fixed-size chunks, so
// appending never copies what is already stored (one growing slice copied
// the whole log on every growth, with a write barrier per pointer), and
// pruning the front frees whole chunks. It keeps pointers to the events
// the writers handed over (the store owns them), not copies.
type eventLog struct {
	chunks [][]*Event
	head   int // events already dropped from chunks[0]
	n      int // events retained
}

const logChunk = 4096

func (l *eventLog) append(e *Event) {
	if len(l.chunks) == 0 || len(l.chunks[len(l.chunks)-1]) == logChunk {
		l.chunks = append(l.chunks, make([]*Event, 0, logChunk))
	}
	last := len(l.chunks) - 1
	l.chunks[last] = append(l.chunks[last], e)
	l.n++
}

func (l *eventLog) len() int { return l.n }

// at returns the i-th retained event (0 is the oldest).
func (l *eventLog) at(i int) *Event {
	i += l.head
	return l.chunks[i/logChunk][i%logChunk]
}

// dropFront forgets the k oldest events.
func (l *eventLog) dropFront(k int) {
	for ; k > 0; k-- {
		l.chunks[0][l.head] = nil // let it be collected
		l.head++
		l.n--
		if l.head == logChunk {
			l.chunks[0] = nil
			l.chunks = l.chunks[1:]
			l.head = 0
		}
	}
	if l.n == 0 {
		l.chunks, l.head = nil, 0
	}
}
