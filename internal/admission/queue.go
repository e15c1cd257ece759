package admission

import (
	"errors"
	"fmt"
	"maps"
	"slices"
)

// Defaults applied by NewQueue and SetLimits for values that are not positive.
const (
	DefaultGlobalLimit     = 32
	DefaultStarvationBound = 16
)

var (
	// ErrDuplicateID is returned by Push for an ID already waiting or admitted.
	ErrDuplicateID = errors.New("admission: duplicate request id")
	// ErrNotAdmitted is returned by Release for an ID that holds no slots.
	ErrNotAdmitted = errors.New("admission: request is not admitted")
)

// Config configures a Queue.
type Config struct {
	// GlobalLimit caps the number of admitted requests; DefaultGlobalLimit
	// when not positive.
	GlobalLimit int
	// Limits are configured per-key limits (plan.yaml, daemon config); they
	// win over limits written on tags. Entries that are not positive are
	// ignored.
	Limits map[string]int
	// StarvationBound is how many admissions may overtake the head of the
	// queue before slots are reserved for it (see the package comment);
	// DefaultStarvationBound when not positive.
	StarvationBound int
	// Ledger accounts for resource slots; a new LocalLedger when nil.
	Ledger Ledger
}

// Request is one task asking to be admitted.
type Request struct {
	ID       string
	Priority int32 // higher first
	Tags     []Tag
}

// Conflict is a tag limit that disagrees with the limit in force for its key.
type Conflict struct {
	Key        string
	TagLimit   int  // the limit the tag wrote
	Limit      int  // the limit in force
	FromConfig bool // Limit is configured; otherwise it is the first tag limit seen
}

func (c Conflict) String() string {
	src := "the first tag limit seen"
	if c.FromConfig {
		src = "the configured limit"
	}
	return fmt.Sprintf("resource %q: tag limit %d ignored, %s is %d", c.Key, c.TagLimit, src, c.Limit)
}

// Stats is a snapshot of the queue.
type Stats struct {
	GlobalLimit int
	InUse       int // admitted requests holding slots
	Waiting     int
	Reserved    string // ID of the request holding a starvation reservation, if any
	Resources   []ResourceStats
}

// ResourceStats describes one key: configured, held, or wanted by a waiter.
type ResourceStats struct {
	Key     string
	Limit   int
	InUse   int // slots held, as the ledger reports them
	Waiting int // waiting requests that need this key
}

// resource is the queue's state for one key.
type resource struct {
	key        string
	configured int // 0: none
	learned    int // first explicit tag limit seen; 0: none
	blocked    waiterHeap
	waiting    int  // waiters needing this key
	reserved   bool // a slot is kept for Queue.reserved
	dirty      bool // in Queue.dirty
}

func (r *resource) limit() int {
	switch {
	case r.configured > 0:
		return r.configured
	case r.learned > 0:
		return r.learned
	}
	return 1
}

type waiter struct {
	id       string
	priority int32
	seq      uint64
	res      []*resource
	keys     []string // keys[i] == res[i].key, handed to the ledger

	place    *resource // blocked heap it sits in; nil: ready heap or admitted
	placeIdx int
	orderIdx int
	from     *resource // promoted from this resource's blocked heap into ready
	bypassed int       // admissions that overtook it while it was the head
}

type conflictID struct {
	key        string
	tag, limit int
}

// Queue is the admission queue. It is not safe for concurrent use: the
// caller holds its own lock around every call.
type Queue struct {
	ledger Ledger
	global int
	bound  int
	inUse  int
	seq    uint64

	resources map[string]*resource
	waiting   map[string]*waiter
	admitted  map[string]*waiter
	ready     waiterHeap  // candidates to try, in queue order
	order     waiterHeap  // every waiter, in queue order; its top is the head
	dirty     []*resource // resources whose blocked waiters may now fit
	reserved  *waiter
	reported  map[conflictID]struct{}
	claims    []Claim // scratch for TryAcquire
}

// NewQueue returns an empty queue.
func NewQueue(cfg Config) *Queue {
	q := &Queue{
		ledger:    cfg.Ledger,
		bound:     cfg.StarvationBound,
		resources: make(map[string]*resource),
		waiting:   make(map[string]*waiter),
		admitted:  make(map[string]*waiter),
		order:     waiterHeap{order: true},
		reported:  make(map[conflictID]struct{}),
	}
	if q.ledger == nil {
		q.ledger = NewLocalLedger()
	}
	if q.bound <= 0 {
		q.bound = DefaultStarvationBound
	}
	q.SetLimits(cfg.GlobalLimit, cfg.Limits)
	return q
}

func (q *Queue) resource(key string) *resource {
	r := q.resources[key]
	if r == nil {
		r = &resource{key: key}
		q.resources[key] = r
	}
	return r
}

