package ui

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"sync"
	"time"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// throughput keeps, per minute of the last hour, the tasks that finished
// and how long they took (submission to end), from the event log as it
// goes by.
type throughput struct {
	now     func() time.Time // immutable
	started time.Time        // immutable

	mu      sync.Mutex // guards minutes
	minutes map[int64]*minute
}

type minute struct {
	finished, failed int
	latencies        []time.Duration
}

func newThroughput(now func() time.Time) *throughput {
	return &throughput{now: now, started: now(), minutes: map[int64]*minute{}}
}

// follow records finished tasks until ctx ends, following again after an
// error (a pruned position only costs the events it missed).
func (t *throughput) follow(ctx context.Context, ev Events, log *slog.Logger) {
	if ev == nil {
		return
	}
	for ctx.Err() == nil {
		err := ev.Follow(ctx, nil, "", func(seq uint64, data []byte) error {
			e, err := decodeEvent(seq, data)
			if err != nil {
				return err
			}
			if e.GetType() == "task.finished" {
				t.record(e.GetTask())
			}
			return nil
		})
		if ctx.Err() != nil {
			return
		}
		if !errors.Is(err, ErrPruned) {
			log.Warn("ui: following the event log for throughput", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (t *throughput) record(task *aurav1.Task) {
	now := t.now()
	m := now.Unix() / 60
	t.mu.Lock()
	defer t.mu.Unlock()
	for k := range t.minutes {
		if k <= m-60 {
			delete(t.minutes, k)
		}
	}
	b := t.minutes[m]
	if b == nil {
		b = &minute{}
		t.minutes[m] = b
	}
	b.finished++
	if task.GetStatus() != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		b.failed++
	}
	if task.GetCreatedAt() != nil && task.GetFinishedAt() != nil {
		b.latencies = append(b.latencies, task.GetFinishedAt().AsTime().Sub(task.GetCreatedAt().AsTime()))
	}
}

// rateSummary is the last hour in figures, and per minute for a bar chart.
type rateSummary struct {
	Finished, Failed int
	PerMinute        float64
	P50, P95         string
	Window           string // "the last hour", or since when when aurad has run less
	Bars             []bar
}

type bar struct {
	Height, X int
	Title     string
}

func (t *throughput) summary() rateSummary {
	t.mu.Lock()
	defer t.mu.Unlock()
	return summarize(t.now(), t.started, t.minutes)
}

// summarize is the figures of the hour up to now from minutes (unix
// minute to what finished in it); started is when counting began.
func summarize(now, started time.Time, minutes map[int64]*minute) rateSummary {
	m := now.Unix() / 60
	var s rateSummary
	var lat []time.Duration
	peak := 1
	for k := m - 59; k <= m; k++ {
		if b := minutes[k]; b != nil {
			peak = max(peak, b.finished)
		}
	}
	for i, k := 0, m-59; k <= m; i, k = i+1, k+1 {
		b := minutes[k]
		if b == nil {
			continue
		}
		s.Finished += b.finished
		s.Failed += b.failed
		lat = append(lat, b.latencies...)
		s.Bars = append(s.Bars, bar{X: i * 5, Height: max(1, b.finished*40/peak),
			Title: time.Unix(k*60, 0).UTC().Format("15:04") + ": " + itoa(int64(b.finished)) + " finished"})
	}
	window := min(time.Hour, now.Sub(started))
	s.Window = "the last hour"
	if window < time.Hour {
		s.Window = "the " + window.Round(time.Second).String() + " since aurad started"
	}
	if mins := window.Minutes(); mins > 0 {
		s.PerMinute = float64(s.Finished) / max(mins, 1)
	}
	if len(lat) > 0 {
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		s.P50 = lat[len(lat)/2].Round(time.Millisecond).String()
		s.P95 = lat[len(lat)*95/100].Round(time.Millisecond).String()
	}
	return s
}

// FinishedTask is a task that finished, as the store's finished_at index
// gives it: whether it succeeded and when it was submitted and ended.
type FinishedTask struct {
	Succeeded             bool
	CreatedAt, FinishedAt time.Time
}

// FinishedSince reads the store's tasks that finished at or after since,
// latest first, at most limit, and says whether more were left out.
type FinishedSince func(ctx context.Context, since time.Time, limit int) ([]FinishedTask, bool, error)

// storeRateLimit bounds the finished tasks one figure reads from the store.
const storeRateLimit = 50_000

// storeRate computes the last hour's figures from the store, so a restart
// of aurad does not reset them. The figures are kept a second: every open
// Overview refreshes at most once a second, and they may share one read.
type storeRate struct {
	read FinishedSince    // immutable
	now  func() time.Time // immutable

	mu   sync.Mutex // guards at and last; held across the read so pages share it
	at   time.Time
	last rateSummary
}

func (r *storeRate) summary(ctx context.Context) (rateSummary, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if !r.at.IsZero() && now.Sub(r.at) < time.Second && !now.Before(r.at) {
		return r.last, nil
	}
	// From the start of the oldest minute summarize shows.
	since := time.Unix((now.Unix()/60-59)*60, 0)
	list, more, err := r.read(ctx, since, storeRateLimit)
	if err != nil {
		return rateSummary{}, err
	}
	minutes := map[int64]*minute{}
	for _, f := range list {
		k := f.FinishedAt.Unix() / 60
		b := minutes[k]
		if b == nil {
			b = &minute{}
			minutes[k] = b
		}
		b.finished++
		if !f.Succeeded {
			b.failed++
		}
		if !f.CreatedAt.IsZero() {
			b.latencies = append(b.latencies, f.FinishedAt.Sub(f.CreatedAt))
		}
	}
	s := summarize(now, now.Add(-time.Hour), minutes)
	if more {
		s.Window += " (the latest " + itoa(storeRateLimit) + " finished tasks of it)"
	}
	r.at, r.last = now, s
	return s, nil
}
