package e2e

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aura-dev/aura/client"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// BenchmarkSubmitStream measures acknowledged submissions per second over
// SubmitStream against a real aurad, per sync mode and stream count. The
// tasks also run (no-ops), as they would in production.
func BenchmarkSubmitStream(b *testing.B) {
	for _, mode := range []string{"always", "batch", "off"} {
		for _, streams := range []int{1, 8} {
			b.Run(fmt.Sprintf("sync=%s/streams=%d", mode, streams), func(b *testing.B) {
				d := startDaemonB(b, "--sync", mode, "--max-concurrent", "64")
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				defer cancel()
				per := b.N/streams + 1
				var wg sync.WaitGroup
				b.ResetTimer()
				start := time.Now()
				for range streams {
					wg.Go(func() {
						if err := submitStream(ctx, d, &aurav1.SubmitRequest{Task: "e2e/quick"}, per); err != nil {
							b.Error(err)
						}
					})
				}
				wg.Wait()
				el := time.Since(start)
				b.ReportMetric(float64(per*streams)/el.Seconds(), "acks/s")
			})
		}
	}
}

// BenchmarkHookFanout runs b.N no-op tasks while 100 Subscribe streams
// follow every hook event; each subscriber must receive exactly the hook
// events of the log, in order (slow ones catch up from the store). The
// figure is hook events delivered per second across all subscribers.
func BenchmarkHookFanout(b *testing.B) {
	const subscribers = 100
	d := startDaemonB(b, "--sync", "batch", "--max-concurrent", "64",
		"--max-subscribers-per-principal", "200", "--max-streams-per-principal", "300")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	zero := uint64(0)
	type result struct {
		seqs []uint64
		err  error
	}
	results := make(chan result, subscribers)
	want := 3 * b.N // before_task_run, after_task_success, after_task_run
	var ready sync.WaitGroup
	for range subscribers {
		ready.Add(1)
		go func() {
			stream, err := d.client.Hooks.Subscribe(ctx, &aurav1.SubscribeRequest{AfterSequence: &zero})
			ready.Done()
			if err != nil {
				results <- result{err: err}
				return
			}
			seqs := make([]uint64, 0, want)
			for len(seqs) < want {
				ev, err := stream.Recv()
				if err != nil {
					results <- result{seqs, err}
					return
				}
				seqs = append(seqs, ev.Sequence)
			}
			results <- result{seqs: seqs}
		}()
	}
	ready.Wait()
	b.ResetTimer()
	start := time.Now()
	if err := submitStream(ctx, d, &aurav1.SubmitRequest{Task: "e2e/quick"}, b.N); err != nil {
		b.Fatal(err)
	}
	var ref []uint64
	for range subscribers {
		r := <-results
		if r.err != nil {
			b.Fatalf("subscriber: %v after %d events", r.err, len(r.seqs))
		}
		if ref == nil {
			ref = r.seqs
		} else if !slices.Equal(r.seqs, ref) {
			b.Fatalf("subscribers disagree: %d vs %d events", len(r.seqs), len(ref))
		}
	}
	el := time.Since(start)
	for i := 1; i < len(ref); i++ {
		if ref[i] <= ref[i-1] {
			b.Fatalf("sequence %d after %d", ref[i], ref[i-1])
		}
	}
	b.ReportMetric(float64(subscribers*want)/el.Seconds(), "events/s")
	b.ReportMetric(float64(b.N)/el.Seconds(), "tasks/s")
}

// BenchmarkEndToEnd submits b.N no-op tasks over SubmitStream (8 streams)
// and waits until the last one has finished: tasks/s from first submit to
// last finish, with the daemon's default durability.
func BenchmarkEndToEnd(b *testing.B) {
	for _, mode := range []string{"always", "batch"} {
		b.Run("sync="+mode, func(b *testing.B) { endToEnd(b, "--sync", mode) })
	}
}

func endToEnd(b *testing.B, args ...string) {
	d := startDaemonB(b, append([]string{"--max-concurrent", "64"}, args...)...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	zero := uint64(0)
	finished := make(chan error, 1)
	go func() {
		n := 0
		errDone := fmt.Errorf("done")
		err := d.client.Subscribe(ctx, client.SubscribeOptions{After: &zero, Hooks: []string{"after_task_run"}}, func(*aurav1.HookEvent) error {
			if n++; n == b.N {
				return errDone
			}
			return nil
		})
		if err == errDone {
			err = nil
		}
		finished <- err
	}()
	b.ResetTimer()
	start := time.Now()
	const streams = 8
	var wg sync.WaitGroup
	for i := range streams {
		per := b.N / streams
		if i < b.N%streams {
			per++
		}
		wg.Go(func() {
			if err := submitStream(ctx, d, &aurav1.SubmitRequest{Task: "e2e/quick"}, per); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
	submitted := time.Since(start)
	if err := <-finished; err != nil {
		b.Fatal(err)
	}
	el := time.Since(start)
	b.ReportMetric(float64(b.N)/el.Seconds(), "tasks/s")
	b.ReportMetric(float64(b.N)/submitted.Seconds(), "submits/s")
}

// BenchmarkIdleSubmitToStart submits b.N no-op tasks one at a time to an
// idle daemon and reports the p50 and p99 of created_at -> started_at as
// the daemon records them (durable submission included).
func BenchmarkIdleSubmitToStart(b *testing.B) {
	d := startDaemonB(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		resp, err := d.client.Submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"})
		if err != nil {
			b.Fatal(err)
		}
		task, err := d.client.Wait(ctx, resp.TaskId)
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, task.StartedAt.AsTime().Sub(task.CreatedAt.AsTime()))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
