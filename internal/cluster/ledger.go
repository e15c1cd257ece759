package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/aura-dev/aura/internal/admission"
)

// SemaphorePrefix is where the semaphores of cluster-scope resources live
// in etcd:
//
//	<prefix>h/<key>/<slot>    one per slot held, numbered 0 to limit-1: the task holding it
//	<prefix>w/<node>          a node with tasks refused a slot: the keys they wait for
//
// Resource keys are path-escaped, so they cannot contain a '/'. Every
// one of these keys lives on its node's lease: a node that dies gives its
// slots and its place in line back when its lease lapses.
const SemaphorePrefix = "/aura/sem/"

// maxConflicts bounds how often one Acquire retries a grant that lost a
// race with another node before it reports the contention as an error.
const maxConflicts = 64

// ErrLeaseInDoubt wraps why a Ledger grants nothing now: no keepalive of
// the node's lease succeeded recently, so the lease may lapse (and its
// slots go to other nodes) at any moment.
var ErrLeaseInDoubt = errors.New("this node's etcd session is in doubt: cluster-scope resources are not granted until it is confirmed")

// LedgerConfig wires a Ledger.
type LedgerConfig struct {
	Client *clientv3.Client
	// Node is this node's name: its place in line is kept under it.
	Node string
	// Lease returns the node's session lease, on which every key the
	// Ledger writes is put. It may change (a new session after one
	// lapsed): what this node held and waited for on the old one is
	// forgotten.
	Lease  func() clientv3.LeaseID
	Prefix string // SemaphorePrefix when empty
	Logger *slog.Logger
}

// Ledger is an admission.Ledger on etcd: the slots of cluster-scope
// resources are counting semaphores that every node of the cluster shares.
//
// A resource of limit n has n numbered slots. A grant is one transaction
// over all of a task's keys (all or none), optimistic: read the holders,
// pick a free slot of each resource, then write them all on condition that
// none of those slots was taken since, else read again. Tasks granted at
// once mostly pick different slots, so they seldom make each other read
// again. A task holds nothing while it waits, so two tasks needing the
// same resources in opposite orders never deadlock.
//
// Fairness is between nodes, by etcd revision: a node whose task is
// refused registers, once, under w/<node> with the keys its refused tasks
// wait for; the registration's create revision is the node's place in
// line. A grant on a key counts, besides the key's holders, one slot for
// every node registered earlier for that key, so a node never overtakes
// one that waited longer. Which of its own tasks uses a node's place is its
// admission queue's choice (priority, fair shares); a node granted a slot
// while registered goes to the back of the line, so a node with a steady
// stream of tasks cannot keep the front. One place per node, for all keys,
// keeps the order the same on every key: the earliest registered node
// waits only on holders, and holders end.
//
// The revision of a grant is its fencing token (Fences): a slot granted
// later always has a higher one.
type Ledger struct {
	kv     *clientv3.Client
	node   string
	leaseF func() clientv3.LeaseID
	prefix string
	log    *slog.Logger

	regMu sync.Mutex // orders this node's writes of its registration

	mu    sync.Mutex // guards the fields below
	lease clientv3.LeaseID
	doubt error                      // set while the session is in doubt (Doubt, Trust)
	held  map[string]map[string]held // holder → key → its slot
	// waiting holds, per key, this node's tasks refused a slot of it and
	// not granted or withdrawn since: the node's registration names these
	// keys.
	waiting map[string]map[string]struct{}
	// regKeys are the keys the node's registration in etcd names (nil:
	// none), as last written; regKnown is false when a write failed, so
	// that the next sync writes whatever is true then.
	regKeys  []string
	regKnown bool
	// owed are the slots whose release failed (etcd unreachable): they are
	// deleted again once etcd answers (Trust, the watch), since a lease
	// that outlives the trouble would keep them held for ever.
	owed     map[string][]string // holder → keys
	flushing bool
	flushes  sync.WaitGroup // flushOwed's goroutine; Watch waits for it on return
}

var _ admission.Ledger = (*Ledger)(nil)

