package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// LastState is the last known state of a plan: of the plan itself, or of
// one instance of the resource pool its state map is scoped to. It is a
// hint (which instance to prefer, what to show), never a fact: planning
// verifies the state with the plan's checks before it relies on it.
type LastState struct {
	Plan           string
	Pool, Instance string // both "" for a plan-wide state
	State          string // "" when unknown
	TaskID         string // the task whose planning or run set it
	Time           time.Time
}

// LastStates is the table of last known states. It writes on a connection
// of its own, beside the store's writer: a state is a small, independent
// row that needs no place in the event log's order, and SQLite serializes
// the two writers. A written row survives a crash of the process
// (synchronous=NORMAL in WAL mode), not necessarily of the machine; losing
// one costs only a preference, since planning checks the state anyway.
type LastStates struct {
	db     *sql.DB
	put    *sql.Stmt
	closed bool
}

// OpenLastStates opens the last-state table of an open store. Close it
// before the store.
func OpenLastStates(ctx context.Context, s *Store) (*LastStates, error) {
	db, err := s.openSide("NORMAL")
	if err != nil {
		return nil, fmt.Errorf("store: last states: open %s: %w", s.path, err)
	}
	put, err := db.PrepareContext(ctx, `INSERT INTO last_states (plan, pool, instance, state, task_id, updated_at) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (plan, pool, instance) DO UPDATE SET state = excluded.state, task_id = excluded.task_id, updated_at = excluded.updated_at`)
	if err != nil {
		_ = db.Close()
		return nil, classify(s.path, "last states: prepare", err)
	}
	return &LastStates{db: db, put: put}, nil
}

// Put records ls, replacing what was known of its plan and instance.
func (l *LastStates) Put(ctx context.Context, ls LastState) error {
	if _, err := l.put.ExecContext(ctx, ls.Plan, ls.Pool, ls.Instance, ls.State, ls.TaskID, ls.Time.UnixNano()); err != nil {
		return fmt.Errorf("store: recording the last state of plan %s instance %q: %w", ls.Plan, ls.Instance, err)
	}
	return nil
}

// All returns every recorded last state, by plan, pool and instance.
func (l *LastStates) All(ctx context.Context) ([]LastState, error) {
	rows, err := l.db.QueryContext(ctx, `SELECT plan, pool, instance, state, task_id, updated_at FROM last_states ORDER BY plan, pool, instance`)
	if err != nil {
		return nil, fmt.Errorf("store: reading last states: %w", err)
	}
	defer rows.Close()
	var out []LastState
	for rows.Next() {
		var ls LastState
		var at int64
		if err := rows.Scan(&ls.Plan, &ls.Pool, &ls.Instance, &ls.State, &ls.TaskID, &at); err != nil {
			return nil, fmt.Errorf("store: reading last states: %w", err)
		}
		ls.Time = time.Unix(0, at)
		out = append(out, ls)
	}
	return out, rows.Err()
}

// Close closes the table's connection.
func (l *LastStates) Close() error {
	if l.closed {
		return nil
	}
	l.closed = true
	return errors.Join(l.put.Close(), l.db.Close())
}
