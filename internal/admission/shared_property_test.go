package admission

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"testing"

	"pgregory.net/rapid"
)

// TestSharedKeysProperties drives a queue whose keys are partly shared
// through a ledger that another daemon ("elsewhere") also takes slots from,
// the way the manager does (start: admit, claim, refuse), and checks that no
// limit is exceeded here or in the ledger, the counts agree, and every
// request starts once the other daemon lets go.
func TestSharedKeysProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		nkeys := rapid.IntRange(1, 4).Draw(t, "nkeys")
		limits := map[string]int{}
		shared := map[string]bool{}
		var keys []string
		for i := range nkeys {
			k := "k" + strconv.Itoa(i)
			keys = append(keys, k)
			limits[k] = rapid.IntRange(1, 3).Draw(t, "limit"+k)
			shared[k] = rapid.Bool().Draw(t, "shared"+k)
		}
		q := NewQueue(Config{GlobalLimit: rapid.IntRange(1, 5).Draw(t, "global"), Limits: limits,
			StarvationBound: rapid.IntRange(1, 3).Draw(t, "bound"), Shared: func(k string) bool { return shared[k] }})
		ledger := NewLocalLedger()
		ctx := context.Background()
		started := map[string][]string{} // id → its keys
		waiting := map[string][]string{}
		elsewhere := map[string]int{} // key → slots the other daemon holds (one holder per slot)
		n := 0

		run := func(t *rapid.T, admitted []string) {
			for len(admitted) > 0 {
				var again []string
				for _, id := range admitted {
					if claims := q.Claims(id); claims != nil {
						ok, full, err := ledger.Acquire(ctx, id, claims)
						if err != nil {
							t.Fatal(err)
						}
						if !ok {
							if err := q.Refused(id, claims[full].Key); err != nil {
								t.Fatal(err)
							}
							again = append(again, q.Admit()...)
							continue
						}
					}
					started[id] = waiting[id]
					delete(waiting, id)
				}
				admitted = again
			}
			st := q.Stats()
			if st.InUse != len(started) || st.Waiting != len(waiting) {
				t.Fatalf("stats in use %d waiting %d; started %d waiting %d", st.InUse, st.Waiting, len(started), len(waiting))
			}
			for _, k := range keys {
				here := 0
				for _, ks := range started {
					if slices.Contains(ks, k) {
						here++
					}
				}
				if got := q.held.held(k); got != here || here > limits[k] {
					t.Fatalf("key %s: queue counts %d held, %d started hold it, limit %d", k, got, here, limits[k])
				}
				if shared[k] && ledger.Held(k) != here+elsewhere[k] {
					t.Fatalf("shared key %s: ledger holds %d, here %d + elsewhere %d", k, ledger.Held(k), here, elsewhere[k])
				}
				if ledger.Held(k) > limits[k] {
					t.Fatalf("shared key %s: %d held, limit %d", k, ledger.Held(k), limits[k])
				}
			}
		}
		otherFrees := func(k string) {
			for i := range elsewhere[k] {
				if err := ledger.Release(ctx, fmt.Sprint("elsewhere-", k, i), []string{k}); err != nil {
					t.Fatal(err)
				}
			}
			elsewhere[k] = 0
			q.Changed(k)
		}
		t.Repeat(map[string]func(*rapid.T){
			"push": func(t *rapid.T) {
				n++
				id := "r" + strconv.Itoa(n)
				ks := rapid.SliceOfNDistinct(rapid.SampledFrom(keys), 0, 3, func(k string) string { return k }).Draw(t, "keys")
				var tags []Tag
				for _, k := range ks {
					tags = append(tags, Tag{Key: k, Limit: 1})
				}
				if _, err := q.Push(Request{ID: id, Owner: rapid.SampledFrom([]string{"a", "b"}).Draw(t, "owner"), Tags: tags}); err != nil {
					t.Fatal(err)
				}
				waiting[id] = ks
				run(t, q.Admit())
			},
			"release": func(t *rapid.T) {
				if len(started) == 0 {
					t.Skip("nothing started")
				}
				id := rapid.SampledFrom(slices.Sorted(maps.Keys(started))).Draw(t, "id")
				if err := q.Release(id); err != nil {
					t.Fatal(err)
				}
				var mine []string
				for _, k := range started[id] {
					if shared[k] {
						mine = append(mine, k)
					}
				}
				delete(started, id)
				admitted := q.Admit()
				// The ledger hears of it after the queue, as in the manager.
				if err := ledger.Release(ctx, id, mine); err != nil {
					t.Fatal(err)
				}
				for _, k := range mine {
					q.Changed(k)
				}
				run(t, append(admitted, q.Admit()...))
			},
			"remove": func(t *rapid.T) {
				if len(waiting) == 0 {
					t.Skip("nothing waiting")
				}
				id := rapid.SampledFrom(slices.Sorted(maps.Keys(waiting))).Draw(t, "id")
				if !q.Remove(id) {
					t.Fatalf("Remove(%q) = false for a waiting request", id)
				}
				delete(waiting, id)
				run(t, q.Admit())
			},
			"elsewhere takes": func(t *rapid.T) {
				k := rapid.SampledFrom(keys).Draw(t, "key")
				if !shared[k] {
					t.Skip("not shared")
				}
				holder := fmt.Sprint("elsewhere-", k, elsewhere[k])
				if ok, _, _ := ledger.Acquire(ctx, holder, []Claim{{Key: k, Limit: limits[k]}}); ok {
					elsewhere[k]++
				}
				run(t, q.Admit())
			},
			"elsewhere frees": func(t *rapid.T) {
				otherFrees(rapid.SampledFrom(keys).Draw(t, "key"))
				run(t, q.Admit())
			},
		})
		// Once the other daemon lets go, every request starts.
		for _, k := range keys {
			otherFrees(k)
		}
		run(t, q.Admit())
		for round := 0; len(waiting) > 0; round++ {
			if round > n {
				t.Fatalf("requests %v never started", slices.Sorted(maps.Keys(waiting)))
			}
			var admitted []string
			for _, id := range slices.Sorted(maps.Keys(started)) {
				if err := q.Release(id); err != nil {
					t.Fatal(err)
				}
				if err := ledger.Release(ctx, id, started[id]); err != nil {
					t.Fatal(err)
				}
				for _, k := range started[id] {
					q.Changed(k)
				}
				delete(started, id)
			}
			admitted = append(admitted, q.Admit()...)
			run(t, admitted)
		}
	})
}