// NewLedger returns a Ledger on cfg's etcd client.
func NewLedger(cfg LedgerConfig) *Ledger {
	if cfg.Prefix == "" {
		cfg.Prefix = SemaphorePrefix
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Ledger{
		kv: cfg.Client, node: cfg.Node, leaseF: cfg.Lease, prefix: cfg.Prefix, log: cfg.Logger,
		held: map[string]map[string]held{}, waiting: map[string]map[string]struct{}{},
	}
}

func (l *Ledger) holdersDir(key string) string { return l.prefix + "h/" + url.PathEscape(key) + "/" }
func (l *Ledger) slotKey(key string, slot int) string {
	return l.holdersDir(key) + strconv.Itoa(slot)
}

// held is a slot a holder of this node holds: its number and the
// revision of its grant (the fencing token).
type held struct {
	slot int
	rev  int64
}

// slotOf returns the etcd key of the slot of key holder holds.
func (l *Ledger) slotOf(holder, key string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h, ok := l.held[holder][key]
	if !ok {
		return "", false
	}
	return l.slotKey(key, h.slot), true
}
func (l *Ledger) registrations() string        { return l.prefix + "w/" }
func (l *Ledger) registration(n string) string { return l.registrations() + n }

// registered is what a node's registration says.
type registered struct {
	Keys []string `json:"keys"`
}

// currentLease returns the node's lease, forgetting what this node held
// and waited for on an earlier one, or why nothing may be granted now.
func (l *Ledger) currentLease() (clientv3.LeaseID, error) {
	id := l.leaseF()
	l.mu.Lock()
	defer l.mu.Unlock()
	if id != l.lease {
		if len(l.held) > 0 {
			l.log.Warn("the node's etcd lease changed: the cluster-scope slots held on the old one are gone",
				"holders", slices.Sorted(maps.Keys(l.held)))
		}
		l.lease = id
		l.held = map[string]map[string]held{}
		l.waiting = map[string]map[string]struct{}{}
		l.regKeys, l.regKnown = nil, false
		l.owed = nil // they went with the old lease
	}
	if l.doubt != nil {
		return 0, l.doubt
	}
	if id == clientv3.NoLease {
		return 0, fmt.Errorf("%w: the node has no etcd session", ErrLeaseInDoubt)
	}
	return id, nil
}

// Acquire implements admission.Ledger.
func (l *Ledger) Acquire(ctx context.Context, holder string, claims []admission.Claim) (bool, int, error) {
	lease, err := l.currentLease()
	if err != nil {
		return false, 0, fmt.Errorf("cluster-scope resources %q: %w", claimKeys(claims), err)
	}
	if l.holds(holder, claims) {
		return true, -1, nil
	}
	for conflicts := 0; ; conflicts++ {
		// The first read is the member's own (serializable: no Raft round
		// trip). It may be stale, which is safe for a grant (its condition
		// fails on a slot taken since) but not for a refusal: a refusal
		// reads again, linearizably, before it stands.
		local := conflicts == 0
		ok, full, _, err := l.try(ctx, lease, holder, claims, local)
		switch {
		case err != nil:
			return false, 0, err
		case ok:
			return true, -1, nil
		case full >= 0 && local:
			continue
		case full >= 0:
			if err := l.register(ctx, lease, holder, claims); err != nil {
				return false, 0, err
			}
			return false, full, nil
		}
		if conflicts == maxConflicts {
			return false, 0, fmt.Errorf("cluster-scope resources %q: %d grants in a row lost a race with other nodes; ask again",
				claimKeys(claims), maxConflicts)
		}
		// Another node changed these holders between the read and the
		// grant: read again, after a pause once it keeps happening.
		if conflicts >= 3 {
			pause := time.Duration(rand.Int64N(int64(time.Millisecond) << min(conflicts-3, 6)))
			select {
			case <-time.After(pause):
			case <-ctx.Done():
				return false, 0, context.Cause(ctx)
			}
		}
	}
}

func (l *Ledger) holds(holder string, claims []admission.Claim) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.held[holder]
	for _, c := range claims {
		if _, ok := h[c.Key]; !ok {
			return false
		}
	}
	return true
}

