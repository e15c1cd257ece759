package admission

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"testing"

	"pgregory.net/rapid"
)

// model is an independent statement of the admission rules, used as the
// oracle for the property tests.
type model struct {
	global   int
	bound    int
	config   map[string]int // configured limits
	learned  map[string]int // first explicit tag limit per key
	waiting  []*modelReq    // in arrival order
	admitted map[string]*modelReq
	held     map[string]int
	inUse    map[string]int // admitted requests per owner
	reserved *modelReq
	seq      int
	// pools: pool name -> its instances' keys, in declaration order;
	// used: per instance key, the admission (clock) that last took it.
	pools map[string][]string
	// all is every instance ever declared, in the queue's order; gone
	// those no longer declared (SetPools).
	all   []string
	gone  map[string]bool
	used  map[string]int
	clock int
}

type modelReq struct {
	id       string
	owner    string
	prio     int32
	seq      int
	keys     []string // named keys (instances of a pool among them)
	any      []string // pools it asks any instance of
	holds    []string // admitted: keys plus the instances picked
	bypassed int
}

// before is fair order: the owner holding fewer global slots first, then
// priority, then arrival.
func (m *model) before(a, b *modelReq) bool {
	if ia, ib := m.inUse[a.owner], m.inUse[b.owner]; ia != ib {
		return ia < ib
	}
	if a.prio != b.prio {
		return a.prio > b.prio
	}
	return a.seq < b.seq
}

func (m *model) head() *modelReq {
	var h *modelReq
	for _, r := range m.waiting {
		if h == nil || m.before(r, h) {
			h = r
		}
	}
	return h
}

func (m *model) find(id string) (*modelReq, int) {
	for i, r := range m.waiting {
		if r.id == id {
			return r, i
		}
	}
	return nil, -1
}

// admissible reports whether r fits now, honouring the reservation; skip
// holds admitted requests to pretend are not there.
func (m *model) admissible(r *modelReq, skip map[string]bool) bool {
	inUse := len(m.admitted) - len(skip)
	held := func(k string) int {
		n := m.held[k]
		for id := range skip {
			if slices.Contains(m.admitted[id].keys, k) {
				n--
			}
		}
		return n
	}
	res := m.reserved != nil && m.reserved != r
	g := m.global
	if res {
		g--
	}
	if inUse >= g {
		return false
	}
	for _, k := range r.keys {
		if held(k) >= m.limitFor(k, r) {
			return false
		}
	}
	for _, p := range r.any {
		if len(m.free(p, r, held)) == 0 {
			return false
		}
	}
	return true
}

// limitFor is k's limit for r: one less when a slot of k is reserved for
// another request.
func (m *model) limitFor(k string, r *modelReq) int {
	l := m.limit(k)
	if m.reserved != nil && m.reserved != r && slices.Contains(m.reserved.keys, k) {
		l--
	}
	return l
}

// free lists the instances of pool p that r may be given, in declaration
// order: each with a slot free for r, none when a slot of the pool is
// reserved for another request and only that one is left.
func (m *model) free(p string, r *modelReq, held func(string) int) []string {
	var out []string
	room := 0
	for _, inst := range m.pools[p] {
		if n := m.limitFor(inst, r) - held(inst); n > 0 {
			room += n
			out = append(out, inst)
		}
	}
	if m.reserved != nil && m.reserved != r && slices.Contains(m.reserved.any, p) && room <= 1 {
		return nil
	}
	return out
}

func (m *model) limit(k string) int {
	if m.gone[k] {
		return 0
	}
	if l, ok := m.config[k]; ok {
		return l
	}
	if l, ok := m.learned[k]; ok {
		return l
	}
	return 1
}

func (m *model) maybeReserve() {
	if h := m.head(); m.reserved == nil && h != nil && h.bypassed > m.bound && !m.stuck(h) {
		m.reserved = h
	}
}

// admit applies one admission reported by the queue, checking it was
// allowed: within the limits, and the fairest request that fits.
// stuck: r needs an instance or pool no longer declared.
func (m *model) stuck(r *modelReq) bool {
	for _, k := range r.keys {
		if m.gone[k] {
			return true
		}
	}
	for _, p := range r.any {
		if len(m.pools[p]) == 0 {
			return true
		}
	}
	return false
}

