package admission

import (
	"slices"
	"strings"
)

// AnySuffix ends a tag that asks for any one instance of a pool:
// "device:*" is one instance of pool "device", whichever is free.
const AnySuffix = ":*"

// Pool is a resource made of named instances. A tag "<name>:*" asks for
// any one of them; each instance is also the ordinary key
// "<name>:<instance>" (a tag naming it pins that instance), whose limit is
// configured in Config.Limits like any key's.
type Pool struct {
	Name      string
	Instances []string
}

// InstanceKey is the key of one instance of pool.
func InstanceKey(pool, instance string) string { return pool + ":" + instance }

// PoolOf returns the pool a tag key asks any instance of ("device" for
// "device:*"), or "" when key is not such a key.
func PoolOf(key string) string {
	if name, ok := strings.CutSuffix(key, AnySuffix); ok {
		return name
	}
	return ""
}

// Preference ranks a free instance of pool for the waiting request id:
// lower is better. Among free instances the queue takes the best ranked,
// then the least recently used. It is called inside Admit, so it must be
// pure and quick (no I/O, no locks the queue's caller may hold).
type Preference func(id, pool, instance string) int

// pool is the queue's state for one Pool.
type pool struct {
	name string
	// any is the "<name>:*" resource: the waiters that asked for any
	// instance park on it, and any instance's release marks it dirty.
	any       *resource
	instances []*resource
	// used is, per instance, the queue's admission count when the instance
	// was last taken: lowest is least recently used.
	used []uint64
	// cand holds the indices of the instances that may have a free slot:
	// every instance whose slot may have freed is added (markDirty), and
	// one found full is dropped, so a busy pool is searched through its
	// few free instances, not all of them.
	cand   []int
	inCand []bool
	// gone is set on a pool no longer declared (SetPools).
	gone bool
}

// mayBeFree adds instance i to the candidates.
func (p *pool) mayBeFree(i int) {
	if !p.inCand[i] {
		p.inCand[i] = true
		p.cand = append(p.cand, i)
	}
}

// dropCand removes the candidate at position j of p.cand.
func (p *pool) dropCand(j int) {
	p.inCand[p.cand[j]] = false
	last := len(p.cand) - 1
	p.cand[j] = p.cand[last]
	p.cand = p.cand[:last]
}

// poolRoom is how many more waiters like w may take an instance of p now:
// the free slots of every instance, less one kept for the reserved
// request when it asked for any instance of p and is not w.
func (q *Queue) poolRoom(p *pool, w *waiter) int {
	n := 0
	for j := 0; j < len(p.cand); {
		inst := p.instances[p.cand[j]]
		held := q.held.held(inst.key)
		if held >= inst.limit() {
			p.dropCand(j) // full for everyone, reservation aside
			continue
		}
		n += max(0, q.limitFor(inst, w)-held)
		j++
	}
	if p.any.reserved && q.reserved != w {
		n--
	}
	return n
}

// pick chooses the instance of p that w gets: one with room that w does
// not hold already, best ranked by the preference, then least recently
// used. It returns nil when none has room.
func (q *Queue) pick(p *pool, w *waiter, taken []Claim) *resource {
	if p.any.reserved && q.reserved != w && q.poolRoom(p, w) <= 0 {
		return nil
	}
	best, bestRank := -1, 0
	for j := 0; j < len(p.cand); {
		i := p.cand[j]
		inst := p.instances[i]
		held := q.held.held(inst.key)
		if held >= inst.limit() {
			p.dropCand(j)
			continue
		}
		j++
		if held >= q.limitFor(inst, w) || claimed(taken, inst.key) {
			continue
		}
		rank := 0
		if q.prefer != nil {
			rank = q.prefer(w.id, p.name, inst.instanceName())
		}
		if best < 0 || rank < bestRank || (rank == bestRank && (p.used[i] < p.used[best] || (p.used[i] == p.used[best] && i < best))) {
			best, bestRank = i, rank
		}
	}
	if best < 0 {
		return nil
	}
	return p.instances[best]
}

func claimed(claims []Claim, key string) bool {
	for _, c := range claims {
		if c.Key == key {
			return true
		}
	}
	return false
}