// view is what one read saw: each claim's slots and the registrations.
type view struct {
	slots []claimSlots       // per claim
	regs  map[string]nodeReg // node → its registration
}

// claimSlots are the slots of one claim's resource as read.
type claimSlots struct {
	taken map[int]bool // slot numbers held by anyone
	used  int          // slots held by others (numbered or not)
	mine  int          // the slot the holder holds already; -1: none
	rev   int64        // the revision of its grant, when mine >= 0
}

type nodeReg struct {
	created int64
	keys    []string
}

// try reads the holders and registrations and, when every claim has room,
// grants them in one transaction conditional on no holder of those keys
// having changed since. It returns ok, or the first claim without room,
// or neither (full < 0) when the grant lost a race and must be tried again.
func (l *Ledger) try(ctx context.Context, lease clientv3.LeaseID, holder string, claims []admission.Claim, local bool) (ok bool, full int, v view, err error) {
	var opts []clientv3.OpOption
	if local {
		opts = append(opts, clientv3.WithSerializable())
	}
	ops := make([]clientv3.Op, 0, len(claims)+1)
	for _, c := range claims {
		ops = append(ops, clientv3.OpGet(l.holdersDir(c.Key), append(opts, clientv3.WithPrefix())...))
	}
	ops = append(ops, clientv3.OpGet(l.registrations(), append(opts, clientv3.WithPrefix())...))
	resp, err := l.kv.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return false, 0, v, fmt.Errorf("reading the holders of cluster-scope resources %q from etcd: %w", claimKeys(claims), err)
	}
	v = view{regs: map[string]nodeReg{}}
	for i := range claims {
		dir := l.holdersDir(claims[i].Key)
		cs := claimSlots{taken: map[int]bool{}, mine: -1}
		for _, kv := range resp.Responses[i].GetResponseRange().Kvs {
			n, err := strconv.Atoi(strings.TrimPrefix(string(kv.Key), dir))
			if err == nil {
				cs.taken[n] = true
			}
			if string(kv.Value) == holder && err == nil {
				cs.mine, cs.rev = n, kv.ModRevision
				continue
			}
			cs.used++
		}
		v.slots = append(v.slots, cs)
	}
	for _, kv := range resp.Responses[len(claims)].GetResponseRange().Kvs {
		var r registered
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			l.log.Warn("ignoring a registration in etcd that does not parse", "key", string(kv.Key), "err", err)
			continue
		}
		v.regs[strings.TrimPrefix(string(kv.Key), l.registrations())] = nodeReg{created: kv.CreateRevision, keys: r.Keys}
	}
	mine := int64(math.MaxInt64)
	if r, ok := v.regs[l.node]; ok {
		mine = r.created
	}
	for i, c := range claims {
		if v.slots[i].mine >= 0 {
			continue // held already: not counted twice
		}
		used := v.slots[i].used
		for n, r := range v.regs {
			if n != l.node && (r.created < mine || r.created == mine && n < l.node) && slices.Contains(r.keys, c.Key) {
				used++
			}
		}
		if used >= c.Limit || freeSlot(v.slots[i], c.Limit) < 0 {
			return false, i, v, nil
		}
	}
	return l.grant(ctx, lease, holder, claims, v)
}

// freeSlot picks a free slot among the limit's at random (so that nodes
// granting at once seldom pick the same), or -1.
func freeSlot(cs claimSlots, limit int) int {
	free := make([]int, 0, limit)
	for n := range limit {
		if !cs.taken[n] {
			free = append(free, n)
		}
	}
	if len(free) == 0 {
		return -1
	}
	return free[rand.IntN(len(free))]
}

