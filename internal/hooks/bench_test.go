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
// events never go to a log, so a follower that fell out of the live feed
// would have nothing to catch up from.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("followers=%d", n), func(b *testing.B) {
			hub := NewHub(emptyLog{})
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