// setPools declares the pools at construction. Declarations are checked
// where they are loaded (package resources); here a pool without instances
// and an instance named twice are skipped.
func (q *Queue) setPools(pools []Pool) {
	q.pools = make(map[string]*pool, len(pools))
	for _, pd := range pools {
		if pd.Name == "" || len(pd.Instances) == 0 || q.pools[pd.Name] != nil {
			continue
		}
		p := &pool{name: pd.Name, any: q.resource(pd.Name + AnySuffix)}
		p.any.pool = p
		for _, name := range pd.Instances {
			inst := q.resource(InstanceKey(pd.Name, name))
			if inst.of != nil {
				continue
			}
			inst.of, inst.idx = p, len(p.instances)
			p.instances = append(p.instances, inst)
		}
		p.used = make([]uint64, len(p.instances))
		p.inCand = make([]bool, len(p.instances))
		for i := range p.instances {
			p.mayBeFree(i)
		}
		q.pools[pd.Name] = p
	}
}

// instanceName is the instance part of an instance resource's key.
func (r *resource) instanceName() string { return r.key[len(r.of.name)+1:] }

// Bound returns the instances the admitted request id holds, picked or
// named by its tags (pool → instance name), or nil when it holds none.
func (q *Queue) Bound(id string) map[string]string {
	w, ok := q.admitted[id]
	if !ok || len(w.bound) == 0 {
		return nil
	}
	out := make(map[string]string, len(w.bound))
	for _, inst := range w.bound {
		out[inst.of.name] = inst.instanceName()
	}
	return out
}

// poolStats describes a pool as one resource: its instances' slots
// together, and the waiters that asked for any instance.
func (q *Queue) poolStats(p *pool) ResourceStats {
	s := ResourceStats{Key: p.any.key, Waiting: p.any.waiting}
	for _, inst := range p.instances {
		s.Limit += inst.limit()
		s.InUse += q.held.held(inst.key)
	}
	return s
}

// SetPools replaces the declared pools (a reload); pools are matched by
// name, instances by name within their pool. A pool or instance declared
// anew is usable at once. An instance no longer declared takes no new
// request (its limit is 0): its holders keep it until they Release, a
// waiter that asked for any instance of its pool gets another one, and a
// waiter that names it stays waiting until it is declared again or the
// waiter is Removed; such a waiter is never given the starvation
// reservation, which would keep slots for a request that cannot run. A
// pool no longer declared (or declared without instances) loses all its
// instances the same way, and Push refuses "<pool>:*" for it. The
// instances' limits are configured with SetLimits, as at construction.
// Call Admit afterwards.
func (q *Queue) SetPools(pools []Pool) {
	declared := make(map[string][]string, len(pools))
	for _, pd := range pools {
		if pd.Name != "" && len(pd.Instances) > 0 && declared[pd.Name] == nil {
			declared[pd.Name] = pd.Instances
		}
	}
	for name, p := range q.pools {
		if declared[name] == nil && !p.gone {
			p.gone = true
			q.markDirty(p.any)
		}
		for _, inst := range p.instances {
			if !inst.gone && !slices.Contains(declared[name], inst.instanceName()) {
				inst.gone = true
				q.markDirty(inst)
			}
		}
	}
	for _, pd := range pools {
		names := declared[pd.Name]
		if names == nil {
			continue
		}
		p := q.pools[pd.Name]
		if p == nil {
			p = &pool{name: pd.Name, any: q.resource(pd.Name + AnySuffix)}
			p.any.pool = p
			q.pools[pd.Name] = p
		}
		p.gone = false
		for _, name := range names {
			inst := q.resource(InstanceKey(pd.Name, name))
			switch {
			case inst.of == p:
				if inst.gone {
					inst.gone = false
					q.markDirty(inst)
				}
			case inst.of == nil:
				inst.of, inst.idx = p, len(p.instances)
				p.instances = append(p.instances, inst)
				p.used = append(p.used, 0)
				p.inCand = append(p.inCand, false)
				q.markDirty(inst)
			}
		}
		q.markDirty(p.any)
	}
	if w := q.reserved; w != nil && stuck(w) {
		q.reserved = nil
		for _, r := range w.res {
			r.reserved = false
			q.markDirty(r)
		}
	}
	q.maybeReserve()
}

// stuck reports whether w needs an instance or pool that is no longer
// declared: it cannot be admitted until it is declared again.
func stuck(w *waiter) bool {
	for _, r := range w.res {
		if r.gone || (r.pool != nil && r.pool.gone) {
			return true
		}
	}
	return false
}
