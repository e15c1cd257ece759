package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

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
					wg.Add(1)
					go func() {
						defer wg.Done()
						stream, err := d.client.Exec.SubmitStream(ctx)
						if err != nil {
							b.Error(err)
							return
						}
						done := make(chan struct{})
						go func() {
							defer close(done)
							for range per {
								if r, err := stream.Recv(); err != nil || r.Error != nil {
									b.Errorf("recv: %v %v", err, r.GetError())
									return
								}
							}
						}()
						req := &aurav1.SubmitRequest{Task: "e2e/quick"}
						for range per {
							if err := stream.Send(req); err != nil {
								b.Error(err)
								return
							}
						}
						<-done
						stream.CloseSend()
					}()
				}
				wg.Wait()
				el := time.Since(start)
				b.ReportMetric(float64(per*streams)/el.Seconds(), "acks/s")
			})
		}
	}
}