// grant writes holder into a free slot of each claim it does not hold
// yet, on condition that none of those slots was taken since the read: a
// task granted meanwhile took another slot, or the same one and this
// grant reads again. A node in line goes to the back of it (or leaves it,
// when none of its tasks waits any more).
func (l *Ledger) grant(ctx context.Context, lease clientv3.LeaseID, holder string, claims []admission.Claim, v view) (bool, int, view, error) {
	picked := make([]held, len(claims))
	var cmps []clientv3.Cmp
	var puts []clientv3.Op
	for i, c := range claims {
		if cs := v.slots[i]; cs.mine >= 0 {
			picked[i] = held{slot: cs.mine, rev: cs.rev}
			continue
		}
		n := freeSlot(v.slots[i], c.Limit)
		picked[i] = held{slot: n}
		key := l.slotKey(c.Key, n)
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(key), "=", 0))
		puts = append(puts, clientv3.OpPut(key, holder, clientv3.WithLease(lease)))
	}
	var rev int64
	if len(puts) > 0 {
		resp, err := l.kv.Txn(ctx).If(cmps...).Then(puts...).Commit()
		if err != nil {
			// The grant may have been written all the same: take it back,
			// so that a holder that gets an error holds nothing.
			l.dropUncertain(holder, claims, picked)
			return false, 0, v, fmt.Errorf("granting cluster-scope resources %q in etcd: %w", claimKeys(claims), err)
		}
		if !resp.Succeeded {
			return false, -1, v, nil
		}
		rev = resp.Header.Revision
	}
	l.mu.Lock()
	if l.doubt != nil || l.lease != lease {
		// The session came into doubt while the grant was out: the tasks
		// holding slots are being ended, and this one must not start.
		cause := l.doubt
		l.mu.Unlock()
		l.dropUncertain(holder, claims, picked)
		if cause == nil {
			cause = fmt.Errorf("%w: the node's etcd lease changed", ErrLeaseInDoubt)
		}
		return false, 0, v, fmt.Errorf("cluster-scope resources %q: %w", claimKeys(claims), cause)
	}
	h := l.held[holder]
	if h == nil {
		h = map[string]held{}
		l.held[holder] = h
	}
	for i, c := range claims {
		if picked[i].rev == 0 {
			picked[i].rev = rev
		}
		h[c.Key] = picked[i]
		l.unwaitLocked(c.Key, holder)
	}
	l.mu.Unlock()
	if err := l.syncRegistration(ctx, lease, true); err != nil {
		l.log.Warn("moving this node to the back of the line for cluster-scope resources failed; it is done at its next refusal or release", "err", err)
	}
	return true, -1, v, nil
}

// register records holder as waiting for every key of claims, and makes
// sure this node's registration names them all.
func (l *Ledger) register(ctx context.Context, lease clientv3.LeaseID, holder string, claims []admission.Claim) error {
	l.mu.Lock()
	for _, c := range claims {
		hs := l.waiting[c.Key]
		if hs == nil {
			hs = map[string]struct{}{}
			l.waiting[c.Key] = hs
		}
		hs[holder] = struct{}{}
	}
	l.mu.Unlock()
	if err := l.syncRegistration(ctx, lease, false); err != nil {
		return fmt.Errorf("registering this node as waiting for cluster-scope resources %q in etcd: %w", claimKeys(claims), err)
	}
	return nil
}

// syncRegistration makes this node's registration name the keys its
// tasks wait for now, or removes it when there are none. A put keeps the
// node's place in line (the key's create revision); back (after a grant)
// gives it up: the registration is written anew, at the back. Every change
// to what the node waits for is followed by a sync, and each sync writes
// what is true when it runs, so the last one leaves etcd right.
func (l *Ledger) syncRegistration(ctx context.Context, lease clientv3.LeaseID, back bool) error {
	l.regMu.Lock()
	defer l.regMu.Unlock()
	l.mu.Lock()
	keys := l.waitedLocked()
	if l.lease != lease {
		l.mu.Unlock()
		return nil // the registration went with the old lease
	}
	written, known := l.regKeys, l.regKnown
	l.mu.Unlock()
	if known && (written == nil || !back) && slices.Equal(written, keys) {
		return nil
	}
	set := func(w []string, ok bool) {
		l.mu.Lock()
		if l.lease == lease {
			l.regKeys, l.regKnown = w, ok
		}
		l.mu.Unlock()
	}
	if len(keys) == 0 || (back && written != nil) {
		if _, err := l.kv.Delete(ctx, l.registration(l.node)); err != nil {
			set(nil, false)
			return err
		}
		set(nil, true)
		if len(keys) == 0 {
			return nil
		}
	}
	b, err := json.Marshal(registered{Keys: keys})
	if err != nil {
		return err
	}
	if _, err := l.kv.Put(ctx, l.registration(l.node), string(b), clientv3.WithLease(lease)); err != nil {
		set(nil, false)
		return err
	}
	set(keys, true)
	return nil
}

