package admission

import (
	"math/rand/v2"
	"strconv"
	"testing"
)

// benchCycles keeps about `waiters` requests waiting on `resources` keys
// and measures one cycle: release an admitted request, push a new one,
// Admit. tagsFor picks each request's keys.
func benchCycles(b *testing.B, resources, waiters, global int, tagsFor func(r *rand.Rand) []Tag) {
	rng := rand.New(rand.NewPCG(1, 2))
	limits := make(map[string]int, resources)
	for i := range resources {
		limits["r"+strconv.Itoa(i)] = 1 + i%4
	}
	q := NewQueue(Config{GlobalLimit: global, Limits: limits})
	var running []string
	n := 0
	pushOne := func() {
		n++
		if _, err := q.Push(Request{ID: strconv.Itoa(n), Priority: int32(rng.IntN(3)), Tags: tagsFor(rng)}); err != nil {
			b.Fatal(err)
		}
	}
	for range waiters + global {
		pushOne()
	}
	running = append(running, q.Admit()...)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if len(running) > 0 {
			i := rng.IntN(len(running))
			if err := q.Release(running[i]); err != nil {
				b.Fatal(err)
			}
			running[i] = running[len(running)-1]
			running = running[:len(running)-1]
		}
		pushOne()
		running = append(running, q.Admit()...)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cycles/s")
	b.ReportMetric(float64(q.Stats().Waiting), "waiting")
}

func BenchmarkQueueCycle1000Resources10000Waiters(b *testing.B) {
	benchCycles(b, 1000, 10000, 256, func(r *rand.Rand) []Tag {
		tags := make([]Tag, 1+r.IntN(3))
		for i := range tags {
			tags[i] = Tag{Key: "r" + strconv.Itoa(r.IntN(1000)), Limit: 1}
		}
		return tags
	})
}

func BenchmarkQueueCycleOneHotKey10000Waiters(b *testing.B) {
	// Most waiters queue on one busy key; the rest are free. Admit must not
	// rescan the hot key's waiters on every cycle.
	benchCycles(b, 1000, 10000, 256, func(r *rand.Rand) []Tag {
		if r.IntN(10) < 9 {
			return []Tag{{Key: "r0", Limit: 1}}
		}
		return []Tag{{Key: "r" + strconv.Itoa(1+r.IntN(999)), Limit: 1}}
	})
}
