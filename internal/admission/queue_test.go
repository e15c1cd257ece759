package admission

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func tags(t *testing.T, ss ...string) []Tag {
	t.Helper()
	out, err := ParseTags(ss)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func push(t *testing.T, q *Queue, id string, prio int32, ss ...string) []Conflict {
	t.Helper()
	c, err := q.Push(Request{ID: id, Priority: prio, Tags: tags(t, ss...)})
	if err != nil {
		t.Fatalf("Push(%s): %v", id, err)
	}
	return c
}

func release(t *testing.T, q *Queue, id string) []string {
	t.Helper()
	if err := q.Release(id); err != nil {
		t.Fatalf("Release(%s): %v", id, err)
	}
	return q.Admit()
}

func resourceStats(q *Queue, key string) ResourceStats {
	for _, r := range q.Stats().Resources {
		if r.Key == key {
			return r
		}
	}
	return ResourceStats{}
}

func TestNoHeadOfLineBlocking(t *testing.T) {
	// Head-of-line blocking: 20 tasks on device:1 and 20 on free resources,
	// global limit 4. The free ones run without waiting for the device.
	q := NewQueue(Config{GlobalLimit: 4})
	for i := range 20 {
		push(t, q, "dev"+strconv.Itoa(i), 0, "device:1")
	}
	for i := range 20 {
		push(t, q, "free"+strconv.Itoa(i), 0, "api-"+strconv.Itoa(i))
	}
	got := q.Admit()
	want := []string{"dev0", "free0", "free1", "free2"}
	if !slices.Equal(got, want) {
		t.Fatalf("first admissions = %v, want %v", got, want)
	}
	running := map[string]bool{"dev0": true, "free0": true, "free1": true, "free2": true}
	freeDone := 0
	for step := 0; freeDone < 20; step++ {
		if step > 100 {
			t.Fatal("free tasks did not all run")
		}
		// Finish every running free task, keep the device task busy.
		var next []string
		for id := range running {
			if strings.HasPrefix(id, "free") {
				next = append(next, release(t, q, id)...)
				delete(running, id)
				freeDone++
			}
		}
		for _, id := range next {
			if strings.HasPrefix(id, "dev") {
				t.Fatalf("%s admitted while dev0 holds device", id)
			}
			running[id] = true
		}
	}
	if st := resourceStats(q, "device"); st.InUse != 1 || st.Waiting != 19 {
		t.Fatalf("device stats = %+v, want 1 in use, 19 waiting", st)
	}
}

func TestAllOrNothing(t *testing.T) {
	q := NewQueue(Config{GlobalLimit: 10})
	push(t, q, "holdsA", 0, "a")
	q.Admit()
	push(t, q, "needsAB", 5, "a", "b")
	push(t, q, "needsB", 0, "b")
	if got := q.Admit(); !slices.Equal(got, []string{"needsB"}) {
		t.Fatalf("admitted %v; a waiting task must hold nothing, so needsB should run", got)
	}
	if got := release(t, q, "holdsA"); len(got) != 0 {
		t.Fatalf("admitted %v while b is still held", got)
	}
	if got := release(t, q, "needsB"); !slices.Equal(got, []string{"needsAB"}) {
		t.Fatalf("admitted %v, want needsAB once a and b are free", got)
	}
}

func TestPriorityThenArrival(t *testing.T) {
	q := NewQueue(Config{GlobalLimit: 10})
	push(t, q, "holder", 0, "dev")
	q.Admit()
	push(t, q, "low1", 0, "dev")
	push(t, q, "high", 9, "dev")
	push(t, q, "low2", 0, "dev")
	push(t, q, "mid", 3, "dev")
	var order []string
	last := "holder"
	for range 4 {
		got := release(t, q, last)
		if len(got) != 1 {
			t.Fatalf("admitted %v, want exactly one", got)
		}
		last = got[0]
		order = append(order, last)
	}
	if want := []string{"high", "mid", "low1", "low2"}; !slices.Equal(order, want) {
		t.Fatalf("order %v, want %v", order, want)
	}
}

func TestGlobalLimitOrder(t *testing.T) {
	q := NewQueue(Config{GlobalLimit: 1})
	push(t, q, "first", 0)
	q.Admit()
	push(t, q, "a", 0)
	push(t, q, "b", 1, "x")
	push(t, q, "c", 1)
	if got := release(t, q, "first"); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("admitted %v, want b", got)
	}
	if got := release(t, q, "b"); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("admitted %v, want c", got)
	}
}

