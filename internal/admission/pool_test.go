package admission

import (
	"errors"
	"maps"
	"slices"
	"strconv"
	"testing"
)

func farm(cfg Config, instances ...string) *Queue {
	cfg.Pools = []Pool{{Name: "device", Instances: instances}}
	cfg.Limits = maps.Clone(cfg.Limits)
	if cfg.Limits == nil {
		cfg.Limits = map[string]int{}
	}
	for _, inst := range instances {
		if _, ok := cfg.Limits[InstanceKey("device", inst)]; !ok {
			cfg.Limits[InstanceKey("device", inst)] = 1
		}
	}
	return NewQueue(cfg)
}

func boundTo(t *testing.T, q *Queue, id string) string {
	t.Helper()
	b := q.Bound(id)
	if len(b) != 1 {
		t.Fatalf("%s is bound to %v, want one device", id, b)
	}
	return b["device"]
}

func TestPoolGivesEachTaskItsOwnInstance(t *testing.T) {
	q := farm(Config{GlobalLimit: 10}, "a", "b", "c")
	for i := range 5 {
		push(t, q, "t"+strconv.Itoa(i), 0, "device:*")
	}
	got := q.Admit()
	if !slices.Equal(got, []string{"t0", "t1", "t2"}) {
		t.Fatalf("admitted %v, want the first three (three instances)", got)
	}
	seen := map[string]string{}
	for _, id := range got {
		inst := boundTo(t, q, id)
		if other, dup := seen[inst]; dup {
			t.Fatalf("%s and %s both got instance %s", other, id, inst)
		}
		seen[inst] = id
	}
	// The instance t1 frees goes to the next waiter.
	freed := boundTo(t, q, "t1")
	if got := release(t, q, "t1"); !slices.Equal(got, []string{"t3"}) {
		t.Fatalf("after a release admitted %v, want [t3]", got)
	}
	if inst := boundTo(t, q, "t3"); inst != freed {
		t.Fatalf("t3 got %s, want the freed %s", inst, freed)
	}
	if q.Bound("t4") != nil {
		t.Fatal("a waiting task is bound to an instance")
	}
}

func TestPoolTakesLeastRecentlyUsed(t *testing.T) {
	q := farm(Config{GlobalLimit: 10}, "a", "b", "c")
	order := []string{}
	for i := range 3 {
		id := "t" + strconv.Itoa(i)
		push(t, q, id, 0, "device:*")
		q.Admit()
		order = append(order, boundTo(t, q, id))
	}
	// Free them newest first: the next task still gets the one used
	// longest ago.
	for i := 2; i >= 0; i-- {
		release(t, q, "t"+strconv.Itoa(i))
	}
	push(t, q, "next", 0, "device:*")
	q.Admit()
	if got := boundTo(t, q, "next"); got != order[0] {
		t.Fatalf("got %s, want the least recently used %s (use order %v)", got, order[0], order)
	}
}

func TestPoolPreferenceRanksFirst(t *testing.T) {
	// The preference says "c" is best for every task (as an instance
	// already in the state a task needs would be).
	q := farm(Config{GlobalLimit: 10, Prefer: func(id, pool, inst string) int {
		if inst == "c" {
			return 0
		}
		return 1
	}}, "a", "b", "c")
	push(t, q, "t0", 0, "device:*")
	push(t, q, "t1", 0, "device:*")
	q.Admit()
	if got := boundTo(t, q, "t0"); got != "c" {
		t.Fatalf("t0 got %s, want the preferred c", got)
	}
	if got := boundTo(t, q, "t1"); got == "c" {
		t.Fatal("t1 got c, which t0 holds")
	}
}

func TestPoolWaiterHoldsNothingWhileAnotherTagIsBusy(t *testing.T) {
	q := farm(Config{GlobalLimit: 10}, "a", "b")
	push(t, q, "lock-holder", 0, "lock")
	q.Admit()
	// blocked wants a device and the busy lock: it must not sit on a
	// device meanwhile, so two device-only tasks behind it both run.
	push(t, q, "blocked", 5, "device:*", "lock")
	push(t, q, "d1", 0, "device:*")
	push(t, q, "d2", 0, "device:*")
	if got := q.Admit(); !slices.Equal(got, []string{"d1", "d2"}) {
		t.Fatalf("admitted %v, want [d1 d2]: the blocked task held a device", got)
	}
	if st := resourceStats(q, "device:*"); st.InUse != 2 || st.Limit != 2 || st.Waiting != 1 {
		t.Fatalf("pool stats %+v, want 2 of 2 in use and 1 waiting", st)
	}
	// Once the lock and a device are free, it gets both at once.
	release(t, q, "lock-holder")
	if got := release(t, q, "d1"); !slices.Equal(got, []string{"blocked"}) {
		t.Fatalf("admitted %v, want [blocked]", got)
	}
}

