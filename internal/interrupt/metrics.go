package interrupt

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the interrupt poller's Prometheus figures, per rule
// ("<plan>/<name>").
type Metrics struct {
	checks    *prometheus.CounterVec
	checkErrs *prometheus.CounterVec
	fires     *prometheus.CounterVec
}

// NewMetrics makes the metrics and registers them with reg (nil: none).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aura_interrupt_checks_total",
			Help: "Interrupt checks run, failed ones included, by rule.",
		}, []string{"rule"}),
		checkErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aura_interrupt_check_errors_total",
			Help: "Interrupt checks that failed (logged with their error; a failed check does not fire), by rule.",
		}, []string{"rule"}),
		fires: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aura_interrupt_fires_total",
			Help: "Times an interrupt rule fired on an instance (its holders interrupted), by rule.",
		}, []string{"rule"}),
	}
	if reg != nil {
		reg.MustRegister(m.checks, m.checkErrs, m.fires)
	}
	return m
}
