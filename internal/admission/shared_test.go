package admission

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// start does what the manager does with what a queue admits: a request
// with shared keys claims them from the ledger and starts only if granted,
// otherwise it goes back to the queue. It returns the requests started.
func start(t *testing.T, q *Queue, l Ledger, admitted []string) []string {
	t.Helper()
	var out []string
	for len(admitted) > 0 {
		var again []string
		for _, id := range admitted {
			claims := q.Claims(id)
			if claims == nil {
				out = append(out, id)
				continue
			}
			ok, full, err := l.Acquire(context.Background(), id, claims)
			if err != nil {
				t.Fatalf("Acquire(%s): %v", id, err)
			}
			if ok {
				out = append(out, id)
				continue
			}
			if err := q.Refused(id, claims[full].Key); err != nil {
				t.Fatalf("Refused(%s): %v", id, err)
			}
			again = append(again, q.Admit()...)
		}
		admitted = again
	}
	return out
}

func sharedKeys(keys ...string) func(string) bool {
	return func(k string) bool { return slices.Contains(keys, k) }
}

func TestSharedKeyHeldByAnotherQueue(t *testing.T) {
	// Two queues (two daemons) share "device" through one ledger: the
	// limit holds across them, a refused request waits in its place, and
	// Changed lets it try again once the other daemon's holder is gone.
	ledger := NewLocalLedger()
	cfg := Config{GlobalLimit: 5, Limits: map[string]int{"device": 1}, Shared: sharedKeys("device")}
	q1, q2 := NewQueue(cfg), NewQueue(cfg)
	push(t, q1, "n1", 0, "device")
	push(t, q2, "n2", 0, "device", "local")
	push(t, q2, "n3", 0, "local:2")
	if got := start(t, q1, ledger, q1.Admit()); !slices.Equal(got, []string{"n1"}) {
		t.Fatalf("q1 started %v, want n1", got)
	}
	if got := start(t, q2, ledger, q2.Admit()); !slices.Equal(got, []string{"n3"}) {
		t.Fatalf("q2 started %v while q1 holds the device, want n3 (its keys are its own)", got)
	}
	st := q2.Stats()
	if st.InUse != 1 || st.Waiting != 1 || resourceStats(q2, "local").InUse != 1 {
		t.Fatalf("q2 after the refusal: %+v; want n2 waiting, holding nothing", st)
	}
	if got := release(t, q1, "n1"); len(got) != 0 {
		t.Fatalf("q1 admitted %v", got)
	}
	if err := ledger.Release(context.Background(), "n1", []string{"device"}); err != nil {
		t.Fatal(err)
	}
	if got := q2.Admit(); len(got) != 0 {
		t.Fatalf("q2 admitted %v before being told the device changed", got)
	}
	q2.Changed("device")
	if got := start(t, q2, ledger, q2.Admit()); !slices.Equal(got, []string{"n2"}) {
		t.Fatalf("q2 started %v after Changed, want n2", got)
	}
	if ledger.Held("device") != 1 {
		t.Fatalf("ledger holds %d device slots, want 1", ledger.Held("device"))
	}
}

func TestRefusedKeepsItsPlace(t *testing.T) {
	// A refused request goes back ahead of those that arrived after it:
	// when the shared key frees, it is the one admitted, not a later one.
	q := NewQueue(Config{GlobalLimit: 1, Limits: map[string]int{"k": 1}, Shared: sharedKeys("k")})
	push(t, q, "first", 0, "k")
	push(t, q, "second", 0, "k")
	if got := q.Admit(); !slices.Equal(got, []string{"first"}) {
		t.Fatalf("admitted %v", got)
	}
	if err := q.Refused("first", "k"); err != nil {
		t.Fatal(err)
	}
	// second was never refused, so it is tried, and refused in turn.
	if got := q.Admit(); !slices.Equal(got, []string{"second"}) {
		t.Fatalf("admitted %v after first's refusal, want second", got)
	}
	if err := q.Refused("second", "k"); err != nil {
		t.Fatal(err)
	}
	// Both now wait on k until Changed: the ledger said it is full.
	if got := q.Admit(); len(got) != 0 {
		t.Fatalf("admitted %v with k refused and unchanged", got)
	}
	q.Changed("k")
	if got := q.Admit(); !slices.Equal(got, []string{"first"}) {
		t.Fatalf("admitted %v after Changed, want first (the earlier arrival)", got)
	}
	if st := q.Stats(); st.Waiting != 1 || st.InUse != 1 {
		t.Fatalf("stats %+v, want second waiting", st)
	}
}

func TestClaimsNameOnlySharedKeys(t *testing.T) {
	q := NewQueue(Config{GlobalLimit: 4, Limits: map[string]int{"c": 3}, Shared: sharedKeys("c")})
	push(t, q, "a", 0, "local", "c")
	push(t, q, "b", 0, "other")
	q.Admit()
	if got := q.Claims("a"); !slices.Equal(got, []Claim{{Key: "c", Limit: 3}}) {
		t.Fatalf("Claims(a) = %v, want c with limit 3", got)
	}
	if got := q.Claims("b"); got != nil {
		t.Fatalf("Claims(b) = %v for local keys only", got)
	}
	if got := q.Claims("nobody"); got != nil {
		t.Fatalf("Claims of an unknown id = %v", got)
	}
	if err := q.Refused("b", "other"); !errors.Is(err, ErrNotShared) {
		t.Fatalf("Refused on a local key: %v, want ErrNotShared", err)
	}
	if err := q.Refused("nobody", "c"); !errors.Is(err, ErrNotAdmitted) {
		t.Fatalf("Refused of an unknown id: %v, want ErrNotAdmitted", err)
	}
	if unshared := NewQueue(Config{}); unshared.Claims("a") != nil {
		t.Fatal("a queue without shared keys has claims")
	}
}

func TestLocalLedger(t *testing.T) {
	l := NewLocalLedger()
	ctx := context.Background()
	acquire := func(holder string, claims ...Claim) (bool, int) {
		t.Helper()
		ok, full, err := l.Acquire(ctx, holder, claims)
		if err != nil {
			t.Fatal(err)
		}
		return ok, full
	}
	if ok, _ := acquire("a", Claim{"x", 1}, Claim{"y", 2}); !ok {
		t.Fatal("a refused on an empty ledger")
	}
	// All or none: b gets neither y nor x.
	if ok, full := acquire("b", Claim{"y", 2}, Claim{"x", 1}); ok || full != 1 {
		t.Fatalf("b: ok=%v full=%d, want refused on x (index 1)", ok, full)
	}
	if l.Held("y") != 1 {
		t.Fatalf("y held %d after a refused claim, want 1", l.Held("y"))
	}
	// Asking again for what a holder has (a retry after a lost answer)
	// does not count twice.
	if ok, _ := acquire("a", Claim{"x", 1}); !ok || l.Held("x") != 1 {
		t.Fatalf("a's retry: ok=%v held=%d", ok, l.Held("x"))
	}
	if err := l.Release(ctx, "a", []string{"x", "y", "never"}); err != nil {
		t.Fatal(err)
	}
	if ok, _ := acquire("b", Claim{"y", 2}, Claim{"x", 1}); !ok {
		t.Fatal("b refused after a released")
	}
}
