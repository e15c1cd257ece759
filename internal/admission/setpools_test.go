package admission

import (
	"slices"
	"strings"
	"testing"
)

// reload declares the device pool anew with instances, one task each, as
// a daemon's reload does: the pools, then the limits.
func reload(q *Queue, instances ...string) []string {
	limits := map[string]int{}
	for _, inst := range instances {
		limits[InstanceKey("device", inst)] = 1
	}
	q.SetPools([]Pool{{Name: "device", Instances: instances}})
	q.SetLimits(q.Stats().GlobalLimit, limits)
	return q.Admit()
}

func TestSetPoolsNewInstanceTakesAWaiter(t *testing.T) {
	q := farm(Config{GlobalLimit: 10}, "a")
	push(t, q, "holder", 0, "device:*")
	push(t, q, "waiter", 0, "device:*")
	if got := q.Admit(); !slices.Equal(got, []string{"holder"}) {
		t.Fatalf("admitted %v, want [holder] (one instance)", got)
	}
	if got := reload(q, "a", "b"); !slices.Equal(got, []string{"waiter"}) {
		t.Fatalf("after declaring instance b admitted %v, want [waiter]", got)
	}
	if inst := boundTo(t, q, "waiter"); inst != "b" {
		t.Fatalf("waiter got instance %s, want the new b", inst)
	}
	if st := resourceStats(q, "device:*"); st.Limit != 2 || st.InUse != 2 {
		t.Fatalf("pool stats %+v, want limit 2 in use 2", st)
	}
}

func TestSetPoolsRemovedInstanceTakesNoNewTask(t *testing.T) {
	q := farm(Config{GlobalLimit: 10}, "a", "b")
	push(t, q, "on-a", 0, "device:a")
	q.Admit()
	if got := reload(q, "b"); len(got) != 0 {
		t.Fatalf("removing a admitted %v", got)
	}
	// The holder keeps a; a task that named a waits; one that asks for any
	// instance gets b, never a.
	if b := q.Bound("on-a"); b["device"] != "a" {
		t.Fatalf("the holder of a lost it: bound %v", b)
	}
	push(t, q, "pinned", 0, "device:a")
	push(t, q, "any1", 0, "device:*")
	push(t, q, "any2", 0, "device:*")
	if got := q.Admit(); !slices.Equal(got, []string{"any1"}) {
		t.Fatalf("admitted %v, want [any1] on b", got)
	}
	if inst := boundTo(t, q, "any1"); inst != "b" {
		t.Fatalf("any1 got %s, want b", inst)
	}
	if got := release(t, q, "on-a"); len(got) != 0 {
		t.Fatalf("releasing the removed instance a admitted %v", got)
	}
	// Declared again, a takes its waiter.
	if got := reload(q, "a", "b"); !slices.Equal(got, []string{"pinned"}) {
		t.Fatalf("declaring a again admitted %v, want [pinned]", got)
	}
}

func TestSetPoolsRemovedPool(t *testing.T) {
	q := farm(Config{GlobalLimit: 10}, "a")
	push(t, q, "holder", 0, "device:*")
	push(t, q, "waiter", 0, "device:*")
	q.Admit()
	q.SetPools(nil)
	if got := release(t, q, "holder"); len(got) != 0 {
		t.Fatalf("a removed pool admitted %v", got)
	}
	_, err := q.Push(Request{ID: "late", Tags: tags(t, "device:*")})
	if err == nil || !strings.Contains(err.Error(), `no pool "device"`) {
		t.Fatalf("Push for a removed pool: %v, want no pool \"device\"", err)
	}
	if got := reload(q, "c"); !slices.Equal(got, []string{"waiter"}) {
		t.Fatalf("declaring the pool again admitted %v, want [waiter]", got)
	}
	if inst := boundTo(t, q, "waiter"); inst != "c" {
		t.Fatalf("waiter got %s, want c", inst)
	}
}

// A waiter that names a removed instance must not keep the starvation
// reservation: it would hold back a global slot for a task that cannot run.
func TestSetPoolsStuckHeadIsNotReserved(t *testing.T) {
	q := farm(Config{GlobalLimit: 2, StarvationBound: 1}, "a", "b")
	push(t, q, "on-a", 0, "device:a")
	push(t, q, "pinned", 0, "device:a")
	push(t, q, "x1", 0, "k1")
	push(t, q, "x2", 0, "k2")
	push(t, q, "x3", 0, "k3")
	if got := q.Admit(); !slices.Equal(got, []string{"on-a", "x1"}) {
		t.Fatalf("admitted %v, want [on-a x1]", got)
	}
	if got := release(t, q, "x1"); !slices.Equal(got, []string{"x2"}) {
		t.Fatalf("admitted %v, want [x2]", got)
	}
	if r := q.Stats().Reserved; r != "pinned" {
		t.Fatalf("reserved %q, want pinned (overtaken twice, bound 1)", r)
	}
	reload(q, "b")
	if r := q.Stats().Reserved; r != "" {
		t.Fatalf("reserved %q, a waiter for a removed instance", r)
	}
	if got := release(t, q, "on-a"); !slices.Equal(got, []string{"x3"}) {
		t.Fatalf("admitted %v, want [x3]: no global slot is kept for pinned", got)
	}
	if got := release(t, q, "x2"); len(got) != 0 {
		t.Fatalf("admitted %v while a is removed", got)
	}
	if got := reload(q, "a", "b"); !slices.Equal(got, []string{"pinned"}) {
		t.Fatalf("declaring a again admitted %v, want [pinned]", got)
	}
}