func TestPoolPinnedAndAnyTogether(t *testing.T) {
	q := farm(Config{GlobalLimit: 10}, "a", "b")
	// A task naming a and asking for any other gets a and b.
	push(t, q, "two", 0, "device:a", "device:*")
	q.Admit()
	for _, key := range []string{"device:a", "device:b"} {
		if st := resourceStats(q, key); st.InUse != 1 {
			t.Fatalf("%s in use %d, want 1 (the task holds both)", key, st.InUse)
		}
	}
	push(t, q, "pinned", 0, "device:a")
	push(t, q, "any", 0, "device:*")
	if got := q.Admit(); len(got) != 0 {
		t.Fatalf("admitted %v while both instances are held", got)
	}
	if got := release(t, q, "two"); !slices.Equal(got, []string{"pinned", "any"}) {
		t.Fatalf("admitted %v, want [pinned any]", got)
	}
	if got := boundTo(t, q, "any"); got != "b" {
		t.Fatalf("any got %s, want b (a is pinned)", got)
	}
}

func TestPoolPriorityThenFIFO(t *testing.T) {
	q := farm(Config{GlobalLimit: 10}, "a")
	push(t, q, "running", 0, "device:*")
	q.Admit()
	push(t, q, "low", 0, "device:*")
	push(t, q, "high1", 5, "device:*")
	push(t, q, "pinned-high2", 5, "device:a")
	push(t, q, "high3", 5, "device:*")
	var order []string
	last := "running"
	for range 4 {
		got := release(t, q, last)
		if len(got) != 1 {
			t.Fatalf("admitted %v, want one at a time (one instance)", got)
		}
		order = append(order, got[0])
		last = got[0]
	}
	if want := []string{"high1", "pinned-high2", "high3", "low"}; !slices.Equal(order, want) {
		t.Fatalf("order %v, want %v", order, want)
	}
}

func TestPoolUnknownIsRefused(t *testing.T) {
	q := farm(Config{}, "a")
	_, err := q.Push(Request{ID: "x", Tags: []Tag{{Key: "phone:*", Limit: 1}}})
	if !errors.Is(err, ErrInvalidTag) {
		t.Fatalf("Push with an undeclared pool: %v, want ErrInvalidTag", err)
	}
	if st := q.Stats(); st.Waiting != 0 {
		t.Fatalf("the refused request waits: %+v", st)
	}
}

func TestPoolDetails(t *testing.T) {
	q := farm(Config{GlobalLimit: 10, Limits: map[string]int{"api": 2}}, "a", "b")
	push(t, q, "h1", 0, "device:*", "api")
	push(t, q, "h2", 0, "device:b")
	q.Admit()
	push(t, q, "w1", 0, "device:*")
	push(t, q, "w2", 3, "device:*")
	push(t, q, "w3", 0, "device:a")
	if got := q.Admit(); len(got) != 0 {
		t.Fatalf("admitted %v with both instances held", got)
	}
	byKey := map[string]ResourceDetail{}
	for _, d := range q.Details(1) {
		byKey[d.Key] = d
	}
	pool := byKey["device:*"]
	if pool.Pool != "device" || pool.Limit != 2 || pool.InUse != 2 || pool.Waiting != 2 || !slices.Equal(pool.Waiters, []string{"w2"}) ||
		!slices.Equal(pool.Holders, []string{"h1", "h2"}) {
		t.Fatalf("pool row %+v", pool)
	}
	a := byKey["device:a"]
	if a.Instance != "a" || !slices.Equal(a.Holders, []string{"h1"}) || a.Waiting != 1 || !slices.Equal(a.Waiters, []string{"w3"}) {
		t.Fatalf("instance a %+v", a)
	}
	if b := byKey["device:b"]; !slices.Equal(b.Holders, []string{"h2"}) {
		t.Fatalf("instance b %+v", b)
	}
	if api := byKey["api"]; api.Limit != 2 || !slices.Equal(api.Holders, []string{"h1"}) || api.Pool != "" {
		t.Fatalf("api %+v", api)
	}
}
