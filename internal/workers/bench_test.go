package workers

import (
	"context"
	"slices"
	"testing"
	"time"
)

// BenchmarkCPUPoolRoundTrip measures one no-op job through the CPU pool
// (encode, pipe, worker, pipe, decode), one caller at a time, and reports
// the latency percentiles.
func BenchmarkCPUPoolRoundTrip(b *testing.B) {
	p := newTestPool(b, testConfig(b, 2))
	ctx := context.Background()
	job := Job{Action: "noop"}
	for range 100 { // warm both sides
		p.Run(ctx, job)
	}
	lat := make([]time.Duration, 0, 1<<16)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		if _, err := p.Run(ctx, job); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}

// BenchmarkCPUPoolThroughput measures no-op jobs per second through a pool
// of 2 workers with enough callers to keep both busy.
func BenchmarkCPUPoolThroughput(b *testing.B) {
	p := newTestPool(b, testConfig(b, 2))
	ctx := context.Background()
	job := Job{Action: "noop"}
	for range 100 {
		p.Run(ctx, job)
	}
	b.ReportAllocs()
	b.SetParallelism(2)
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := p.Run(ctx, job); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
}