func (l *Ledger) unwaitLocked(key, holder string) {
	if hs := l.waiting[key]; hs != nil {
		delete(hs, holder)
		if len(hs) == 0 {
			delete(l.waiting, key)
		}
	}
}

// waitedLocked lists the keys this node's tasks wait for, sorted.
func (l *Ledger) waitedLocked() []string { return slices.Sorted(maps.Keys(l.waiting)) }

// dropUncertain takes back the slots picked for holder after a grant
// whose outcome is unknown or unwanted, on a context of its own (the
// caller's may be what ended). What cannot be deleted goes when the lease
// does.
func (l *Ledger) dropUncertain(holder string, claims []admission.Claim, picked []held) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ops := make([]clientv3.Op, 0, len(claims))
	for i, c := range claims {
		ops = append(ops, l.deleteIfHeld(l.slotKey(c.Key, picked[i].slot), holder))
	}
	if _, err := l.kv.Txn(ctx).Then(ops...).Commit(); err != nil {
		l.log.Warn("taking back a cluster-scope grant that may have been written failed; it goes when the node's lease does",
			"holder", holder, "resources", claimKeys(claims), "err", err)
	}
}

// deleteIfHeld deletes the slot key if holder holds it (a slot that went
// with a lapsed lease may be someone else's now).
func (l *Ledger) deleteIfHeld(key, holder string) clientv3.Op {
	return clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.Value(key), "=", holder)}, []clientv3.Op{clientv3.OpDelete(key)}, nil)
}

// Release implements admission.Ledger. It also withdraws holder from
// waiting for keys: a task refused a slot that leaves the queue without
// one releases its keys, so that its node gives up its place in line when
// no other task of it waits.
func (l *Ledger) Release(ctx context.Context, holder string, keys []string) error {
	l.mu.Lock()
	lease := l.lease
	waited := len(l.waiting)
	for _, k := range keys {
		l.unwaitLocked(k, holder)
	}
	withdrew := len(l.waiting) != waited
	var ops []clientv3.Op
	for _, k := range keys {
		if h, ok := l.held[holder][k]; ok {
			ops = append(ops, l.deleteIfHeld(l.slotKey(k, h.slot), holder))
		}
	}
	l.mu.Unlock()
	var err error
	if len(ops) > 0 {
		_, err = l.kv.Txn(ctx).Then(ops...).Commit()
	}
	if err != nil {
		l.mu.Lock()
		if l.lease == lease {
			if l.owed == nil {
				l.owed = map[string][]string{}
			}
			l.owed[holder] = slices.Clone(keys)
		}
		l.mu.Unlock()
		return fmt.Errorf("releasing cluster-scope resources %q in etcd: %w", keys, err)
	}
	l.mu.Lock()
	delete(l.owed, holder)
	if h := l.held[holder]; h != nil {
		for _, k := range keys {
			delete(h, k)
		}
		if len(h) == 0 {
			delete(l.held, holder)
		}
	}
	l.mu.Unlock()
	if withdrew {
		if err := l.syncRegistration(ctx, lease, false); err != nil {
			return fmt.Errorf("withdrawing this node from the line for cluster-scope resources %q in etcd: %w", keys, err)
		}
	}
	return nil
}

// Fences returns the revision of the grant of each slot holder holds, by
// key: its fencing token. A slot of a key granted later has a higher one,
// so whatever a task writes with it can be refused once a later holder
// wrote with its own.
func (l *Ledger) Fences(holder string) map[string]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.held[holder]) == 0 {
		return nil
	}
	out := make(map[string]int64, len(l.held[holder]))
	for k, h := range l.held[holder] {
		out[k] = h.rev
	}
	return out
}

