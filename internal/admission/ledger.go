package admission

import (
	"context"
	"sync"
)

// Claim asks for one slot of Key, granted only while fewer than Limit slots
// of Key are held.
type Claim struct {
	Key   string
	Limit int
}

// Ledger holds the slots of resources shared beyond this process: their
// holders may live in other daemons (a cluster keeps them as etcd
// semaphores). The queue never calls it: it counts the slots its own
// requests hold, decides admissions from those counts alone, and names the
// shared slots an admitted request must still claim (Queue.Claims). The
// caller asks the ledger for them outside its own lock, since an answer may
// be a network round trip, and reports a refusal back (Queue.Refused).
//
// A Ledger is safe for concurrent use. Implementations must not retain the
// slices passed to them.
type Ledger interface {
	// Acquire takes one slot of every claim for holder, all or none. On
	// refusal it returns false and the index of a claim that had no room,
	// holding nothing. An error means the ledger could not say (it is
	// unreachable, ctx ended): holder holds nothing, and the caller may ask
	// again. Acquiring what holder already holds is not counted twice.
	Acquire(ctx context.Context, holder string, claims []Claim) (ok bool, full int, err error)
	// Release gives back the slots holder took for keys; keys it does not
	// hold are ignored. On an error the caller may release again.
	Release(ctx context.Context, holder string, keys []string) error
}

// LocalLedger is a Ledger kept in this process's memory: a set of holders
// per key. Queues in one process (or tests standing in for daemons) can
// share slots through it; it never fails and never blocks.
type LocalLedger struct {
	mu      sync.Mutex
	holders map[string]map[string]struct{} // key → holders
}

// NewLocalLedger returns an empty in-process ledger.
func NewLocalLedger() *LocalLedger {
	return &LocalLedger{holders: make(map[string]map[string]struct{})}
}

// Acquire implements Ledger.
func (l *LocalLedger) Acquire(_ context.Context, holder string, claims []Claim) (bool, int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, c := range claims {
		hs := l.holders[c.Key]
		if _, mine := hs[holder]; !mine && len(hs) >= c.Limit {
			return false, i, nil
		}
	}
	for _, c := range claims {
		hs := l.holders[c.Key]
		if hs == nil {
			hs = make(map[string]struct{})
			l.holders[c.Key] = hs
		}
		hs[holder] = struct{}{}
	}
	return true, -1, nil
}

// Release implements Ledger.
func (l *LocalLedger) Release(_ context.Context, holder string, keys []string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		delete(l.holders[k], holder)
		if len(l.holders[k]) == 0 {
			delete(l.holders, k)
		}
	}
	return nil
}

// Held is the number of slots of key held by anyone.
func (l *LocalLedger) Held(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.holders[key])
}

// slotCounts is the queue's own count of the slots its admitted requests
// hold, per key. It is what admission decides on: a shared key's holders in
// other processes are the Ledger's to count, after admission.
type slotCounts map[string]int

func (s slotCounts) tryAcquire(claims []Claim) (bool, int) {
	for i, c := range claims {
		if s[c.Key] >= c.Limit {
			return false, i
		}
	}
	for _, c := range claims {
		s[c.Key]++
	}
	return true, -1
}

func (s slotCounts) release(keys []string) {
	for _, k := range keys {
		if n := s[k]; n > 1 {
			s[k] = n - 1
		} else {
			delete(s, k)
		}
	}
}

func (s slotCounts) held(key string) int { return s[key] }