func TestStarvationReservation(t *testing.T) {
	// "both" needs a and b; a stream of single-resource tasks keeps one of
	// them busy at all times. With bound 2, the third overtaking admission
	// makes the queue reserve a and b for "both".
	q := NewQueue(Config{GlobalLimit: 10, StarvationBound: 2})
	push(t, q, "a0", 0, "a")
	q.Admit()
	push(t, q, "both", 0, "a", "b")
	q.Admit()
	n := 0
	single := func(key string) string {
		n++
		id := fmt.Sprintf("%s%d", key, n)
		push(t, q, id, 0, key)
		return id
	}
	b1 := single("b")
	if got := q.Admit(); !slices.Equal(got, []string{b1}) {
		t.Fatalf("admitted %v, want %s (no head-of-line blocking)", got, b1)
	}
	a2 := single("a")
	if got := release(t, q, "a0"); !slices.Equal(got, []string{a2}) {
		t.Fatalf("admitted %v, want %s", got, a2)
	}
	b3 := single("b")
	if got := release(t, q, b1); !slices.Equal(got, []string{b3}) {
		t.Fatalf("admitted %v, want %s", got, b3)
	}
	if st := q.Stats(); st.Reserved != "both" {
		t.Fatalf("after 3 overtakes reserved = %q, want both", st.Reserved)
	}
	// From now on nobody else takes a or b.
	a4 := single("a")
	if got := release(t, q, a2); len(got) != 0 {
		t.Fatalf("admitted %v; a is reserved for both", got)
	}
	if got := release(t, q, b3); !slices.Equal(got, []string{"both"}) {
		t.Fatalf("admitted %v, want both", got)
	}
	if st := q.Stats(); st.Reserved != "" {
		t.Fatalf("reservation %q outlived its admission", st.Reserved)
	}
	if got := release(t, q, "both"); !slices.Equal(got, []string{a4}) {
		t.Fatalf("admitted %v, want %s", got, a4)
	}
}

func TestReservationKeepsGlobalSlot(t *testing.T) {
	q := NewQueue(Config{GlobalLimit: 2, StarvationBound: 1})
	push(t, q, "x", 0, "x")
	q.Admit()
	push(t, q, "needsX", 0, "x")
	push(t, q, "f1", 0)
	push(t, q, "f2", 0)
	if got := q.Admit(); !slices.Equal(got, []string{"f1"}) {
		t.Fatalf("admitted %v, want f1", got)
	}
	if got := release(t, q, "f1"); !slices.Equal(got, []string{"f2"}) {
		t.Fatalf("admitted %v, want f2", got)
	}
	if q.Stats().Reserved != "needsX" {
		t.Fatalf("reserved = %q, want needsX", q.Stats().Reserved)
	}
	push(t, q, "f3", 0)
	if got := release(t, q, "f2"); len(got) != 0 {
		t.Fatalf("admitted %v; the last global slot is reserved", got)
	}
	if got := release(t, q, "x"); !slices.Equal(got, []string{"needsX", "f3"}) {
		t.Fatalf("admitted %v, want needsX then f3", got)
	}
}

func TestRemoveReservedClearsReservation(t *testing.T) {
	q := NewQueue(Config{GlobalLimit: 5, StarvationBound: 1})
	push(t, q, "h", 0, "a")
	q.Admit()
	push(t, q, "blocked", 0, "a", "b")
	push(t, q, "b1", 0, "b")
	push(t, q, "b2", 0, "b:3")
	q.Admit()
	if q.Stats().Reserved != "blocked" {
		t.Fatalf("reserved = %q", q.Stats().Reserved)
	}
	push(t, q, "b3", 0, "b")
	if got := q.Admit(); len(got) != 0 {
		t.Fatalf("admitted %v past the reservation", got)
	}
	if !q.Remove("blocked") {
		t.Fatal("Remove(blocked) = false")
	}
	if q.Stats().Reserved != "" {
		t.Fatal("reservation outlived the removed request")
	}
	if got := q.Admit(); !slices.Equal(got, []string{"b3"}) {
		t.Fatalf("admitted %v, want b3 once the reservation is gone", got)
	}
}