// Push adds a waiting request. It returns the tag-limit conflicts not
// reported before (each key, tag limit and limit in force once over the
// queue's life), for the caller to log. Duplicate keys in r.Tags are one
// slot. Call Admit afterwards.
func (q *Queue) Push(r Request) ([]Conflict, error) {
	if _, ok := q.waiting[r.ID]; ok {
		return nil, fmt.Errorf("push %q: %w", r.ID, ErrDuplicateID)
	}
	if _, ok := q.admitted[r.ID]; ok {
		return nil, fmt.Errorf("push %q: %w", r.ID, ErrDuplicateID)
	}
	for _, t := range r.Tags {
		if t.Key == "" || (t.Explicit && t.Limit <= 0) {
			return nil, fmt.Errorf("push %q: %w", r.ID, &TagError{Tag: t.String(), Reason: "empty key or non-positive limit"})
		}
	}
	w := &waiter{id: r.ID, priority: r.Priority, placeIdx: -1, orderIdx: -1}
	var conflicts []Conflict
	for _, t := range r.Tags {
		res := q.resource(t.Key)
		if !slices.Contains(w.res, res) {
			w.res = append(w.res, res)
			w.keys = append(w.keys, t.Key)
		}
		if t.Explicit {
			if c, ok := q.learn(res, t.Limit); ok {
				conflicts = append(conflicts, c)
			}
		}
	}
	q.seq++
	w.seq = q.seq
	for _, res := range w.res {
		res.waiting++
	}
	q.waiting[w.id] = w
	q.order.push(w)
	q.ready.push(w)
	return conflicts, nil
}

// learn records an explicit tag limit for res and returns a conflict that
// has not been reported yet, if any.
func (q *Queue) learn(res *resource, tagLimit int) (Conflict, bool) {
	if res.learned == 0 {
		res.learned = tagLimit
		if res.configured == 0 && tagLimit > 1 {
			// The key's limit just rose from the default 1.
			q.markDirty(res)
		}
	}
	c := Conflict{Key: res.key, TagLimit: tagLimit}
	switch {
	case res.configured > 0 && tagLimit != res.configured:
		c.Limit, c.FromConfig = res.configured, true
	case res.configured == 0 && tagLimit != res.learned:
		c.Limit = res.learned
	default:
		return Conflict{}, false
	}
	id := conflictID{key: c.Key, tag: c.TagLimit, limit: c.Limit}
	if _, seen := q.reported[id]; seen {
		return Conflict{}, false
	}
	q.reported[id] = struct{}{}
	return c, true
}

// Admit admits every request that fits now and returns their IDs in the
// order admitted (queue order among those that fit). Admitted requests hold
// one global slot and one slot of each of their resources until Release.
// Call it after every Push, Release, Remove, SetLimits and Changed.
func (q *Queue) Admit() []string {
	var out []string
	for {
		for len(q.dirty) > 0 {
			r := q.dirty[len(q.dirty)-1]
			q.dirty = q.dirty[:len(q.dirty)-1]
			r.dirty = false
			q.promote(r)
		}
		w := q.ready.peek()
		if r := q.reserved; r != nil && r.place == nil {
			// The reserved request goes first even when a higher-priority
			// request arrived after the reservation was made.
			w = r
		}
		if w == nil || !q.globalRoomFor(w) {
			return out
		}
		q.ready.remove(w)
		from := w.from
		w.from = nil
		if ok, full := q.ledger.TryAcquire(w.id, q.claimsFor(w)); !ok {
			r := w.res[full]
			w.place = r
			r.blocked.push(w)
			if from != nil && from != r {
				// w leaves from's slot unused: let the next waiter there try.
				q.promote(from)
			}
			continue
		}
		q.admit(w)
		out = append(out, w.id)
	}
}

func (q *Queue) globalRoomFor(w *waiter) bool {
	limit := q.global
	if q.reserved != nil && q.reserved != w {
		limit--
	}
	return q.inUse < limit
}

func (q *Queue) limitFor(r *resource, w *waiter) int {
	l := r.limit()
	if r.reserved && q.reserved != w {
		l--
	}
	return l
}

func (q *Queue) claimsFor(w *waiter) []Claim {
	q.claims = q.claims[:0]
	for _, r := range w.res {
		q.claims = append(q.claims, Claim{Key: r.key, Limit: q.limitFor(r, w)})
	}
	return q.claims
}

