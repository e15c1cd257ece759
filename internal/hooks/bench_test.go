package hooks

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/aura-dev/aura/internal/store"
)

// BenchmarkFanout publishes b.N events, in commits of 64, to followers
// that each take every event (the send is a counter, so this is the hub's
// own cost, without gRPC); the figure is events delivered per second
// across the followers. The publisher waits while the slowest follower is
// more than 512 events behind, as subscribers that keep up would be: the
// events never go to a log, so a follower that fell behind the ring
// would have nothing to catch up from.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("followers=%d", n), func(b *testing.B) {
			hub := NewHub()
			if err := hub.Start(context.Background(), emptyLog{}); err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			errDone := errors.New("done")
			var wg sync.WaitGroup
			for range n {
				wg.Go(func() {
					got := 0
					err := hub.Follow(ctx, nil, Filter{HooksOnly: true}, func(store.Event) (bool, error) {
						if got++; got == b.N {
							return false, errDone
						}
						return false, nil
					})
					if !errors.Is(err, errDone) {
						b.Errorf("follower: %v after %d events", err, got)
					}
				})
			}
			for hub.Followers() < n {
				runtime.Gosched()
			}
			b.ResetTimer()
			var seq uint64
			for sent := 0; sent < b.N; {
				batch := make([]store.Event, min(64, b.N-sent))
				for i := range batch {
					seq++
					batch[i] = store.Event{Seq: seq, TaskID: "t", Type: AfterTaskRun, Hook: true, Data: []byte("x")}
				}
				for _, lag := hub.Lag(); lag > 512; _, lag = hub.Lag() {
					runtime.Gosched()
				}
				hub.Publish(batch)
				sent += len(batch)
			}
			wg.Wait()
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// emptyLog is a log with nothing in it.
type emptyLog struct{}

func (emptyLog) Events(context.Context, uint64, store.EventFilter, int) ([]store.Event, error) {
	return nil, nil
}
func (emptyLog) EventBounds(context.Context) (uint64, uint64, error) { return 0, 0, nil }

// BenchmarkTaskFollowers publishes b.N events of busy tasks, in commits of
// 64, while 1,000 followers each wait for the events of one task of their
// own (as clients waiting for their tasks do); the figure is events
// published per second. At the end each watched task gets its event, so
// that every follower returns.
func BenchmarkTaskFollowers(b *testing.B) {
	const n = 1000
	hub := NewHub()
	if err := hub.Start(context.Background(), emptyLog{}); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			err := hub.Follow(ctx, nil, Filter{TaskID: fmt.Sprint("watched", i)}, func(store.Event) (bool, error) { return true, nil })
			if err != nil {
				b.Errorf("follower: %v", err)
			}
		})
	}
	for hub.Followers() < n {
		runtime.Gosched()
	}
	b.ResetTimer()
	var seq uint64
	publish := func(k int, task func(i int) string) {
		batch := make([]store.Event, k)
		for i := range batch {
			seq++
			batch[i] = store.Event{Seq: seq, TaskID: task(i), Type: "step.started", Data: []byte("x")}
		}
		hub.Publish(batch)
	}
	busy := func(i int) string { return "busy" }
	for sent := 0; sent < b.N; sent += 64 {
		publish(min(64, b.N-sent), busy)
	}
	b.StopTimer()
	for i := 0; i < n; i += 64 {
		publish(min(64, n-i), func(j int) string { return fmt.Sprint("watched", i+j) })
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