func TestLimitsAndConflicts(t *testing.T) {
	q := NewQueue(Config{GlobalLimit: 10, Limits: map[string]int{"device": 2}})
	if c := push(t, q, "t1", 0, "device:5"); !slices.Equal(c, []Conflict{{Key: "device", TagLimit: 5, Limit: 2, FromConfig: true}}) {
		t.Fatalf("conflicts %v, want device 5 vs configured 2", c)
	}
	if c := push(t, q, "t2", 0, "device:5"); len(c) != 0 {
		t.Fatalf("conflict reported twice: %v", c)
	}
	push(t, q, "t3", 0, "device")
	if got := q.Admit(); len(got) != 2 {
		t.Fatalf("admitted %v, want 2 (the configured limit wins)", got)
	}
	// No configuration: the first explicit tag limit governs.
	if c := push(t, q, "u1", 0, "api"); len(c) != 0 {
		t.Fatalf("conflicts %v for a tag without a limit", c)
	}
	if c := push(t, q, "u2", 0, "api:3"); len(c) != 0 {
		t.Fatalf("conflicts %v for the first explicit limit", c)
	}
	if c := push(t, q, "u3", 0, "api:1"); !slices.Equal(c, []Conflict{{Key: "api", TagLimit: 1, Limit: 3}}) {
		t.Fatalf("conflicts %v, want api 1 vs first seen 3", c)
	}
	push(t, q, "u4", 0, "api")
	if got := q.Admit(); len(got) != 3 || q.Limit("api") != 3 {
		t.Fatalf("admitted %v with limit %d, want 3 of api", got, q.Limit("api"))
	}
	if s := (Conflict{Key: "api", TagLimit: 1, Limit: 3}).String(); !strings.Contains(s, `"api"`) {
		t.Fatalf("Conflict.String() = %q", s)
	}
}

func TestSetLimits(t *testing.T) {
	q := NewQueue(Config{GlobalLimit: 2})
	for i := range 4 {
		push(t, q, "t"+strconv.Itoa(i), 0, "gpu")
	}
	if got := q.Admit(); len(got) != 1 {
		t.Fatalf("admitted %v, want 1 (default limit 1)", got)
	}
	q.SetLimits(2, map[string]int{"gpu": 3})
	if got := q.Admit(); len(got) != 1 {
		t.Fatalf("admitted %v, want 1 more (global limit 2)", got)
	}
	q.SetLimits(10, map[string]int{"gpu": 3})
	if got := q.Admit(); len(got) != 1 {
		t.Fatalf("admitted %v, want 1 more (gpu limit 3)", got)
	}
	q.SetLimits(10, map[string]int{"gpu": 1})
	if st := resourceStats(q, "gpu"); st.InUse != 3 || st.Limit != 1 {
		t.Fatalf("lowering a limit must not evict: %+v", st)
	}
	release(t, q, "t0")
	if got := release(t, q, "t1"); len(got) != 0 {
		t.Fatalf("admitted %v above the lowered limit", got)
	}
	if got := release(t, q, "t2"); !slices.Equal(got, []string{"t3"}) {
		t.Fatalf("admitted %v, want t3", got)
	}
}