// Doubt says the node's etcd session is in doubt (cause says why): from
// now on nothing is granted until Trust, and the holders returned are the
// tasks holding slots, which must stop before the lease can lapse and
// their slots go to other nodes.
func (l *Ledger) Doubt(cause error) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.doubt = fmt.Errorf("%w: %v", ErrLeaseInDoubt, cause)
	return slices.Sorted(maps.Keys(l.held))
}

// Trust says the node's etcd session is confirmed again: grants resume,
// and the releases that failed meanwhile are made.
func (l *Ledger) Trust() {
	l.mu.Lock()
	l.doubt = nil
	l.mu.Unlock()
	l.flushOwed()
}

// flushOwed deletes, on a goroutine of its own, the slots whose release
// failed; what still fails stays owed for the next try.
func (l *Ledger) flushOwed() {
	l.mu.Lock()
	if len(l.owed) == 0 || l.flushing {
		l.mu.Unlock()
		return
	}
	l.flushing = true
	owed := maps.Clone(l.owed)
	l.mu.Unlock()
	l.flushes.Go(func() {
		defer func() {
			l.mu.Lock()
			l.flushing = false
			l.mu.Unlock()
		}()
		for holder, keys := range owed {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := l.Release(ctx, holder, keys)
			cancel()
			if err != nil {
				return
			}
			l.log.Info("released cluster-scope slots whose release had failed", "holder", holder, "resources", keys)
		}
	})
}

// Holders lists the tasks of this node holding cluster-scope slots.
func (l *Ledger) Holders() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Sorted(maps.Keys(l.held))
}

// Watch follows the semaphores until ctx ends and calls freed with the
// keys that may have room now: a holder gone (released, or its node's
// lease lapsed) and a waiting node gone or waiting for fewer keys. When
// the watch breaks off it starts again from the present and calls freed
// with every key this node's tasks wait for, since a release may have
// been missed meanwhile.
func (l *Ledger) Watch(ctx context.Context, freed func(keys []string)) {
	defer l.flushes.Wait()
	for ctx.Err() == nil {
		wch := l.kv.Watch(clientv3.WithRequireLeader(ctx), l.prefix, clientv3.WithPrefix(), clientv3.WithPrevKV())
		for resp := range wch {
			if err := resp.Err(); err != nil {
				l.log.Warn("watching cluster-scope resources broke off; watching again", "err", err)
				break
			}
			if keys := l.freedBy(resp.Events); len(keys) > 0 {
				freed(keys)
			}
			l.flushOwed() // etcd answers: a release that failed may go through now
		}
		if ctx.Err() != nil {
			return
		}
		l.mu.Lock()
		keys := l.waitedLocked()
		l.mu.Unlock()
		if len(keys) > 0 {
			freed(keys)
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

// freedBy returns the keys whose room the events may have grown, sorted.
func (l *Ledger) freedBy(events []*clientv3.Event) []string {
	set := map[string]struct{}{}
	for _, ev := range events {
		rest := strings.TrimPrefix(string(ev.Kv.Key), l.prefix)
		switch {
		case strings.HasPrefix(rest, "h/") && ev.Type == clientv3.EventTypeDelete:
			esc, _, _ := strings.Cut(strings.TrimPrefix(rest, "h/"), "/")
			if k, err := url.PathUnescape(esc); err == nil {
				set[k] = struct{}{}
			}
		case strings.HasPrefix(rest, "w/") && ev.PrevKv != nil:
			var was, now registered
			_ = json.Unmarshal(ev.PrevKv.Value, &was)
			if ev.Type == clientv3.EventTypePut {
				_ = json.Unmarshal(ev.Kv.Value, &now)
			}
			for _, k := range was.Keys {
				if !slices.Contains(now.Keys, k) {
					set[k] = struct{}{}
				}
			}
		}
	}
	return slices.Sorted(maps.Keys(set))
}

func claimKeys(claims []admission.Claim) []string {
	keys := make([]string, len(claims))
	for i, c := range claims {
		keys[i] = c.Key
	}
	return keys
}