// setPools declares the instances of pool p in keep, as SetPools does.
func (m *model) setPools(q *Queue, keep []string) {
	pd := Pool{Name: "p"}
	m.pools["p"] = nil
	for _, inst := range m.all {
		m.gone[inst] = !slices.Contains(keep, inst)
		if !m.gone[inst] {
			m.pools["p"] = append(m.pools["p"], inst)
			pd.Instances = append(pd.Instances, inst[len("p:"):])
		}
	}
	q.SetPools([]Pool{pd})
	if m.reserved != nil && m.stuck(m.reserved) {
		m.reserved = nil
	}
	m.maybeReserve()
}

func (m *model) admit(t *rapid.T, q *Queue, id string) {
	r, i := m.find(id)
	if r == nil {
		t.Fatalf("admitted %q, which is not waiting", id)
	}
	if !m.admissible(r, nil) {
		t.Fatalf("admitted %q beyond a limit or reservation: keys %v held %v inUse %d/%d reserved %v",
			id, r.keys, m.held, len(m.admitted), m.global, m.reserved)
	}
	// Fairness, priority and the reservation: what is admitted is the
	// reserved request when it fits, else the first in fair order of those
	// that fit now.
	if res := m.reserved; res != nil && res != r && m.admissible(res, nil) {
		t.Fatalf("admitted %q while the reserved %q fits", id, res.id)
	}
	if m.reserved != r {
		for _, x := range m.waiting {
			if x != r && m.before(x, r) && m.admissible(x, nil) {
				t.Fatalf("admitted %q (owner %s, prio %d) although %q (owner %s, prio %d) comes first in fair order and fits; in use per owner %v",
					id, r.owner, r.prio, x.id, x.owner, x.prio, m.inUse)
			}
		}
	}
	// The instance picked in each pool: free for r, and the least
	// recently used of those (the first declared among equals).
	r.holds = slices.Clone(r.keys)
	for _, p := range r.any {
		got := q.Bound(id)[p]
		inst := p + ":" + got
		free := m.free(p, r, func(k string) int { return m.held[k] })
		if !slices.Contains(free, inst) {
			t.Fatalf("%q was given %q of pool %s, not one of the free %v (held %v)", id, got, p, free, m.held)
		}
		lru := free[0]
		for _, f := range free {
			if m.used[f] < m.used[lru] {
				lru = f
			}
		}
		if inst != lru {
			t.Fatalf("%q was given %s; the least recently used free instance is %s (last used %v)", id, inst, lru, m.used)
		}
		r.holds = append(r.holds, inst)
	}
	if h := m.head(); h != r {
		h.bypassed++
	}
	m.waiting = slices.Delete(m.waiting, i, i+1)
	m.admitted[id] = r
	m.inUse[r.owner]++
	m.clock++
	for _, k := range r.holds {
		m.held[k]++
		if _, isInstance := m.used[k]; isInstance {
			m.used[k] = m.clock
		}
	}
	if m.reserved == r {
		m.reserved = nil
	}
	m.maybeReserve()
}

