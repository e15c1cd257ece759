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
	now := t.now()
	m := now.Unix() / 60
	t.mu.Lock()
	defer t.mu.Unlock()
	var s rateSummary
	var lat []time.Duration
	peak := 1
	for k := m - 59; k <= m; k++ {
		if b := t.minutes[k]; b != nil {
			peak = max(peak, b.finished)
		}
	}
	for i, k := 0, m-59; k <= m; i, k = i+1, k+1 {
		b := t.minutes[k]
		if b == nil {
			continue
		}
		s.Finished += b.finished
		s.Failed += b.failed
		lat = append(lat, b.latencies...)
		s.Bars = append(s.Bars, bar{X: i * 5, Height: max(1, b.finished*40/peak),
			Title: time.Unix(k*60, 0).UTC().Format("15:04") + ": " + itoa(int64(b.finished)) + " finished"})
	}
	window := min(time.Hour, now.Sub(t.started))
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
