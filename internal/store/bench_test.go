package store

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// benchCreate runs b.N CreateTask calls from the given number of goroutines
// and reports acknowledged creates per second. Task IDs are time-ordered
// (like UUIDv7 or ULID) unless randomIDs is set (like UUIDv4).
func benchCreate(b *testing.B, db DB, goroutines int, randomIDs bool) {
	ctx := context.Background()
	data := make([]byte, 256) // about the size of a marshalled task snapshot
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	cpu := startCPU()
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				id := fmt.Sprintf("%016x", i)
				if randomIDs {
					id = rand.Text()
				}
				task := &Task{ID: id, Task: "bench/noop", Plan: "bench", Status: 1,
					Labels: map[string]string{"team": "bench"}, Data: data}
				if _, _, err := createTask(ctx, db, task, []Event{{TaskID: id, Type: "task.queued"}}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
	b.ReportMetric(cpu.perOp(b.N), "cpu-µs/op")
	if s, ok := db.(*Store); ok {
		st := s.WriterStats()
		b.ReportMetric(float64(st.Ops)/float64(max(st.Batches, 1)), "ops/commit")
	}
}

func BenchmarkCreateTask(b *testing.B) {
	for _, mode := range []SyncMode{SyncAlways, SyncBatch, SyncOff} {
		for _, g := range []int{8, 64} {
			b.Run(fmt.Sprintf("sync=%s/goroutines=%d", mode, g), func(b *testing.B) {
				benchCreate(b, openSQLite(b, b.TempDir(), Options{Sync: mode}), g, false)
			})
		}
	}
	// The most creations the store can take: enough writers to fill every
	// group commit (SubmitStream pipelines its submissions like this).
	b.Run("sync=batch/goroutines=1024", func(b *testing.B) {
		benchCreate(b, openSQLite(b, b.TempDir(), Options{Sync: SyncBatch}), 1024, false)
	})
	for _, g := range []int{8, 64} {
		b.Run(fmt.Sprintf("sync=always/goroutines=%d/random-ids", g), func(b *testing.B) {
			benchCreate(b, openSQLite(b, b.TempDir(), Options{Sync: SyncAlways}), g, true)
		})
	}
	for _, g := range []int{8, 64} {
		b.Run(fmt.Sprintf("memory/goroutines=%d", g), func(b *testing.B) {
			benchCreate(b, NewMemory(Options{}), g, false)
		})
	}
}

// BenchmarkTaskLifecycle measures the store alone carrying the writes of
// a no-op task exactly as aurad makes them (the events and their sizes are
// those of e2e/quick): the creation with task.queued, queued and not waited
// for; RUNNING with before_task_run and task.running, waited for; two step
// events, queued; the terminal record with task.finished and two hook
// events, queued. The figure, tasks/s, is the most the daemon's store can
// record on this machine with nothing else running: a ceiling for the end
// to end figure. Sub-benchmarks vary the sync mode and how many tasks run
// at once (the daemon's --max-concurrent).
func BenchmarkTaskLifecycle(b *testing.B) {
	for _, mode := range []SyncMode{SyncAlways, SyncBatch} {
		for _, g := range []int{64, 1024} {
			b.Run(fmt.Sprintf("sync=%s/tasks=%d", mode, g), func(b *testing.B) {
				benchLifecycle(b, openSQLite(b, b.TempDir(), Options{Sync: mode}), g)
			})
		}
	}
}

func benchLifecycle(b *testing.B, s DB, goroutines int) {
	ctx := context.Background()
	data := func(n int) []byte { return make([]byte, n) }
	ev := func(id, typ string, hook bool, size int) Event {
		return Event{TaskID: id, Type: typ, Hook: hook, Data: data(size)}
	}
	var (
		next     atomic.Int64
		mu       sync.Mutex
		finishes []*Pending
	)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := startCPU()
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			var mine []*Pending
			defer func() {
				mu.Lock()
				finishes = append(finishes, mine...)
				mu.Unlock()
			}()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				id := fmt.Sprintf("019ac3d4-0000-7000-8000-%012x", i)
				task := &Task{ID: id, Task: "e2e/quick", Plan: "e2e", Status: 1, Data: data(120)}
				createQueued(ctx, s, task, []Event{ev(id, "task.queued", false, 144)})
				running := &Task{ID: id, Task: "e2e/quick", Plan: "e2e", Status: 3, Data: data(150)}
				if err := updateTask(ctx, s, running, []Event{ev(id, "before_task_run", true, 149), ev(id, "task.running", false, 186)}); err != nil {
					b.Error(err)
					return
				}
				appendDetached(s, []Event{ev(id, "step.started", false, 77)})
				appendDetached(s, []Event{ev(id, "step.succeeded", false, 79)})
				done := &Task{ID: id, Task: "e2e/quick", Plan: "e2e", Status: 4, FinishedAt: time.Now(), Data: data(174)}
				mine = append(mine, updateQueued(ctx, s, done, []Event{ev(id, "task.finished", false, 269),
					ev(id, "after_task_success", true, 211), ev(id, "after_task_run", true, 207)}))
			}
		})
	}
	wg.Wait()
	for _, p := range finishes {
		if err := p.Wait(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
	b.ReportMetric(cpu.perOp(b.N), "cpu-µs/op")
}

// cpuClock reads the process's CPU time (user and system, every thread):
// on a shared machine a rate mostly measures the share of the cores the
// run got, while the CPU time an operation costs stays put.
type cpuClock struct{ start time.Duration }

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU() cpuClock { return cpuClock{start: processCPU()} }

// perOp is the CPU time since start per operation, in microseconds.
func (c cpuClock) perOp(n int) float64 {
	return float64(processCPU()-c.start) / float64(time.Microsecond) / float64(max(n, 1))
}
