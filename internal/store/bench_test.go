package store

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
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
				if _, _, err := db.CreateTask(ctx, task, []Event{{TaskID: id, Type: "task.queued"}}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
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

// BenchmarkTaskLifecycle measures one task's whole write path: create,
// two status updates and two step events, from 64 goroutines.
func BenchmarkTaskLifecycle(b *testing.B) {
	for _, mode := range []SyncMode{SyncAlways, SyncOff} {
		b.Run("sync="+mode.String(), func(b *testing.B) {
			s := openSQLite(b, b.TempDir(), Options{Sync: mode})
			ctx := context.Background()
			data := make([]byte, 256)
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			for range 64 {
				wg.Go(func() {
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						id := fmt.Sprintf("%016x", i)
						task := &Task{ID: id, Task: "bench/noop", Plan: "bench", Status: 1, Data: data}
						steps := []struct {
							status int32
							typ    string
						}{{3, "task.running"}, {0, "step.started"}, {0, "step.succeeded"}, {4, "task.finished"}}
						if _, _, err := s.CreateTask(ctx, task, []Event{{TaskID: id, Type: "task.queued"}}); err != nil {
							b.Error(err)
							return
						}
						for _, st := range steps {
							var err error
							if st.status == 0 {
								err = s.AppendEvents(ctx, []Event{{TaskID: id, Type: st.typ}})
							} else {
								task.Status = st.status
								err = s.UpdateTask(ctx, task, []Event{{TaskID: id, Type: st.typ}})
							}
							if err != nil {
								b.Error(err)
								return
							}
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
		})
	}
}
