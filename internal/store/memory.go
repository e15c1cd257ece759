package store

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"
)

// Memory is the in-memory twin of Store: the same behaviour without SQL,
// durability or goroutines. It exists for benchmarks and tests of the layers
// above the store. OnCommit is called synchronously by the writing call, in
// sequence order; retention pruning runs inline during writes, at most once
// per PruneInterval.
type Memory struct {
	// Immutable after construction.
	opts Options

	// wmu serialises writes together with their OnCommit call, so OnCommit
	// sees batches in sequence order while reads go on under mu. Without
	// an OnCommit, writes take mu alone.
	wmu sync.Mutex

	mu        sync.RWMutex
	closed    bool
	byID      map[string]*Task    // stored copies, owned by Memory
	order     []*Task             // by arrival, ascending
	idem      map[idemKey]*Task   // the latest task created with each key, per principal and task
	events    []*Event            // retained, oldest first, gap-free: events[i].Seq == events[0].Seq+i; the writers' own events, owned by Memory
	byTask    map[string][]uint64 // each task's sequences, ascending
	seq       uint64
	arrival   uint64
	lastPrune time.Time
}

// NewMemory returns an empty in-memory store. Options.Sync is ignored.
func NewMemory(opts Options) *Memory {
	opts = opts.withDefaults()
	return &Memory{
		opts:      opts,
		byID:      make(map[string]*Task),
		idem:      make(map[idemKey]*Task),
		byTask:    make(map[string][]uint64),
		lastPrune: opts.Now(),
	}
}

// write runs apply under both locks and hands the committed events to
// OnCommit after the data lock is released.
func (m *Memory) write(apply func(now time.Time) ([]Event, error)) error {
	if m.opts.OnCommit != nil {
		m.wmu.Lock()
		defer m.wmu.Unlock()
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	now := m.opts.Now()
	if now.Sub(m.lastPrune) >= m.opts.PruneInterval {
		m.pruneLocked(now)
	}
	committed, err := apply(now)
	m.mu.Unlock()
	if err == nil && len(committed) > 0 && m.opts.OnCommit != nil {
		m.opts.OnCommit(committed)
	}
	return err
}

// appendLocked assigns sequences and stores events (the store owns their
// slices from now on). It returns them for OnCommit when there is one.
func (m *Memory) appendLocked(events []Event, now time.Time) []Event {
	if len(events) == 0 {
		return nil
	}
	notify := m.opts.OnCommit != nil
	var (
		task string   // the task of seqs: a write's events are mostly one task's
		seqs []uint64 // its sequences, stored back when the task changes
	)
	for i := range events {
		e := &events[i]
		if e.Time.IsZero() {
			e.Time = now
		}
		m.seq++
		e.Seq = m.seq
		m.events = append(m.events, e)
		if i == 0 || e.TaskID != task {
			if i > 0 {
				m.byTask[task] = seqs
			}
			task = e.TaskID
			if seqs = m.byTask[task]; seqs == nil {
				seqs = make([]uint64, 0, 8) // a no-op task's whole life
			}
		}
		seqs = append(seqs, e.Seq)
	}
	m.byTask[task] = seqs
	if !notify {
		return nil
	}
	// OnCommit may keep the slice, so it gets its own.
	return append([]Event(nil), events...)
}

// Write implements DB. The twin writes at once: the Pending it returns is
// done already.
func (m *Memory) Write(ctx context.Context, b Batch) *Pending {
	err := b.validate()
	if err == nil {
		err = ctx.Err()
	}
	if err == nil && (b.task() != nil || len(b.Events) > 0) {
		var dup *Task
		err = m.write(func(now time.Time) ([]Event, error) {
			switch {
			case b.Create != nil:
				var err error
				if dup, err = m.createLocked(b.Create, now); err != nil || dup != nil {
					return nil, err
				}
			case b.Update != nil:
				if err := m.updateLocked(b.Update); err != nil {
					return nil, err
				}
			}
			return m.appendLocked(b.Events, now), nil
		})
		if err == nil && dup != nil {
			return &Pending{done: closed, duplicate: dup}
		}
	}
	if err != nil {
		err = fmt.Errorf("%s: %w", b.what(), err)
		if b.Detached {
			m.opts.Logger.Error("store: queued events not recorded", "events", len(b.Events), "err", err)
		}
		return Finished(err)
	}
	return Finished(nil)
}

// createLocked stores t, or returns the earlier task its idempotency key
// finds.
func (m *Memory) createLocked(t *Task, now time.Time) (dup *Task, err error) {
	if t.IdempotencyKey != "" {
		if prev, ok := m.idem[idemScope(t)]; ok && !prev.CreatedAt.Before(now.Add(-m.opts.IdempotencyTTL)) {
			return prev.clone(), nil
		}
	}
	if _, ok := m.byID[t.ID]; ok {
		return nil, fmt.Errorf("%w: %s", ErrExists, t.ID)
	}
	if t.CreatedAt.IsZero() {
		t.CreatedAt = now
	}
	m.arrival++
	t.Arrival = m.arrival
	c := *t // Data is the store's from now on
	c.Labels = maps.Clone(t.Labels)
	m.byID[c.ID] = &c
	m.order = append(m.order, &c)
	if c.IdempotencyKey != "" {
		m.idem[idemScope(&c)] = &c
	}
	return nil, nil
}

func (m *Memory) updateLocked(t *Task) error {
	c, ok := m.byID[t.ID]
	if !ok {
		return fmt.Errorf("%w: %s", ErrNotFound, t.ID)
	}
	c.Status, c.Attempt, c.FinishedAt = t.Status, t.Attempt, t.FinishedAt
	c.Data = t.Data
	return nil
}

// GetTask implements DB.
func (m *Memory) GetTask(ctx context.Context, id string) (*Task, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, fmt.Errorf("store: get task %s: %w", id, ErrClosed)
	}
	t, ok := m.byID[id]
	if !ok {
		return nil, fmt.Errorf("store: task %s: %w", id, ErrNotFound)
	}
	return t.clone(), nil
}

