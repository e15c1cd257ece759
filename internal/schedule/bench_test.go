package schedule

import (
	"fmt"
	"testing"
	"time"

	"github.com/aura-dev/aura/internal/plan"
)

// benchSchedules makes n schedules: half cron (every five minutes, in
// three zones), half intervals of one to ten minutes.
func benchSchedules(b *testing.B, n int) []*plan.Schedule {
	zones := []*time.Location{time.UTC, mustZone(&testing.T{}, "Europe/Berlin"), mustZone(&testing.T{}, "America/New_York")}
	out := make([]*plan.Schedule, n)
	for i := range out {
		id := fmt.Sprintf("p/s%05d", i)
		out[i] = testSchedule(id, func(s *plan.Schedule) {
			if i%2 == 0 {
				s.Cron, s.Location = fmt.Sprintf("%d-59/5 * * * *", i%5), zones[i%3]
			} else {
				s.Every = time.Duration(1+i%10) * time.Minute
			}
			s.Jitter = 10 * time.Second
		})
	}
	return out
}

// BenchmarkScheduleLoad10k: loading 10,000 schedules (each one's next
// tick computed), as at start and at every plan reload.
func BenchmarkScheduleLoad10k(b *testing.B) {
	scheds := benchSchedules(b, 10000)
	now := utc("2026-03-29T00:00:00Z")
	b.ResetTimer()
	for b.Loop() {
		NewBook(nil).Load(scheds, nil, now)
	}
}

// BenchmarkScheduleTick10k: with 10,000 schedules loaded, the cost of
// deciding each due tick (Due, and each fired entry's next tick), per
// fire; the clock jumps from one wake to the next.
func BenchmarkScheduleTick10k(b *testing.B) {
	bk := NewBook(nil)
	now := utc("2026-03-29T00:00:00Z")
	bk.Load(benchSchedules(b, 10000), nil, now)
	fires := 0
	b.ResetTimer()
	for b.Loop() {
		wake, _ := bk.NextWake()
		now = wake
		for _, a := range bk.Due(now) {
			if a.Fire {
				fires++
				bk.Fired(a.Schedule.ID, a.Tick, "t", false)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(max(fires, 1)), "ns/fire")
	b.ReportMetric(float64(fires)/float64(b.N), "fires/op")
}
