package schedule

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the scheduler's Prometheus figures.
type Metrics struct {
	fires    *prometheus.CounterVec
	skips    *prometheus.CounterVec
	lateness prometheus.Histogram
}

// NewMetrics makes the metrics and registers them with reg (nil: none).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		fires: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aura_schedule_fires_total",
			Help: "Tasks submitted by schedules and triggers, by plan and by what fired them (tick, catch_up, trigger, backfill, after).",
		}, []string{"plan", "kind"}),
		skips: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aura_schedule_skips_total",
			Help: "Schedule ticks recorded skipped, by reason (missed, coalesced, overlap, buffer_full, submit_failed, inputs).",
		}, []string{"reason"}),
		lateness: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "aura_schedule_lateness_seconds",
			Help:    "How long after its tick (plus jitter) a scheduled fire was submitted.",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 30, 60, 600, 3600},
		}),
	}
	if reg != nil {
		reg.MustRegister(m.fires, m.skips, m.lateness)
	}
	return m
}
