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
	// Shared reports whether a key's slots are shared beyond this queue
	// (counted by a Ledger as well): an admitted request must still claim
	// those (see Claims). Nil: every key is this queue's alone.
	Shared func(key string) bool
	// Pools are the resources made of named instances (see Pool); a
	// request's tag "<pool>:*" gets one free instance at admission.
	Pools []Pool
	// Prefer ranks free instances for a waiter; nil ranks all alike, so
	// the least recently used is taken.
	Prefer Preference
}

// Request is one task asking to be admitted.
type Request struct {
	ID string
	// Owner is who the request counts against for fair shares of the
	// global limit (the submitting principal); "" is an owner like any
	// other.
	Owner    string
	Priority int32 // higher first among one owner's requests
	Tags     []Tag
	// Preempt: while it waits for a pool instance it may take the slots of
	// an admitted Preemptible request of lower priority (see Preemptions).
	Preempt bool
	// Preemptible: once admitted, a Preempt request of higher priority may
	// take its slots.
	Preemptible bool
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
	Owners      []OwnerStats // owners with requests waiting or admitted, sorted by name
}

// OwnerStats describes one owner's share.
type OwnerStats struct {
	Owner   string
	InUse   int // admitted requests: global slots held
	Waiting int
}

// ResourceStats describes one key: configured, held, or wanted by a waiter.
type ResourceStats struct {
	Key     string
	Limit   int
	InUse   int // slots held by this queue's admitted requests
	Waiting int // waiting requests that need this key
}

// resource is the queue's state for one key.
type resource struct {
	key        string
	configured int // 0: none
	learned    int // first explicit tag limit seen; 0: none
	// blocked holds the waiters parked on this key, a heap per owner so
	// that each owner's first waiters are looked at when a slot frees
	// (see promote). Only owners with waiters here have one; the
	// capacity beyond len keeps emptied heaps' buffers for reuse.
	blocked  []blockedSet
	waiting  int  // waiters needing this key
	reserved bool // a slot is kept for Queue.reserved
	dirty    bool // in Queue.dirty
	// gone is set on an instance no longer declared (SetPools): its limit
	// is 0, so it takes no new request while its holders keep it.
	gone bool

	pool *pool // set on a pool's "<name>:*" resource: the pool it stands for
	of   *pool // set on an instance's resource: the pool it belongs to
	idx  int   // the instance's index in of.instances
}

func (r *resource) limit() int {
	switch {
	case r.gone:
		return 0
	case r.configured > 0:
		return r.configured
	case r.learned > 0:
		return r.learned
	}
	return 1
}

type waiter struct {
	id       string
	owner    *owner
	priority int32
	seq      uint64
	res      []*resource
	keys     []string // keys[i] == res[i].key

	place    *resource // resource whose blocked heap it sits in; nil: its owner's ready heap, or admitted
	placeIdx int
	orderIdx int
	from     *resource // promoted from this resource's blocked heap into ready
	bypassed int       // admissions that overtook it while it was the head

	pooled bool        // some tag asks for any instance of a pool
	bound  []*resource // admitted: the pool instances it holds

	preempt, preemptible bool // see Request
}

type conflictID struct {
	key        string
	tag, limit int
}

// Queue is the admission queue. It is not safe for concurrent use: the
// caller holds its own lock around every call.
type Queue struct {
	held   slotCounts
	shared func(key string) bool
	global int
	bound  int
	inUse  int
	seq    uint64

	resources map[string]*resource
	owners    map[string]*owner // owners with requests waiting or admitted
	lastOwner *owner            // the owner Push saw last: most pushes come from one
	waiting   map[string]*waiter
	admitted  map[string]*waiter
	// readyOwners holds the owners with waiters to try, fairest first: the
	// next request tried is the first of its top owner's ready heap.
	// orderOwners holds the owners with waiters; the first waiter of its
	// top owner is the head of the queue.
	readyOwners ownerHeap
	orderOwners ownerHeap
	dirty       []*resource // resources whose blocked waiters may now fit
	reserved    *waiter
	reported    map[conflictID]struct{}
	claims      []Claim // scratch for tryAcquire

	pools      map[string]*pool
	prefer     Preference
	admissions uint64 // admissions so far: the clock of pool.used

	// preempting holds the waiters that may preempt, so Preemptions costs
	// nothing while there are none.
	preempting map[string]*waiter
}