// promote moves the first waiters blocked on r into the ready heap, as many
// as r has free slots. Waiters promoted earlier and still in the ready heap
// are not counted: they may come later in queue order than r's blocked
// waiters, and over-promoting only costs a retry.
func (q *Queue) promote(r *resource) {
	held := q.ledger.Held(r.key)
	// The reserved request may sit below higher-priority arrivals; it is
	// tried first in Admit.
	if w := q.reserved; w != nil && w.place == r && held < q.limitFor(r, w) {
		r.blocked.remove(w)
		q.toReady(w, r)
		held++
	}
	for {
		w := r.blocked.peek()
		if w == nil || held >= q.limitFor(r, w) {
			return
		}
		r.blocked.pop()
		q.toReady(w, r)
		held++
	}
}

func (q *Queue) toReady(w *waiter, from *resource) {
	w.place = nil
	w.from = from
	q.ready.push(w)
}

func (q *Queue) markDirty(r *resource) {
	if !r.dirty && r.blocked.len() > 0 {
		r.dirty = true
		q.dirty = append(q.dirty, r)
	}
}

// admit records w as admitted; its slots are already taken in the ledger.
func (q *Queue) admit(w *waiter) {
	if head := q.order.peek(); head != w {
		head.bypassed++
	}
	q.order.remove(w)
	q.leave(w)
	delete(q.waiting, w.id)
	q.admitted[w.id] = w
	q.inUse++
	q.maybeReserve()
}

// leave drops w's waiting counts and any reservation it held.
func (q *Queue) leave(w *waiter) {
	for _, r := range w.res {
		r.waiting--
	}
	if q.reserved == w {
		q.reserved = nil
		for _, r := range w.res {
			r.reserved = false
			q.markDirty(r)
		}
	}
}

// maybeReserve reserves slots for the head once it has been overtaken more
// than the starvation bound allows.
func (q *Queue) maybeReserve() {
	head := q.order.peek()
	if q.reserved != nil || head == nil || head.bypassed <= q.bound {
		return
	}
	q.reserved = head
	for _, r := range head.res {
		r.reserved = true
	}
}

// Release returns the slots held by an admitted request. Call Admit afterwards.
func (q *Queue) Release(id string) error {
	w, ok := q.admitted[id]
	if !ok {
		return fmt.Errorf("release %q: %w", id, ErrNotAdmitted)
	}
	delete(q.admitted, id)
	q.ledger.Release(id, w.keys)
	q.inUse--
	for _, r := range w.res {
		q.markDirty(r)
	}
	return nil
}

// Remove withdraws a request that is still waiting (it was cancelled). It
// reports whether id was waiting. Call Admit afterwards.
func (q *Queue) Remove(id string) bool {
	w, ok := q.waiting[id]
	if !ok {
		return false
	}
	delete(q.waiting, id)
	if w.place != nil {
		w.place.blocked.remove(w)
		w.place = nil
	} else {
		q.ready.remove(w)
		if w.from != nil {
			// It may have been the one promoted to use a free slot.
			q.markDirty(w.from)
			w.from = nil
		}
	}
	q.order.remove(w)
	q.leave(w)
	q.maybeReserve()
	return true
}

// Changed tells the queue that slots of key may have been freed outside it
// (another daemon released them in a shared ledger). Call Admit afterwards.
func (q *Queue) Changed(key string) {
	if r, ok := q.resources[key]; ok {
		q.markDirty(r)
	}
}

// SetLimits replaces the global limit (DefaultGlobalLimit when not positive)
// and the configured per-key limits (a reload). Lowering a limit never takes
// slots back; new admissions wait until holders drop below it. Call Admit
// afterwards.
func (q *Queue) SetLimits(global int, limits map[string]int) {
	if global <= 0 {
		global = DefaultGlobalLimit
	}
	q.global = global
	for _, r := range q.resources {
		if n := limits[r.key]; n != r.configured {
			r.configured = max(n, 0)
			q.markDirty(r)
		}
	}
	for k, n := range limits {
		if n > 0 {
			q.resource(k).configured = n
		}
	}
}

// Stats returns a snapshot: the global limit and use, the number waiting,
// and every resource that is configured, held, or wanted by a waiter,
// sorted by key.
func (q *Queue) Stats() Stats {
	s := Stats{GlobalLimit: q.global, InUse: q.inUse, Waiting: len(q.waiting)}
	if q.reserved != nil {
		s.Reserved = q.reserved.id
	}
	for _, k := range slices.Sorted(maps.Keys(q.resources)) {
		r := q.resources[k]
		held := q.ledger.Held(k)
		if r.configured == 0 && held == 0 && r.waiting == 0 {
			continue
		}
		s.Resources = append(s.Resources, ResourceStats{Key: k, Limit: r.limit(), InUse: held, Waiting: r.waiting})
	}
	return s
}

// Limit returns the limit in force for key.
func (q *Queue) Limit(key string) int {
	if r, ok := q.resources[key]; ok {
		return r.limit()
	}
	return 1
}