// ListTasks implements DB.
func (m *Memory) ListTasks(ctx context.Context, q Query) ([]*Task, string, error) {
	cursor, err := decodePageToken(q.PageToken)
	if err != nil {
		return nil, "", err
	}
	if err := validateSelector(q.Selector); err != nil {
		return nil, "", err
	}
	size := pageSize(q.PageSize)
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, "", fmt.Errorf("store: list tasks: %w", ErrClosed)
	}
	i := sort.Search(len(m.order), func(i int) bool { return m.order[i].Arrival >= cursor })
	var out []*Task
	for i--; i >= 0; i-- {
		t := m.order[i]
		if (q.Status != 0 && t.Status != q.Status) || (q.Plan != "" && t.Plan != q.Plan) || !MatchesAll(q.Selector, t.Labels) {
			continue
		}
		if len(out) == size {
			return out, encodePageToken(out[size-1].Arrival), nil
		}
		out = append(out, t.clone())
	}
	return out, "", nil
}

// TasksWithStatus implements DB.
func (m *Memory) TasksWithStatus(ctx context.Context, statuses ...int32) ([]*Task, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, fmt.Errorf("store: tasks with status: %w", ErrClosed)
	}
	var out []*Task
	for _, t := range m.order {
		if slices.Contains(statuses, t.Status) {
			out = append(out, t.clone())
		}
	}
	return out, nil
}

// Events implements DB.
func (m *Memory) Events(ctx context.Context, after uint64, f EventFilter, limit int) ([]Event, error) {
	limit = eventLimit(limit)
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, fmt.Errorf("store: events: %w", ErrClosed)
	}
	if len(m.events) == 0 || after >= m.seq {
		return nil, nil
	}
	first := m.events[0].Seq
	var out []Event
	keep := func(e *Event) bool {
		return (!f.HooksOnly || e.Hook) && (len(f.Types) == 0 || slices.Contains(f.Types, e.Type))
	}
	if f.TaskID != "" {
		seqs := m.byTask[f.TaskID]
		j, _ := slices.BinarySearch(seqs, after+1)
		for ; j < len(seqs) && len(out) < limit; j++ {
			if seqs[j] < first {
				continue
			}
			if e := m.events[seqs[j]-first]; keep(e) {
				out = append(out, m.copyEvent(e))
			}
		}
		return out, nil
	}
	start := 0
	if after >= first {
		start = int(after - first + 1)
	}
	for j := start; j < len(m.events) && len(out) < limit; j++ {
		if e := m.events[j]; keep(e) {
			out = append(out, m.copyEvent(e))
		}
	}
	return out, nil
}

// copyEvent returns e for a reader, with its own Data.
func (m *Memory) copyEvent(e *Event) Event {
	c := *e
	if c.Data != nil {
		c.Data = append([]byte(nil), c.Data...)
	}
	return c
}

// EventBounds implements DB.
func (m *Memory) EventBounds(ctx context.Context) (oldest, last uint64, err error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return 0, 0, fmt.Errorf("store: event bounds: %w", ErrClosed)
	}
	if len(m.events) == 0 {
		return m.seq + 1, m.seq, nil
	}
	return m.events[0].Seq, m.seq, nil
}

// Prune deletes finished tasks and events older than the retention now.
func (m *Memory) Prune(ctx context.Context) (int, error) {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, fmt.Errorf("store: prune: %w", ErrClosed)
	}
	return m.pruneLocked(m.opts.Now()), nil
}

func (m *Memory) pruneLocked(now time.Time) int {
	m.lastPrune = now
	cutoff := now.Add(-m.opts.Retain)
	idemCutoff := now.Add(-m.opts.IdempotencyTTL)
	n := 0
	m.order = slices.DeleteFunc(m.order, func(t *Task) bool {
		if t.FinishedAt.IsZero() || !t.FinishedAt.Before(cutoff) || !t.CreatedAt.Before(idemCutoff) {
			return false
		}
		delete(m.byID, t.ID)
		if k := idemScope(t); m.idem[k] == t {
			delete(m.idem, k)
		}
		n++
		return true
	})
	k := 0
	for k < len(m.events) && m.events[k].Time.Before(cutoff) {
		e := m.events[k]
		if seqs := m.byTask[e.TaskID]; len(seqs) <= 1 {
			delete(m.byTask, e.TaskID)
		} else {
			m.byTask[e.TaskID] = seqs[1:]
		}
		k++
	}
	clear(m.events[:k]) // let them be collected
	m.events = m.events[k:]
	return n + k
}

// Close implements DB. Later calls are no-ops.
func (m *Memory) Close() error {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

// idemKey is the scope of an idempotency key: the SQLite store's tasks_idem
// index columns.
type idemKey struct{ key, task, principal string }

func idemScope(t *Task) idemKey {
	return idemKey{key: t.IdempotencyKey, task: t.Task, principal: t.Principal}
}
