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
	limits := make(map[string]int, resources)
	for i := range resources {
		limits["r"+strconv.Itoa(i)] = 1 + i%4
	}
	benchCyclesOn(b, Config{GlobalLimit: global, Limits: limits}, waiters, tagsFor)
}

// benchCyclesOn is benchCycles on a queue configured by cfg; it keeps
// about waiters requests waiting beyond cfg.GlobalLimit admitted.
func benchCyclesOn(b *testing.B, cfg Config, waiters int, tagsFor func(r *rand.Rand) []Tag) {
	rng := rand.New(rand.NewPCG(1, 2))
	global := cfg.GlobalLimit
	q := NewQueue(cfg)
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

// poolConfig declares pools pools of perPool instances each (limit 1), as
// a device farm's resources file would, and 1,000 plain keys.
func poolConfig(pools, perPool, global int) Config {
	cfg := Config{GlobalLimit: global, Limits: map[string]int{}}
	for p := range pools {
		pd := Pool{Name: "pool" + strconv.Itoa(p)}
		for i := range perPool {
			inst := "i" + strconv.Itoa(i)
			pd.Instances = append(pd.Instances, inst)
			cfg.Limits[InstanceKey(pd.Name, inst)] = 1
		}
		cfg.Pools = append(cfg.Pools, pd)
	}
	for i := range 1000 {
		cfg.Limits["r"+strconv.Itoa(i)] = 1 + i%4
	}
	return cfg
}

// BenchmarkQueueCyclePools1000Instances10000Waiters: one pool of 1,000
// instances, busier than it has instances (global limit 2,000): 10,000
// waiters ask for any instance, a third of them with a plain key as well,
// so each cycle frees an instance and picks one for a waiter.
func BenchmarkQueueCyclePools1000Instances10000Waiters(b *testing.B) {
	benchCyclesOn(b, poolConfig(1, 1000, 2000), 10000, func(r *rand.Rand) []Tag {
		tags := []Tag{{Key: "pool0" + AnySuffix, Limit: 1}}
		if r.IntN(3) == 0 {
			tags = append(tags, Tag{Key: "r" + strconv.Itoa(r.IntN(1000)), Limit: 1})
		}
		return tags
	})
}

// BenchmarkQueueCycle10Pools100Instances10000Waiters: ten pools of 100
// instances; waiters ask for any instance of one pool, one in ten names an
// instance instead.
func BenchmarkQueueCycle10Pools100Instances10000Waiters(b *testing.B) {
	benchCyclesOn(b, poolConfig(10, 100, 2000), 10000, func(r *rand.Rand) []Tag {
		pool := "pool" + strconv.Itoa(r.IntN(10))
		if r.IntN(10) == 0 {
			return []Tag{{Key: InstanceKey(pool, "i"+strconv.Itoa(r.IntN(100))), Limit: 1}}
		}
		return []Tag{{Key: pool + AnySuffix, Limit: 1}}
	})
}
