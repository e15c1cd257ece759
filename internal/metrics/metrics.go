// Package metrics defines aurad's Prometheus metrics. Counters and
// histograms are fed by a lifecycle hook and by the store's commit
// observer; gauges (admission, pools, subscribers) are read from their
// owners at scrape time, so nothing is sampled on a timer. Labels are plan
// and task names and final statuses only: never task ids.
package metrics

import (
	"context"
	"strings"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/aura-dev/aura/internal/hooks"
)

// Metrics holds aurad's collectors on a registry of its own.
type Metrics struct {
	Registry *prometheus.Registry
	GRPC     *grpcprom.ServerMetrics

	submitted     *prometheus.CounterVec
	finished      *prometheus.CounterVec
	admissionWait *prometheus.HistogramVec
	planning      *prometheus.HistogramVec
	running       *prometheus.HistogramVec
	commitLatency prometheus.Histogram
	commitSize    prometheus.Histogram
}

// latencyBuckets span 100µs to ~100s.
var latencyBuckets = prometheus.ExponentialBuckets(0.0001, 4, 11)

// New registers every collector on a fresh registry.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		GRPC: grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
			grpcprom.WithHistogramBuckets(latencyBuckets))),
		submitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aura_tasks_submitted_total", Help: "Tasks accepted by Submit (deduplicated ones not counted).",
		}, []string{"plan", "task"}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aura_tasks_finished_total", Help: "Tasks that reached a terminal status.",
		}, []string{"plan", "task", "status"}),
		admissionWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "aura_task_admission_wait_seconds", Help: "Time from submission to admission.", Buckets: latencyBuckets,
		}, []string{"plan"}),
		planning: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "aura_task_planning_seconds", Help: "Time from admission to the first step (state planning and before_task_run hooks).", Buckets: latencyBuckets,
		}, []string{"plan"}),
		running: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "aura_task_run_seconds", Help: "Time from the first step to the terminal status.", Buckets: latencyBuckets,
		}, []string{"plan", "status"}),
		commitLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "aura_store_commit_seconds", Help: "Store group-commit latency, including sync.", Buckets: latencyBuckets,
		}),
		commitSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "aura_store_commit_ops", Help: "Operations per store group commit.", Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}),
	}
	reg.MustRegister(m.GRPC, m.submitted, m.finished, m.admissionWait, m.planning, m.running, m.commitLatency, m.commitSize,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Submitted counts one accepted submission of task ("plan/name").
func (m *Metrics) Submitted(task string) {
	plan, _, _ := strings.Cut(task, "/")
	m.submitted.WithLabelValues(plan, task).Inc()
}

// ObserveCommit records one store group commit.
func (m *Metrics) ObserveCommit(ops int, d time.Duration) {
	m.commitLatency.Observe(d.Seconds())
	m.commitSize.Observe(float64(ops))
}

// Name implements hooks.Hook.
func (m *Metrics) Name() string { return "metrics" }

// AfterTaskRun implements hooks.AfterRunHook: it records the outcome and
// the time spent in each phase.
func (m *Metrics) AfterTaskRun(_ context.Context, req *hooks.AfterRunRequest) error {
	plan, t := req.Plan, req.Task
	status := strings.ToLower(strings.TrimPrefix(req.Status.String(), "TASK_STATUS_"))
	m.finished.WithLabelValues(plan, req.Name, status).Inc()
	created, admitted, started, done := t.GetCreatedAt(), t.GetAdmittedAt(), t.GetStartedAt(), t.GetFinishedAt()
	if created != nil && admitted != nil {
		m.admissionWait.WithLabelValues(plan).Observe(admitted.AsTime().Sub(created.AsTime()).Seconds())
	}
	if admitted != nil && started != nil {
		m.planning.WithLabelValues(plan).Observe(started.AsTime().Sub(admitted.AsTime()).Seconds())
	}
	if started != nil && done != nil {
		m.running.WithLabelValues(plan, status).Observe(done.AsTime().Sub(started.AsTime()).Seconds())
	}
	return nil
}

// Gauges reads point-in-time values from their owners at scrape time.
type Gauges struct {
	Admission   func() (global Resource, resources []Resource)
	Pools       func() []Pool
	Subscribers func() (followers int, lag uint64)
	QueueDepth  func() int
	// Instances lists the declared pool instances, and only those, so the
	// series stay as many as the resources file says.
	Instances func() []Instance
}

// Instance is one declared pool instance.
type Instance struct {
	Pool, Instance       string
	Limit, Held, Waiting int // Waiting: tasks that named this instance
}

// Resource is one admission resource (or the global limit).
type Resource struct {
	Key                   string
	Limit, InUse, Waiting int
}

// Pool is one worker pool.
type Pool struct {
	Name                     string
	Size, Live, Busy, Queued int
	Restarts, Crashes, Jobs  uint64
}

var (
	descGlobal   = prometheus.NewDesc("aura_admission_global", "Global concurrency: limit, in_use, waiting.", []string{"what"}, nil)
	descResource = prometheus.NewDesc("aura_admission_resource", "Per-resource admission: limit, in_use, waiting.", []string{"resource", "what"}, nil)
	descPool     = prometheus.NewDesc("aura_pool_workers", "Worker pool: size, live, busy, queued.", []string{"pool", "what"}, nil)
	descPoolCnt  = prometheus.NewDesc("aura_pool_events_total", "Worker pool: restarts, crashes, jobs.", []string{"pool", "what"}, nil)
	descSubs     = prometheus.NewDesc("aura_hook_subscribers", "Live hook and event stream followers.", nil, nil)
	descLag      = prometheus.NewDesc("aura_hook_subscriber_lag_events", "Events the furthest-behind follower has yet to receive.", nil, nil)
	descQueue    = prometheus.NewDesc("aura_queue_depth", "Tasks waiting for admission.", nil, nil)
	descInstance = prometheus.NewDesc("aura_resource_instance", "Per declared pool instance: limit, held, waiting (tasks that named it; those that asked for any instance are aura_admission_resource{resource=\"<pool>:*\"}).", []string{"pool", "instance", "what"}, nil)
)

// Describe implements prometheus.Collector.
func (g *Gauges) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descGlobal, descResource, descPool, descPoolCnt, descSubs, descLag, descQueue, descInstance} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (g *Gauges) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if g.Admission != nil {
		global, res := g.Admission()
		gauge(descGlobal, float64(global.Limit), "limit")
		gauge(descGlobal, float64(global.InUse), "in_use")
		gauge(descGlobal, float64(global.Waiting), "waiting")
		for _, r := range res {
			gauge(descResource, float64(r.Limit), r.Key, "limit")
			gauge(descResource, float64(r.InUse), r.Key, "in_use")
			gauge(descResource, float64(r.Waiting), r.Key, "waiting")
		}
	}
	if g.Instances != nil {
		for _, in := range g.Instances() {
			gauge(descInstance, float64(in.Limit), in.Pool, in.Instance, "limit")
			gauge(descInstance, float64(in.Held), in.Pool, in.Instance, "held")
			gauge(descInstance, float64(in.Waiting), in.Pool, in.Instance, "waiting")
		}
	}
	if g.Pools != nil {
		for _, p := range g.Pools() {
			gauge(descPool, float64(p.Size), p.Name, "size")
			gauge(descPool, float64(p.Live), p.Name, "live")
			gauge(descPool, float64(p.Busy), p.Name, "busy")
			gauge(descPool, float64(p.Queued), p.Name, "queued")
			ch <- prometheus.MustNewConstMetric(descPoolCnt, prometheus.CounterValue, float64(p.Restarts), p.Name, "restarts")
			ch <- prometheus.MustNewConstMetric(descPoolCnt, prometheus.CounterValue, float64(p.Crashes), p.Name, "crashes")
			ch <- prometheus.MustNewConstMetric(descPoolCnt, prometheus.CounterValue, float64(p.Jobs), p.Name, "jobs")
		}
	}
	if g.Subscribers != nil {
		n, lag := g.Subscribers()
		gauge(descSubs, float64(n))
		gauge(descLag, float64(lag))
	}
	if g.QueueDepth != nil {
		gauge(descQueue, float64(g.QueueDepth()))
	}
}