func checkQueue(t *rapid.T, q *Queue, m *model, admitted []string) {
	for _, id := range admitted {
		m.admit(t, q, id)
	}
	st := q.Stats()
	wantRes := ""
	if m.reserved != nil {
		wantRes = m.reserved.id
	}
	if st.Reserved != wantRes {
		t.Fatalf("reserved = %q, the starvation rule says %q", st.Reserved, wantRes)
	}
	if st.InUse != len(m.admitted) || st.Waiting != len(m.waiting) {
		t.Fatalf("stats in use %d waiting %d, want %d and %d", st.InUse, st.Waiting, len(m.admitted), len(m.waiting))
	}
	for _, rs := range st.Resources {
		held, limit := m.held[rs.Key], m.limit(rs.Key)
		// Holders keep an instance no longer declared, whose limit is 0.
		heldGone := 0
		if m.gone[rs.Key] {
			heldGone = held
		}
		if p := PoolOf(rs.Key); p != "" {
			held, limit = 0, 0
			for _, inst := range m.all {
				held += m.held[inst]
				limit += m.limit(inst)
				if m.gone[inst] {
					heldGone += m.held[inst]
				}
			}
		}
		// Held counts admitted requests only: one that waits holds no
		// instance and no other slot.
		if rs.InUse != held || rs.Limit != limit || rs.InUse-heldGone > rs.Limit {
			t.Fatalf("resource %+v, model held %d limit %d", rs, held, limit)
		}
	}
	for inst := range m.used {
		if !m.gone[inst] && m.held[inst] > m.limit(inst) {
			t.Fatalf("instance %s held %d times, limit %d", inst, m.held[inst], m.limit(inst))
		}
	}
	// No deadlock: nothing still waiting fits now.
	for _, r := range m.waiting {
		if m.admissible(r, nil) {
			t.Fatalf("%q fits (keys %v, held %v, inUse %d/%d, reserved %v) but was not admitted",
				r.id, r.keys, m.held, len(m.admitted), m.global, m.reserved)
		}
	}
	var owners []OwnerStats
	for _, o := range slices.Sorted(maps.Keys(m.ownersSeen())) {
		n := 0
		for _, r := range m.waiting {
			if r.owner == o {
				n++
			}
		}
		if m.inUse[o] > 0 || n > 0 {
			owners = append(owners, OwnerStats{Owner: o, InUse: m.inUse[o], Waiting: n})
		}
	}
	if !slices.Equal(st.Owners, owners) {
		t.Fatalf("owner stats %+v, want %+v", st.Owners, owners)
	}
}

func (m *model) ownersSeen() map[string]bool {
	s := map[string]bool{}
	for _, r := range m.waiting {
		s[r.owner] = true
	}
	for _, r := range m.admitted {
		s[r.owner] = true
	}
	return s
}

func TestQueueProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		nkeys := rapid.IntRange(1, 5).Draw(t, "nkeys")
		m := &model{
			global:   rapid.IntRange(1, 6).Draw(t, "global"),
			bound:    rapid.IntRange(1, 4).Draw(t, "bound"),
			config:   map[string]int{},
			learned:  map[string]int{},
			admitted: map[string]*modelReq{},
			held:     map[string]int{},
			inUse:    map[string]int{},
			pools:    map[string][]string{},
			used:     map[string]int{},
			gone:     map[string]bool{},
		}
		owners := []string{"a", "b", "c"}[:rapid.IntRange(1, 3).Draw(t, "owners")]
		tagLimit := map[string]int{}
		var keys []string
		for i := range nkeys {
			k := "k" + strconv.Itoa(i)
			keys = append(keys, k)
			tagLimit[k] = rapid.IntRange(1, 3).Draw(t, "tagLimit"+k)
			if rapid.Bool().Draw(t, "configured"+k) {
				m.config[k] = rapid.IntRange(1, 3).Draw(t, "config"+k)
			}
		}
		// A pool of instances, each an ordinary key with a configured limit.
		var pools []Pool
		if npool := rapid.IntRange(0, 3).Draw(t, "instances"); npool > 0 {
			pd := Pool{Name: "p"}
			for i := range npool {
				name := "i" + strconv.Itoa(i)
				key := InstanceKey("p", name)
				pd.Instances = append(pd.Instances, name)
				m.pools["p"] = append(m.pools["p"], key)
				m.all = append(m.all, key)
				m.config[key] = rapid.IntRange(1, 2).Draw(t, "limit"+key)
				m.used[key] = 0
				tagLimit[key] = rapid.IntRange(1, 3).Draw(t, "tagLimit"+key)
				keys = append(keys, key)
			}
			pools = append(pools, pd)
		}
		// An instance a reload may declare later, with its configured
		// limit already in force as a reload's SetLimits would set it.
		newInst := InstanceKey("p", "new")
		m.config[newInst] = rapid.IntRange(1, 2).Draw(t, "limit"+newInst)
		tagLimit[newInst] = rapid.IntRange(1, 3).Draw(t, "tagLimit"+newInst)
		universe := append(slices.Clone(m.all), newInst)
		q := NewQueue(Config{GlobalLimit: m.global, Limits: m.config, StarvationBound: m.bound, Pools: pools})
		pick := func(label string, ids []string) string {
			slices.Sort(ids)
			return rapid.SampledFrom(ids).Draw(t, label)
		}
		t.Repeat(map[string]func(*rapid.T){
			"push": func(t *rapid.T) {
				m.seq++
				r := &modelReq{id: fmt.Sprintf("r%d", m.seq), seq: m.seq, prio: int32(rapid.IntRange(0, 2).Draw(t, "prio")),
					owner: rapid.SampledFrom(owners).Draw(t, "owner")}
				var tags []Tag
				anyInstance := len(m.pools["p"]) > 0 && rapid.Bool().Draw(t, "any")
				if anyInstance {
					r.any = []string{"p"}
					tags = append(tags, Tag{Key: "p" + AnySuffix, Limit: 1})
				}
				for _, k := range rapid.SliceOfNDistinct(rapid.SampledFrom(keys), 0, 3, func(k string) string { return k }).Draw(t, "keys") {
					if _, isInstance := m.used[k]; isInstance && anyInstance {
						continue // one instance per pool and task
					}
					r.keys = append(r.keys, k)
					if rapid.Bool().Draw(t, "explicit") {
						tags = append(tags, Tag{Key: k, Limit: tagLimit[k], Explicit: true})
						if _, ok := m.learned[k]; !ok {
							m.learned[k] = tagLimit[k]
						}
					} else {
						tags = append(tags, Tag{Key: k, Limit: 1})
					}
				}
				if _, err := q.Push(Request{ID: r.id, Owner: r.owner, Priority: r.prio, Tags: tags}); err != nil {
					t.Fatal(err)
				}
				m.waiting = append(m.waiting, r)
				checkQueue(t, q, m, q.Admit())
			},
			"release": func(t *rapid.T) {
				if len(m.admitted) == 0 {
					t.Skip("nothing admitted")
				}
				id := pick("release", slices.Collect(maps.Keys(m.admitted)))
				if err := q.Release(id); err != nil {
					t.Fatal(err)
				}
				for _, k := range m.admitted[id].holds {
					m.held[k]--
				}
				m.inUse[m.admitted[id].owner]--
				delete(m.admitted, id)
				checkQueue(t, q, m, q.Admit())
			},
			"remove": func(t *rapid.T) {
				if len(m.waiting) == 0 {
					t.Skip("nothing waiting")
				}
				var ids []string
				for _, r := range m.waiting {
					ids = append(ids, r.id)
				}
				id := pick("remove", ids)
				if !q.Remove(id) {
					t.Fatalf("Remove(%q) = false for a waiting request", id)
				}
				_, i := m.find(id)
				if m.reserved != nil && m.reserved.id == id {
					m.reserved = nil
				}
				m.waiting = slices.Delete(m.waiting, i, i+1)
				m.maybeReserve()
				checkQueue(t, q, m, q.Admit())
			},
			"setPools": func(t *rapid.T) {
				keep := rapid.SliceOfDistinct(rapid.SampledFrom(universe), func(k string) string { return k }).Draw(t, "declare")
				if slices.Contains(keep, newInst) && !slices.Contains(m.all, newInst) {
					m.all = append(m.all, newInst)
					m.used[newInst] = 0
					keys = append(keys, newInst)
				}
				m.setPools(q, keep)
				checkQueue(t, q, m, q.Admit())
			},
		})
		// Waiters that name a removed instance run once it is declared again.
		if len(m.all) > 0 {
			m.setPools(q, m.all)
			checkQueue(t, q, m, q.Admit())
		}
		// Every request is admitted once work completes.
		for round := 0; len(m.waiting) > 0; round++ {
			if round > m.seq {
				t.Fatalf("requests %v never admitted", m.waiting)
			}
			for id, r := range m.admitted {
				if err := q.Release(id); err != nil {
					t.Fatal(err)
				}
				for _, k := range r.holds {
					m.held[k]--
				}
				m.inUse[r.owner]--
				delete(m.admitted, id)
			}
			checkQueue(t, q, m, q.Admit())
		}
	})
}
