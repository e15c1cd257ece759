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
}

type modelReq struct {
	id       string
	owner    string
	prio     int32
	seq      int
	keys     []string
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
		l := m.limit(k)
		if res && slices.Contains(m.reserved.keys, k) {
			l--
		}
		if held(k) >= l {
			return false
		}
	}
	return true
}

func (m *model) limit(k string) int {
	if l, ok := m.config[k]; ok {
		return l
	}
	if l, ok := m.learned[k]; ok {
		return l
	}
	return 1
}

func (m *model) maybeReserve() {
	if h := m.head(); m.reserved == nil && h != nil && h.bypassed > m.bound {
		m.reserved = h
	}
}

// admit applies one admission reported by the queue, checking it was
// allowed: within the limits, and the fairest request that fits.
func (m *model) admit(t *rapid.T, id string) {
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
	if h := m.head(); h != r {
		h.bypassed++
	}
	m.waiting = slices.Delete(m.waiting, i, i+1)
	m.admitted[id] = r
	m.inUse[r.owner]++
	for _, k := range r.keys {
		m.held[k]++
	}
	if m.reserved == r {
		m.reserved = nil
	}
	m.maybeReserve()
}

func checkQueue(t *rapid.T, q *Queue, m *model, admitted []string) {
	for _, id := range admitted {
		m.admit(t, id)
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
		if rs.InUse != m.held[rs.Key] || rs.Limit != m.limit(rs.Key) || rs.InUse > rs.Limit {
			t.Fatalf("resource %+v, model held %d limit %d", rs, m.held[rs.Key], m.limit(rs.Key))
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
		q := NewQueue(Config{GlobalLimit: m.global, Limits: m.config, StarvationBound: m.bound})
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
				for _, k := range rapid.SliceOfNDistinct(rapid.SampledFrom(keys), 0, 3, func(k string) string { return k }).Draw(t, "keys") {
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
				for _, k := range m.admitted[id].keys {
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
		})
		// Every request is admitted once work completes.
		for round := 0; len(m.waiting) > 0; round++ {
			if round > m.seq {
				t.Fatalf("requests %v never admitted", m.waiting)
			}
			for id, r := range m.admitted {
				if err := q.Release(id); err != nil {
					t.Fatal(err)
				}
				for _, k := range r.keys {
					m.held[k]--
				}
				m.inUse[r.owner]--
				delete(m.admitted, id)
			}
			checkQueue(t, q, m, q.Admit())
		}
	})
}
