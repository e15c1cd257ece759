package e2e

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// BenchmarkSubmitStreamWithInputs is BenchmarkSubmitStream (8 streams,
// --sync off, so the daemon's CPU per submission shows rather than the
// disk) with submissions as clients send them: inputs, labels and a
// timeout, each of which aurad validates.
func BenchmarkSubmitStreamWithInputs(b *testing.B) {
	const streams = 8
	in, err := structpb.NewStruct(map[string]any{"n": 3, "word": "report"})
	if err != nil {
		b.Fatal(err)
	}
	req := &aurav1.SubmitRequest{Task: "e2e/echo", Inputs: in, Timeout: durationpb.New(5 * time.Minute),
		Labels: map[string]string{"team": "data", "env": "prod"}}
	d := startDaemonB(b, "--sync", "off", "--max-concurrent", "64")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	per := b.N/streams + 1
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range streams {
		wg.Go(func() {
			if err := submitStream(ctx, d, req, per); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(per*streams)/time.Since(start).Seconds(), "acks/s")
}
