package store

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations[i] brings the schema from version i to version i+1. Applied
// migrations are never edited; a change is a new entry.
var migrations = []string{
	// 1: tasks, labels, the event log and the counters that outlive pruning.
	`
CREATE TABLE tasks (
	arrival     INTEGER PRIMARY KEY, -- global arrival order, assigned by the writer
	id          TEXT    NOT NULL UNIQUE,
	task        TEXT    NOT NULL,
	plan        TEXT    NOT NULL,
	status      INTEGER NOT NULL,
	priority    INTEGER NOT NULL,
	attempt     INTEGER NOT NULL,
	idem_key    TEXT,                -- NULL when the task has none
	labels      TEXT,                -- JSON object, NULL when empty
	created_at  INTEGER NOT NULL,    -- unix nanoseconds
	finished_at INTEGER,             -- unix nanoseconds, NULL while unfinished
	data        BLOB
);
CREATE INDEX tasks_status   ON tasks (status, arrival);
CREATE INDEX tasks_plan     ON tasks (plan, arrival);
CREATE INDEX tasks_idem     ON tasks (idem_key, created_at) WHERE idem_key IS NOT NULL;
CREATE INDEX tasks_finished ON tasks (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE task_labels (
	arrival INTEGER NOT NULL,
	key     TEXT    NOT NULL,
	value   TEXT    NOT NULL,
	PRIMARY KEY (arrival, key)
) WITHOUT ROWID;
CREATE INDEX task_labels_kv ON task_labels (key, value, arrival);

CREATE TABLE events (
	seq     INTEGER PRIMARY KEY,
	task_id TEXT    NOT NULL,
	type    TEXT    NOT NULL,
	hook    INTEGER NOT NULL,
	time    INTEGER NOT NULL, -- unix nanoseconds
	data    BLOB
);
CREATE INDEX events_task ON events (task_id, seq);
CREATE INDEX events_hook ON events (seq) WHERE hook = 1;

-- The counters survive pruning so that sequences and arrivals never repeat.
CREATE TABLE counters (
	id           INTEGER PRIMARY KEY CHECK (id = 1),
	last_seq     INTEGER NOT NULL,
	last_arrival INTEGER NOT NULL
);
INSERT INTO counters (id, last_seq, last_arrival) VALUES (1, 0, 0);
`,
	// 2: idempotency keys are scoped by who submitted (the principal) and
	// the task name, so two callers never share a key. Rows from before
	// have no recorded principal: they count as the anonymous principal's,
	// which every caller was when authentication was off. (ADD COLUMN with
	// a constant default rewrites no row, however many there are.)
	`
ALTER TABLE tasks ADD COLUMN principal TEXT NOT NULL DEFAULT 'anonymous';
DROP INDEX tasks_idem;
CREATE INDEX tasks_idem ON tasks (idem_key, task, principal, created_at) WHERE idem_key IS NOT NULL;
`,
	// 3: the last known state of each plan, per resource instance when the
	// plan's state map is scoped to a pool (pool and instance are '' for a
	// plan-wide state). state '' is unknown. See LastStates.
	`
CREATE TABLE last_states (
	plan       TEXT    NOT NULL,
	pool       TEXT    NOT NULL,
	instance   TEXT    NOT NULL,
	state      TEXT    NOT NULL,
	task_id    TEXT    NOT NULL, -- the task whose planning or run set it
	updated_at INTEGER NOT NULL, -- unix nanoseconds
	PRIMARY KEY (plan, pool, instance)
) WITHOUT ROWID;
`,
	// 4: what the scheduler keeps across restarts (see schedules.go): each
	// schedule's last fired tick and pause state, and how far the after
	// triggers have read the event log.
	`
CREATE TABLE schedules (
	id        TEXT    PRIMARY KEY,        -- "<plan>/<name>"
	last_tick INTEGER NOT NULL DEFAULT 0, -- unix nanoseconds of the last tick fired or skipped; 0: none
	last_fire INTEGER NOT NULL DEFAULT 0, -- unix nanoseconds of the last tick fired
	last_task TEXT    NOT NULL DEFAULT '', -- the task that fire submitted
	paused    INTEGER                     -- NULL: schedules.yaml decides
) WITHOUT ROWID;
CREATE TABLE schedule_cursor (
	id  INTEGER PRIMARY KEY CHECK (id = 1),
	seq INTEGER NOT NULL
);
`,
	// 5: the event log in packed rows (see eventrows.go): one row per run
	// of events of one task committed together, keyed by the sequence of
	// its last event, instead of one row per event. SQLite's cost is per
	// row and per index entry, so this is most of what recording a task
	// costs. Events already stored become runs of one, packed here in SQL
	// the way the writer packs them. The partial index of hook events
	// goes: the hooks column lets a read of hook events skip the other
	// rows, and most rows hold a hook event anyway.
	`
CREATE TABLE event_rows (
	last_seq  INTEGER PRIMARY KEY, -- the sequence of the run's last event
	first_seq INTEGER NOT NULL,    -- of its first; the sequences between are all in the run
	task_id   TEXT    NOT NULL,
	time      INTEGER NOT NULL,    -- the newest event's time, unix nanoseconds: retention's clock
	hooks     INTEGER NOT NULL,    -- 1: at least one of them is a hook event
	events    BLOB    NOT NULL     -- the events, packed
);
INSERT INTO event_rows (last_seq, first_seq, task_id, time, hooks, events)
SELECT seq, seq, task_id, time, hook,
	unhex(printf('%04x', length(CAST(type AS BLOB))) || hex(type) ||
		printf('%02x%016x%08x', hook | (CASE WHEN data IS NULL THEN 2 ELSE 0 END), time, COALESCE(length(CAST(data AS BLOB)), 0)) ||
		hex(data))
FROM events ORDER BY seq;
DROP TABLE events;
CREATE INDEX event_rows_task ON event_rows (task_id, last_seq);
`,
}

// migrate applies the migrations the database has not seen yet, each in its
// own transaction, and returns the resulting version.
func migrate(ctx context.Context, conn *sql.Conn) (int, error) {
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		version    INTEGER PRIMARY KEY,
		applied_at INTEGER NOT NULL
	)`); err != nil {
		return 0, fmt.Errorf("create schema_version: %w", err)
	}
	var current int
	if err := conn.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&current); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	if current > len(migrations) {
		return current, fmt.Errorf("%w: database at version %d, this binary knows %d", ErrSchemaTooNew, current, len(migrations))
	}
	for v := current; v < len(migrations); v++ {
		if err := applyMigration(ctx, conn, v+1, migrations[v]); err != nil {
			return v, err
		}
	}
	return len(migrations), nil
}

func applyMigration(ctx context.Context, conn *sql.Conn, version int, ddl string) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migration %d: begin: %w", version, err)
	}
	if _, err := tx.ExecContext(ctx, ddl); err != nil {
		_ = tx.Rollback()
		return fmt.Errorf("migration %d: %w", version, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version, applied_at) VALUES (?, strftime('%s','now'))`, version); err != nil {
		_ = tx.Rollback()
		return fmt.Errorf("migration %d: record version: %w", version, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migration %d: commit: %w", version, err)
	}
	return nil
}
