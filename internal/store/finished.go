package store

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// FinishedTask is a finished task's status and timing, for throughput and
// latency figures.
type FinishedTask struct {
	Status                int32
	CreatedAt, FinishedAt time.Time
}

// maxFinished bounds FinishedSince's answer whatever is asked.
const maxFinished = 100_000

func finishedLimit(n int) int {
	if n <= 0 || n > maxFinished {
		return maxFinished
	}
	return n
}

// FinishedSince returns the tasks that finished at or after since, latest
// finish first, at most limit of them (<= 0 or more than 100,000: 100,000),
// and whether more were left out. The SQLite store reads them through its
// finished_at index, so the answer costs what it returns.
func (s *Store) FinishedSince(ctx context.Context, since time.Time, limit int) ([]FinishedTask, bool, error) {
	if s.closed.Load() {
		return nil, false, fmt.Errorf("store: finished tasks: %w", ErrClosed)
	}
	limit = finishedLimit(limit)
	rows, err := s.rdb.QueryContext(ctx,
		`SELECT status, created_at, finished_at FROM tasks WHERE finished_at >= ? ORDER BY finished_at DESC LIMIT ?`,
		since.UnixNano(), limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("store: finished tasks: %w", err)
	}
	defer rows.Close()
	var out []FinishedTask
	for rows.Next() {
		var f FinishedTask
		var created, finished int64
		if err := rows.Scan(&f.Status, &created, &finished); err != nil {
			return nil, false, fmt.Errorf("store: finished tasks: %w", err)
		}
		f.CreatedAt, f.FinishedAt = time.Unix(0, created).UTC(), time.Unix(0, finished).UTC()
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("store: finished tasks: %w", err)
	}
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}

// FinishedSince is the in-memory twin of (*Store).FinishedSince.
func (m *Memory) FinishedSince(ctx context.Context, since time.Time, limit int) ([]FinishedTask, bool, error) {
	limit = finishedLimit(limit)
	m.mu.RLock()
	if m.closed {
		m.mu.RUnlock()
		return nil, false, fmt.Errorf("store: finished tasks: %w", ErrClosed)
	}
	var out []FinishedTask
	for _, t := range m.order {
		if !t.FinishedAt.IsZero() && !t.FinishedAt.Before(since) {
			out = append(out, FinishedTask{Status: t.Status, CreatedAt: t.CreatedAt, FinishedAt: t.FinishedAt})
		}
	}
	m.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].FinishedAt.After(out[j].FinishedAt) })
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}
