package admission

// Claim asks for one slot of Key, granted only while fewer than Limit slots
// of Key are held. Limit may be lower than the key's configured limit when
// the queue keeps a slot reserved for another task.
type Claim struct {
	Key   string
	Limit int
}

// Ledger accounts for resource slots. The queue consults it for every
// acquisition and release; nothing assumes all holders of a key live in this
// process, so an implementation may share slots between daemons (for
// example etcd semaphores). Implementations must not retain the slices
// passed to them.
type Ledger interface {
	// TryAcquire takes one slot of every claim for holder, all or none. On
	// refusal it returns false and the index of a claim that had no room.
	TryAcquire(holder string, claims []Claim) (ok bool, full int)
	// Release gives back the slots holder took for keys.
	Release(holder string, keys []string)
	// Held is the number of slots of key currently held by anyone.
	Held(key string) int
}

// LocalLedger is the in-process Ledger: a count of held slots per key. Like
// the queue, it is not safe for concurrent use on its own.
type LocalLedger struct {
	held map[string]int
}

// NewLocalLedger returns an empty in-process ledger.
func NewLocalLedger() *LocalLedger {
	return &LocalLedger{held: make(map[string]int)}
}

// TryAcquire implements Ledger.
func (l *LocalLedger) TryAcquire(_ string, claims []Claim) (bool, int) {
	for i, c := range claims {
		if l.held[c.Key] >= c.Limit {
			return false, i
		}
	}
	for _, c := range claims {
		l.held[c.Key]++
	}
	return true, -1
}

// Release implements Ledger.
func (l *LocalLedger) Release(_ string, keys []string) {
	for _, k := range keys {
		if n := l.held[k]; n > 1 {
			l.held[k] = n - 1
		} else {
			delete(l.held, k)
		}
	}
}

// Held implements Ledger.
func (l *LocalLedger) Held(key string) int { return l.held[key] }
