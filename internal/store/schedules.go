package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"
)

// ScheduleState is what the scheduler keeps of one schedule across
// restarts.
type ScheduleState struct {
	ID string // "<plan>/<name>"
	// LastTick is the last tick fired or recorded skipped: the scheduler
	// goes on from the tick after it. Zero: none yet.
	LastTick   time.Time
	LastFire   time.Time // the last tick fired; zero: never
	LastTaskID string    // the task that fire submitted
	// Paused is the pause state set through the API, which wins over the
	// file's; nil: the file decides.
	Paused *bool
}

// ScheduleStore keeps ScheduleStates and the after triggers' event-log
// cursor. It is small and apart from DB: a handful of rows written once
// per fire, not on any task's path.
type ScheduleStore interface {
	ScheduleStates(ctx context.Context) (map[string]ScheduleState, error)
	// SaveScheduleStates writes states (whole rows, by ID) in one
	// transaction.
	SaveScheduleStates(ctx context.Context, states []ScheduleState) error
	// ScheduleCursor returns the last event sequence the after triggers
	// have handled; ok false before the first SetScheduleCursor.
	ScheduleCursor(ctx context.Context) (seq uint64, ok bool, err error)
	SetScheduleCursor(ctx context.Context, seq uint64) error
	Close() error
}

// ScheduleTable is the SQLite ScheduleStore, in the store's own database
// on a connection of its own (the store's writer keeps its connection to
// itself; SQLite's busy timeout orders the two).
type ScheduleTable struct {
	db *sql.DB
}

// OpenScheduleTable opens the schedule tables of an open store. Close it
// before the store.
func OpenScheduleTable(s *Store) (*ScheduleTable, error) {
	sync := "FULL"
	if s.opts.Sync == SyncOff {
		sync = "OFF"
	}
	db, err := s.openSide(sync)
	if err != nil {
		return nil, fmt.Errorf("store: open schedules in %s: %w", s.path, err)
	}
	return &ScheduleTable{db: db}, nil
}

// Close closes the table's connection.
func (t *ScheduleTable) Close() error { return t.db.Close() }

// ScheduleStates implements ScheduleStore.
func (t *ScheduleTable) ScheduleStates(ctx context.Context) (map[string]ScheduleState, error) {
	rows, err := t.db.QueryContext(ctx, `SELECT id, last_tick, last_fire, last_task, paused FROM schedules`)
	if err != nil {
		return nil, fmt.Errorf("store: read schedules: %w", err)
	}
	defer rows.Close()
	out := map[string]ScheduleState{}
	for rows.Next() {
		var st ScheduleState
		var tick, fire int64
		var paused sql.NullBool
		if err := rows.Scan(&st.ID, &tick, &fire, &st.LastTaskID, &paused); err != nil {
			return nil, fmt.Errorf("store: read schedules: %w", err)
		}
		st.LastTick, st.LastFire = fromNanos(tick), fromNanos(fire)
		if paused.Valid {
			st.Paused = &paused.Bool
		}
		out[st.ID] = st
	}
	return out, rows.Err()
}

// SaveScheduleStates implements ScheduleStore.
func (t *ScheduleTable) SaveScheduleStates(ctx context.Context, states []ScheduleState) (err error) {
	if len(states) == 0 {
		return nil
	}
	tx, err := t.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: save schedules: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	put, err := tx.PrepareContext(ctx, `INSERT INTO schedules (id, last_tick, last_fire, last_task, paused) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET last_tick = excluded.last_tick, last_fire = excluded.last_fire,
			last_task = excluded.last_task, paused = excluded.paused`)
	if err != nil {
		return fmt.Errorf("store: save schedules: %w", err)
	}
	defer put.Close()
	for _, st := range states {
		var paused any
		if st.Paused != nil {
			paused = *st.Paused
		}
		if _, err = put.ExecContext(ctx, st.ID, toNanos(st.LastTick), toNanos(st.LastFire), st.LastTaskID, paused); err != nil {
			return fmt.Errorf("store: save schedule %s: %w", st.ID, err)
		}
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("store: save schedules: %w", err)
	}
	return nil
}

// ScheduleCursor implements ScheduleStore.
func (t *ScheduleTable) ScheduleCursor(ctx context.Context) (uint64, bool, error) {
	var seq int64
	err := t.db.QueryRowContext(ctx, `SELECT seq FROM schedule_cursor WHERE id = 1`).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("store: read the schedule cursor: %w", err)
	}
	return uint64(seq), true, nil
}

// SetScheduleCursor implements ScheduleStore.
func (t *ScheduleTable) SetScheduleCursor(ctx context.Context, seq uint64) error {
	if _, err := t.db.ExecContext(ctx, `INSERT INTO schedule_cursor (id, seq) VALUES (1, ?)
		ON CONFLICT (id) DO UPDATE SET seq = excluded.seq`, int64(seq)); err != nil {
		return fmt.Errorf("store: save the schedule cursor: %w", err)
	}
	return nil
}

// ScheduleMemory is the in-memory ScheduleStore, for an in-memory daemon
// and tests.
type ScheduleMemory struct {
	mu        sync.Mutex
	states    map[string]ScheduleState
	cursor    uint64
	hasCursor bool
}

// NewScheduleMemory returns an empty ScheduleMemory.
func NewScheduleMemory() *ScheduleMemory {
	return &ScheduleMemory{states: map[string]ScheduleState{}}
}

// ScheduleStates implements ScheduleStore.
func (m *ScheduleMemory) ScheduleStates(context.Context) (map[string]ScheduleState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.states), nil
}

// SaveScheduleStates implements ScheduleStore.
func (m *ScheduleMemory) SaveScheduleStates(_ context.Context, states []ScheduleState) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, st := range states {
		m.states[st.ID] = st
	}
	return nil
}

// ScheduleCursor implements ScheduleStore.
func (m *ScheduleMemory) ScheduleCursor(context.Context) (uint64, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cursor, m.hasCursor, nil
}

// SetScheduleCursor implements ScheduleStore.
func (m *ScheduleMemory) SetScheduleCursor(_ context.Context, seq uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cursor, m.hasCursor = seq, true
	return nil
}

// Close implements ScheduleStore.
func (m *ScheduleMemory) Close() error { return nil }

var (
	_ ScheduleStore = (*ScheduleTable)(nil)
	_ ScheduleStore = (*ScheduleMemory)(nil)
)

func toNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