// NewQueue returns an empty queue.
func NewQueue(cfg Config) *Queue {
	q := &Queue{
		held:        make(slotCounts),
		shared:      cfg.Shared,
		bound:       cfg.StarvationBound,
		resources:   make(map[string]*resource),
		owners:      make(map[string]*owner),
		waiting:     make(map[string]*waiter),
		admitted:    make(map[string]*waiter),
		readyOwners: ownerHeap{ready: true},
		reported:    make(map[conflictID]struct{}),
	}
	if q.bound <= 0 {
		q.bound = DefaultStarvationBound
	}
	q.prefer = cfg.Prefer
	q.setPools(cfg.Pools)
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

func (q *Queue) owner(name string) *owner {
	if o := q.lastOwner; o != nil && o.name == name {
		return o
	}
	o := q.owners[name]
	if o == nil {
		o = &owner{name: name, order: waiterHeap{order: true}, readyIdx: -1, orderIdx: -1}
		q.owners[name] = o
	}
	q.lastOwner = o
	return o
}

// fixOwner re-sorts o after its waiters or its count of admitted requests
// changed, and forgets it once it has neither.
func (q *Queue) fixOwner(o *owner) {
	q.readyOwners.fix(o)
	q.orderOwners.fix(o)
	if o.inUse == 0 && o.waiting == 0 {
		delete(q.owners, o.name)
		if q.lastOwner == o {
			q.lastOwner = nil
		}
	}
}

// head is the first waiter in fair order, resources aside: the first
// waiter of the owner with the fewest admitted requests.
func (q *Queue) head() *waiter {
	if o := q.orderOwners.peek(); o != nil {
		return o.order.peek()
	}
	return nil
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
		if name := PoolOf(t.Key); name != "" && (q.pools[name] == nil || q.pools[name].gone) {
			return nil, fmt.Errorf("push %q: %w", r.ID, &TagError{Tag: t.String(), Reason: fmt.Sprintf("no pool %q is declared", name)})
		}
	}
	w := &waiter{id: r.ID, owner: q.owner(r.Owner), priority: r.Priority, placeIdx: -1, orderIdx: -1,
		preempt: r.Preempt, preemptible: r.Preemptible}
	var conflicts []Conflict
	for _, t := range r.Tags {
		res := q.resource(t.Key)
		if !slices.Contains(w.res, res) {
			w.res = append(w.res, res)
			w.keys = append(w.keys, t.Key)
			w.pooled = w.pooled || res.pool != nil
		}
		if t.Explicit && res.pool == nil { // a pool's limits are its instances'
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
	if w.preempt {
		if q.preempting == nil {
			q.preempting = map[string]*waiter{}
		}
		q.preempting[w.id] = w
	}
	o := w.owner
	o.waiting++
	o.order.push(w)
	o.ready.push(w)
	q.fixOwner(o)
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
// order admitted (fair order among those that fit: see the package
// comment). Admitted requests hold one global slot and one slot of each of
// their resources until Release. Call it after every Push, Release,
// Remove, SetLimits and Changed.
func (q *Queue) Admit() []string {
	var out []string
	for {
		for len(q.dirty) > 0 {
			r := q.dirty[len(q.dirty)-1]
			q.dirty = q.dirty[:len(q.dirty)-1]
			r.dirty = false
			q.promote(r)
		}
		var w *waiter
		if o := q.readyOwners.peek(); o != nil {
			w = o.ready.peek()
		}
		if r := q.reserved; r != nil && r.place == nil {
			// The reserved request goes first even when a fairer request
			// arrived after the reservation was made.
			w = r
		}
		if w == nil || !q.globalRoomFor(w) {
			return out
		}
		w.owner.ready.remove(w)
		q.readyOwners.fix(w.owner)
		from := w.from
		w.from = nil
		claims, none := q.claimsFor(w)
		ok, full := none == nil, -1
		if ok {
			ok, full = q.held.tryAcquire(claims)
		}
		if !ok {
			r := none
			if r == nil {
				// Claims are in w.res order; a picked instance another
				// holder took meanwhile parks w on its pool.
				r = w.res[full]
			}
			q.park(w, r)
			if from != nil && from != r {
				// w leaves from's slot unused: let its owner's next waiter
				// there try (other owners' were promoted already).
				q.promoteOwner(from, w.owner, q.heldOf(from))
			}
			continue
		}
		if len(q.pools) > 0 {
			q.bind(w, claims)
		}
		q.admit(w)
		out = append(out, w.id)
	}
}

// blockedSet is one owner's waiters parked on one resource.
type blockedSet struct {
	owner *owner
	heap  waiterHeap
}

// blockedOf returns the index of o's set in r.blocked, or -1. Few owners
// wait on any one resource, so a scan beats a map.
func (r *resource) blockedOf(o *owner) int {
	for i := range r.blocked {
		if r.blocked[i].owner == o {
			return i
		}
	}
	return -1
}

// dropBlocked removes the empty set at i, keeping its buffer past len.
func (r *resource) dropBlocked(i int) {
	last := len(r.blocked) - 1
	r.blocked[i], r.blocked[last] = r.blocked[last], r.blocked[i]
	r.blocked[last].owner = nil
	r.blocked = r.blocked[:last]
}

// park puts w in the blocked heap of its owner on r.
func (q *Queue) park(w *waiter, r *resource) {
	i := r.blockedOf(w.owner)
	if i < 0 {
		i = len(r.blocked)
		if i < cap(r.blocked) {
			r.blocked = r.blocked[:i+1] // reuse an emptied set's buffer
		} else {
			r.blocked = append(r.blocked, blockedSet{})
		}
		r.blocked[i].owner = w.owner
	}
	w.place = r
	r.blocked[i].heap.push(w)
}

// unpark takes w out of the blocked heap it sits in.
func (q *Queue) unpark(w *waiter) {
	r := w.place
	i := r.blockedOf(w.owner)
	h := &r.blocked[i].heap
	h.remove(w)
	if h.len() == 0 {
		r.dropBlocked(i)
	}
	w.place = nil
}

func (q *Queue) globalRoomFor(w *waiter) bool {
	limit := q.global
	if q.reserved != nil && q.reserved != w {
		limit--
	}
	return q.inUse < limit
}

func (q *Queue) limitFor(r *resource, w *waiter) int {
	if r.pool != nil {
		// A pool's slots are its instances' (see heldOf).
		return q.poolRoom(r.pool, w)
	}
	l := r.limit()
	if r.reserved && q.reserved != w {
		l--
	}
	return l
}

// heldOf is the number of r's slots held, as promote counts them: for a
// pool, whose limitFor is the room left, none.
func (q *Queue) heldOf(r *resource) int {
	if r.pool != nil {
		return 0
	}
	return q.held.held(r.key)
}

// claimsFor returns w's claims, one per resource in w.res order, a pool's
// being the instance picked for w. When a pool has no instance free for w
// it returns that pool's resource instead.
func (q *Queue) claimsFor(w *waiter) ([]Claim, *resource) {
	q.claims = q.claims[:0]
	for _, r := range w.res {
		c := Claim{} // a pool's is filled below, once the named keys are known
		if r.pool == nil {
			c = Claim{Key: r.key, Limit: q.limitFor(r, w)}
		}
		q.claims = append(q.claims, c)
	}
	if !w.pooled {
		return q.claims, nil
	}
	// Picked after the named keys, so a pick never takes an instance w
	// also names.
	for i, r := range w.res {
		if r.pool == nil {
			continue
		}
		inst := q.pick(r.pool, w, q.claims)
		if inst == nil {
			return nil, r
		}
		q.claims[i] = Claim{Key: inst.key, Limit: q.limitFor(inst, w)}
	}
	return q.claims, nil
}

// bind records, for a request about to be admitted with claims, the pool
// instances it holds (picked or named) and, when it picked any, the keys to
// release; it marks the instances used now.
func (q *Queue) bind(w *waiter, claims []Claim) {
	q.admissions++
	w.bound = w.bound[:0]
	for i, r := range w.res {
		inst := r
		if r.pool != nil {
			inst = q.resources[claims[i].Key]
		}
		if inst.of == nil {
			continue
		}
		inst.of.used[inst.idx] = q.admissions
		w.bound = append(w.bound, inst)
	}
	if w.pooled {
		keys := make([]string, len(claims))
		for i, c := range claims {
			keys[i] = c.Key
		}
		w.keys = keys
	}
}

// promote moves the first waiters blocked on r into their owners' ready
// heaps: of each owner, as many as r has free slots, since which owner's
// waiter is fairest is decided in Admit, among all owners' candidates.
// Waiters promoted earlier and still in a ready heap are not counted: they
// may come later in queue order than r's blocked waiters, and
// over-promoting only costs a retry.
func (q *Queue) promote(r *resource) {
	held := q.heldOf(r)
	// The reserved request may sit below fairer arrivals; it is tried
	// first in Admit.
	if w := q.reserved; w != nil && w.place == r && held < q.limitFor(r, w) {
		q.unpark(w)
		q.toReady(w, r)
		held++
	}
	for i := len(r.blocked) - 1; i >= 0; i-- { // backwards: promoteOwner may drop set i
		q.promoteOwner(r, r.blocked[i].owner, held)
	}
}

// promoteOwner moves o's first waiters blocked on r into o's ready heap
// while r has room beyond held.
func (q *Queue) promoteOwner(r *resource, o *owner, held int) {
	i := r.blockedOf(o)
	if i < 0 {
		return
	}
	h := &r.blocked[i].heap
	for {
		w := h.peek()
		if w == nil || held >= q.limitFor(r, w) {
			break
		}
		h.pop()
		q.toReady(w, r)
		held++
	}
	if h.len() == 0 {
		r.dropBlocked(i)
	}
}

func (q *Queue) toReady(w *waiter, from *resource) {
	w.place = nil
	w.from = from
	w.owner.ready.push(w)
	q.readyOwners.fix(w.owner)
}

func (q *Queue) markDirty(r *resource) {
	if !r.dirty && len(r.blocked) > 0 {
		r.dirty = true
		q.dirty = append(q.dirty, r)
	}
	if r.of != nil {
		// A slot of an instance is a slot of its pool.
		r.of.mayBeFree(r.idx)
		q.markDirty(r.of.any)
	}
}

// admit records w as admitted; its slots are already counted in q.held.
func (q *Queue) admit(w *waiter) {
	if head := q.head(); head != w {
		head.bypassed++
	}
	o := w.owner
	o.order.remove(w)
	q.leave(w)
	delete(q.waiting, w.id)
	delete(q.preempting, w.id)
	q.admitted[w.id] = w
	q.inUse++
	o.inUse++
	o.waiting--
	q.fixOwner(o)
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
	head := q.head()
	if q.reserved != nil || head == nil || head.bypassed <= q.bound || stuck(head) {
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
	q.held.release(w.keys)
	q.inUse--
	w.owner.inUse--
	q.fixOwner(w.owner)
	for _, r := range w.res {
		q.markDirty(r)
	}
	for _, r := range w.bound {
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
	delete(q.preempting, id)
	o := w.owner
	if w.place != nil {
		q.unpark(w)
	} else {
		o.ready.remove(w)
		if w.from != nil {
			// It may have been the one promoted to use a free slot.
			q.markDirty(w.from)
			w.from = nil
		}
	}
	o.order.remove(w)
	o.waiting--
	q.leave(w)
	q.fixOwner(o)
	q.maybeReserve()
	return true
}

// Changed tells the queue that slots of key may have been freed outside it
// (a holder released them in the shared Ledger): requests Refused on key
// are tried again. Call Admit afterwards.
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
		if r.pool != nil {
			s.Resources = append(s.Resources, q.poolStats(r.pool))
			continue
		}
		held := q.held.held(k)
		if r.configured == 0 && held == 0 && r.waiting == 0 {
			continue
		}
		s.Resources = append(s.Resources, ResourceStats{Key: k, Limit: r.limit(), InUse: held, Waiting: r.waiting})
	}
	for _, name := range slices.Sorted(maps.Keys(q.owners)) {
		o := q.owners[name]
		s.Owners = append(s.Owners, OwnerStats{Owner: name, InUse: o.inUse, Waiting: o.waiting})
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