func TestErrors(t *testing.T) {
	q := NewQueue(Config{})
	push(t, q, "a", 0)
	q.Admit()
	push(t, q, "w", 0, "k")
	push(t, q, "w2", 0, "k")
	q.Admit()
	for _, id := range []string{"a", "w2"} {
		if _, err := q.Push(Request{ID: id}); !errors.Is(err, ErrDuplicateID) {
			t.Errorf("Push(%s) again: %v, want ErrDuplicateID", id, err)
		}
	}
	if _, err := q.Push(Request{ID: "bad", Tags: []Tag{{Key: "", Limit: 1}}}); !errors.Is(err, ErrInvalidTag) {
		t.Errorf("Push with an empty key: %v, want ErrInvalidTag", err)
	}
	if err := q.Release("w2"); !errors.Is(err, ErrNotAdmitted) {
		t.Errorf("Release(waiting) = %v, want ErrNotAdmitted", err)
	}
	if err := q.Release("a"); err != nil {
		t.Fatal(err)
	}
	if err := q.Release("a"); !errors.Is(err, ErrNotAdmitted) {
		t.Errorf("second Release = %v, want ErrNotAdmitted", err)
	}
	if q.Remove("w") || q.Remove("nope") {
		t.Error("Remove of an admitted or unknown request returned true")
	}
	if !q.Remove("w2") || q.Remove("w2") {
		t.Error("Remove of a waiting request: want true once")
	}
	if st := q.Stats(); st.GlobalLimit != DefaultGlobalLimit || st.Waiting != 0 || st.InUse != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestRemovePromotedWaiterLetsNextRun(t *testing.T) {
	q := NewQueue(Config{GlobalLimit: 1})
	push(t, q, "h", 0, "k")
	q.Admit()
	push(t, q, "w1", 0, "k")
	push(t, q, "w2", 0, "k")
	q.Admit()
	// Releasing h with global limit 1 promotes w1, which is admitted at once.
	if got := release(t, q, "h"); !slices.Equal(got, []string{"w1"}) {
		t.Fatalf("admitted %v, want w1", got)
	}
	q.SetLimits(1, map[string]int{"k": 2})
	q.Admit() // w2 is promoted but the global limit holds it back
	if !q.Remove("w2") {
		t.Fatal("Remove(w2) = false")
	}
	push(t, q, "w3", 0, "k")
	if got := release(t, q, "w1"); !slices.Equal(got, []string{"w3"}) {
		t.Fatalf("admitted %v, want w3", got)
	}
}

func TestStatsSortedByKey(t *testing.T) {
	q := NewQueue(Config{GlobalLimit: 3, Limits: map[string]int{"zeta": 4}})
	push(t, q, "1", 0, "b", "a:2")
	push(t, q, "2", 0, "b")
	q.Admit()
	st := q.Stats()
	want := []ResourceStats{{Key: "a", Limit: 2, InUse: 1}, {Key: "b", Limit: 1, InUse: 1, Waiting: 1}, {Key: "zeta", Limit: 4}}
	if !slices.Equal(st.Resources, want) || st.InUse != 1 || st.Waiting != 1 || st.GlobalLimit != 3 {
		t.Fatalf("stats %+v, want resources %+v", st, want)
	}
}

// Regression cases found by the property test.

func TestBlockedWaiterNotHiddenByEarlierPromotion(t *testing.T) {
	// r4 (low priority) is promoted when k2 frees but the global limit holds
	// it back; r7 (higher priority) then parks on k2. When k2 frees again,
	// r7 must be considered before r4.
	q := NewQueue(Config{GlobalLimit: 2, StarvationBound: 1})
	push(t, q, "r1", 0)
	push(t, q, "r2", 0)
	q.Admit()
	push(t, q, "r3", 0, "k0", "k2")
	push(t, q, "r4", 0, "k2")
	push(t, q, "r5", 0)
	release(t, q, "r1")
	push(t, q, "r6", 1, "k0", "k2")
	release(t, q, "r2")
	push(t, q, "r7", 1, "k2")
	push(t, q, "r8", 1)
	push(t, q, "r9", 1)
	q.Release("r3")
	if got := release(t, q, "r5"); !slices.Equal(got, []string{"r6", "r8"}) {
		t.Fatalf("admitted %v, want r6 r8", got)
	}
	q.Release("r6")
	if got := release(t, q, "r8"); !slices.Equal(got, []string{"r7", "r9"}) {
		t.Fatalf("admitted %v, want r7 r9", got)
	}
}

func TestReservedWaiterBelowLaterHigherPriority(t *testing.T) {
	// r2 holds the reservation; r5 has higher priority but arrived later and
	// waits on the same key. The reservation is honoured first.
	q := NewQueue(Config{GlobalLimit: 3, StarvationBound: 1})
	push(t, q, "r1", 0, "k3")
	push(t, q, "r2", 0, "k0", "k3")
	push(t, q, "r3", 0)
	push(t, q, "r4", 0, "k0")
	q.Admit()
	if q.Stats().Reserved != "r2" {
		t.Fatalf("reserved %q, want r2", q.Stats().Reserved)
	}
	push(t, q, "r5", 1, "k0")
	q.Admit()
	release(t, q, "r1")
	release(t, q, "r3")
	if got := release(t, q, "r4"); !slices.Equal(got, []string{"r2"}) {
		t.Fatalf("admitted %v, want the reserved r2", got)
	}
	if got := release(t, q, "r2"); !slices.Equal(got, []string{"r5"}) {
		t.Fatalf("admitted %v, want r5", got)
	}
}

func pushAs(t *testing.T, q *Queue, owner, id string, prio int32, ss ...string) {
	t.Helper()
	if _, err := q.Push(Request{ID: id, Owner: owner, Priority: prio, Tags: tags(t, ss...)}); err != nil {
		t.Fatalf("Push(%s): %v", id, err)
	}
}

func TestFairShareBetweenOwners(t *testing.T) {
	// Owner a floods a queue with global limit 4; b's one task starts at
	// the first free slot, not behind a's backlog, and a's own priority
	// cannot buy its way ahead of b.
	q := NewQueue(Config{GlobalLimit: 4})
	for i := range 100 {
		pushAs(t, q, "a", "a"+strconv.Itoa(i), 1000)
	}
	if got := q.Admit(); !slices.Equal(got, []string{"a0", "a1", "a2", "a3"}) {
		t.Fatalf("admitted %v, want a0-a3", got)
	}
	pushAs(t, q, "b", "b0", 0)
	if got := q.Admit(); len(got) != 0 {
		t.Fatalf("admitted %v with every slot held; nothing is taken back", got)
	}
	if got := release(t, q, "a0"); !slices.Equal(got, []string{"b0"}) {
		t.Fatalf("admitted %v after a slot freed, want b0 (b holds none, a holds 3)", got)
	}
	// Both backlogged: slots alternate until each holds its share, 2.
	for i := range 10 {
		pushAs(t, q, "b", "b"+strconv.Itoa(i+1), 0)
	}
	if got := release(t, q, "a1"); !slices.Equal(got, []string{"b1"}) {
		t.Fatalf("admitted %v, want b1 (b holds 1, a holds 2)", got)
	}
	if got := release(t, q, "a2"); !slices.Equal(got, []string{"a4"}) {
		t.Fatalf("admitted %v, want a4 (a holds 1, b holds 2)", got)
	}
	if got := release(t, q, "b0"); !slices.Equal(got, []string{"b2"}) {
		t.Fatalf("admitted %v, want b2 (b holds 1, a holds 2)", got)
	}
	want := []OwnerStats{{Owner: "a", InUse: 2, Waiting: 95}, {Owner: "b", InUse: 2, Waiting: 8}}
	if st := q.Stats(); !slices.Equal(st.Owners, want) {
		t.Fatalf("owners %+v, want %+v", st.Owners, want)
	}
}

func TestFairShareKeepsPriorityWithinAnOwner(t *testing.T) {
	// a keeps one slot busy throughout ("pin"); the other slot goes round.
	// b holds fewer slots until its queue is empty, so fairness orders
	// across owners and priority only within each.
	q := NewQueue(Config{GlobalLimit: 2})
	pushAs(t, q, "a", "pin", 0)
	pushAs(t, q, "c", "running", 0)
	q.Admit()
	pushAs(t, q, "a", "a-low", 0)
	pushAs(t, q, "a", "a-high", 9)
	pushAs(t, q, "b", "b-low", -5)
	pushAs(t, q, "b", "b-high", 5)
	var order []string
	last := "running"
	for range 4 {
		got := release(t, q, last)
		if len(got) != 1 {
			t.Fatalf("admitted %v, want one", got)
		}
		last = got[0]
		order = append(order, last)
	}
	if want := []string{"b-high", "b-low", "a-high", "a-low"}; !slices.Equal(order, want) {
		t.Fatalf("order %v, want %v", order, want)
	}
}

func TestFairShareWithoutHeadOfLineBlocking(t *testing.T) {
	// b's first task waits on a busy device; b's next one, on nothing,
	// still takes b's turn, and a busy device never holds up other work.
	q := NewQueue(Config{GlobalLimit: 3})
	pushAs(t, q, "a", "a-dev", 0, "dev")
	for i := range 5 {
		pushAs(t, q, "a", "a"+strconv.Itoa(i), 0)
	}
	q.Admit() // a-dev, a0, a1
	pushAs(t, q, "b", "b-dev", 0, "dev")
	pushAs(t, q, "b", "b-free", 0)
	if got := release(t, q, "a0"); !slices.Equal(got, []string{"b-free"}) {
		t.Fatalf("admitted %v, want b-free (b-dev waits for dev)", got)
	}
	if got := release(t, q, "b-free"); !slices.Equal(got, []string{"a2"}) {
		t.Fatalf("admitted %v, want a2 (b's only waiter needs the busy dev)", got)
	}
	if got := release(t, q, "a-dev"); !slices.Equal(got, []string{"b-dev"}) {
		t.Fatalf("admitted %v, want b-dev once dev is free (b holds none)", got)
	}
}
