package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"modernc.org/sqlite"
)

// SQLite primary result codes the store translates.
const (
	sqliteCorrupt = 11
	sqliteNotADB  = 26
)

// DBFile is the database file's name inside the data directory.
const DBFile = "aura.db"

const lockFile = "aura.lock"

// Store is the durable store: one SQLite database in WAL mode. Writes go
// through a single writer goroutine that commits whatever is queued in one
// transaction (group commit); reads use a separate pool of connections.
type Store struct {
	// Immutable after Open.
	opts   Options
	path   string
	lock   *os.File
	wdb    *sql.DB // exactly one connection, used only by the writer
	rdb    *sql.DB // read-only pool
	getOne *sql.Stmt
	w      *writer

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// Open opens (creating if needed) the store in dir/aura.db, applies pending
// schema migrations and starts the writer (retention pruning is a Pruner's
// job: start one for a long-lived store). Only one
// process may have a data directory open at a time.
func Open(ctx context.Context, dir string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	if strings.Contains(dir, "?") {
		// The SQLite driver would take the rest for connection parameters.
		return nil, fmt.Errorf("%w: data directory %q contains '?'", ErrInvalid, dir)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("store: data directory %s: %w", dir, err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	s := &Store{opts: opts, path: filepath.Join(dir, DBFile), lock: lock}
	if err := s.open(ctx); err != nil {
		s.closeDBs()
		_ = lock.Close()
		return nil, err
	}
	return s, nil
}

func lockDir(dir string) (*os.File, error) {
	p := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("store: data directory %s is not writable: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s (another aurad?): stop it, or give this one another --data", ErrLocked, dir)
		}
		return nil, fmt.Errorf("store: lock %s: %w", p, err)
	}
	return f, nil
}

func (s *Store) open(ctx context.Context) error {
	existed, err := checkNotEmptied(s.path)
	if err != nil {
		return err
	}
	// The file must be writable by us even when it already exists: SQLite
	// would otherwise silently open it read-only and fail at the first write.
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("store: open %s: %w", s.path, err)
	}
	_ = f.Close()
	q := "?_pragma=busy_timeout(10000)&_pragma=cache_size(-8000)&_pragma=journal_mode(WAL)&_pragma=synchronous(" + s.opts.Sync.pragma() + ")&_txlock=immediate"
	wdb, err := sql.Open("sqlite", s.path+q)
	if err != nil {
		return fmt.Errorf("store: open %s: %w", s.path, err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	s.wdb = wdb
	conn, err := wdb.Conn(ctx)
	if err != nil {
		return classify(s.path, "open", err)
	}
	var mode string
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		_ = conn.Close()
		return classify(s.path, "open", err)
	}
	if !strings.EqualFold(mode, "wal") {
		_ = conn.Close()
		return fmt.Errorf("store: %s: cannot use WAL journal (got %q)", s.path, mode)
	}
	if existed {
		if err := quickCheck(ctx, conn, s.path, s.opts.CheckTimeout, s.opts.Logger); err != nil {
			_ = conn.Close()
			return err
		}
	}
	if _, err := migrate(ctx, conn); err != nil {
		_ = conn.Close()
		return classify(s.path, "migrate", err)
	}
	// Move what the WAL holds into the database file now, so that the file
	// is never empty after a first start (an empty one is refused above)
	// and a start begins with a short WAL.
	if _, err := conn.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		if err := classify(s.path, "checkpoint", err); errors.Is(err, ErrCorrupt) {
			_ = conn.Close()
			return err
		}
		// A full disk, most likely: the store still opens (and says so
		// when a write fails), as it did before the checkpoint existed.
		s.opts.Logger.Warn("store: could not checkpoint the write-ahead log at open", "path", s.path, "err", err)
	}
	files, err := identify(s.path, s.path+"-wal")
	if err != nil {
		_ = conn.Close()
		return fmt.Errorf("store: open %s: %w", s.path, err)
	}
	wp := writerParams{conn: conn, opts: s.opts, files: files}
	if s.opts.Sync == SyncAlways {
		wp.wal = s.path + "-wal"
	}
	w, err := newWriter(ctx, wp)
	if err != nil {
		_ = conn.Close()
		return classify(s.path, "prepare", err)
	}

	rdb, err := sql.Open("sqlite", s.path+"?_pragma=busy_timeout(10000)&_pragma=query_only(1)")
	if err != nil {
		w.closeStmts()
		return fmt.Errorf("store: open %s: %w", s.path, err)
	}
	rdb.SetMaxOpenConns(4)
	rdb.SetMaxIdleConns(4)
	s.rdb = rdb
	if s.getOne, err = rdb.PrepareContext(ctx, `SELECT `+taskCols+` FROM tasks WHERE id = ?`); err != nil {
		w.closeStmts()
		return classify(s.path, "prepare", err)
	}
	s.w = w
	w.start()
	s.opts.Logger.Info("store opened", "path", s.path, "sync", s.opts.Sync.String(),
		"last_seq", w.lastSeq.Load())
	return nil
}

// classify wraps err, turning SQLite's "not a database" and "corrupt" into
// ErrCorrupt.
func classify(path, what string, err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqliteCorrupt, sqliteNotADB:
			return corruptError(path, fmt.Errorf("%s: %w", what, err))
		}
	}
	if errors.Is(err, ErrSchemaTooNew) {
		return fmt.Errorf("store: %s: %w", path, err)
	}
	return fmt.Errorf("store: %s: %s: %w", path, what, err)
}

// Close flushes queued writes, stops the background goroutines and closes
// the database. Later calls return the first result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		// Writes held for disk space fail rather than keep Close waiting.
		s.w.abandon()
		s.w.shutdown()
		s.w.closeStmts()
		s.closeErr = s.closeDBs()
		if err := s.lock.Close(); err != nil && s.closeErr == nil {
			s.closeErr = fmt.Errorf("store: release lock: %w", err)
		}
	})
	return s.closeErr
}

func (s *Store) closeDBs() error {
	var errs []error
	if s.getOne != nil {
		errs = append(errs, s.getOne.Close())
	}
	if s.rdb != nil {
		errs = append(errs, s.rdb.Close())
	}
	if s.wdb != nil {
		errs = append(errs, s.wdb.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Write implements DB. The batch joins the writer's queue (waiting, bounded
// by ctx, while the queue is full) and is committed with whatever else is
// queued in one transaction.
func (s *Store) Write(ctx context.Context, b Batch) *Pending {
	if err := b.validate(); err != nil {
		return s.w.settleEarly(&b, err)
	}
	if b.task() == nil && len(b.Events) == 0 {
		return okPending
	}
	o := s.w.newOp(b)
	if err := s.w.send(ctx, o); err != nil {
		return s.w.settleEarly(&b, err)
	}
	return &o.pending
}

// Broken returns why the store refuses writes (a failed sync), or nil.
// Only reopening the store (restarting aurad) clears it.
func (s *Store) Broken() error {
	if err := s.w.broken.Load(); err != nil {
		return *err
	}
	return nil
}

// Writable returns why the store refuses writes, or nil: a failed sync
// (Broken), the database file deleted or replaced (ErrGone; checked now, so
// an idle daemon notices too), or a full disk (ErrFull, until space
// returns). It is what /readyz reports.
func (s *Store) Writable() error {
	if err := s.Broken(); err != nil {
		return err
	}
	if err := s.w.fileGone(); err != nil {
		return err
	}
	if err := s.w.full.Load(); err != nil {
		return *err
	}
	return nil
}

// Abandon stops holding writes for disk space: those held fail now, and
// later ones fail at once while the disk stays full. The daemon calls it
// when its shutdown grace ends, so tasks waiting for space do not keep it
// from stopping; the next start recovers them from the store.
func (s *Store) Abandon() { s.w.abandon() }

// WriterStats counts the writer's work since Open; Ops/Batches is the
// average group-commit size.
type WriterStats struct {
	Batches       uint64 // committed transactions
	Ops           uint64 // operations committed in them
	FailedBatches uint64 // transactions rolled back
}

// WriterStats reports the writer's counters.
func (s *Store) WriterStats() WriterStats {
	return WriterStats{
		Batches:       s.w.stats.batches.Load(),
		Ops:           s.w.stats.ops.Load(),
		FailedBatches: s.w.stats.failed.Load(),
	}
}

// Prune deletes, in small batches, finished tasks and events older than the
// retention, until nothing is left to delete. It returns how many rows went.
func (s *Store) Prune(ctx context.Context) (int, error) {
	return s.w.pruneAll(ctx)
}

const taskCols = `arrival, id, task, plan, status, priority, attempt, idem_key, labels, created_at, finished_at, data, principal`

type rowScanner interface{ Scan(dest ...any) error }

func scanTask(r rowScanner) (*Task, error) {
	var (
		t        Task
		idem     sql.NullString
		labels   sql.NullString
		created  int64
		finished sql.NullInt64
	)
	if err := r.Scan(&t.Arrival, &t.ID, &t.Task, &t.Plan, &t.Status, &t.Priority, &t.Attempt,
		&idem, &labels, &created, &finished, &t.Data, &t.Principal); err != nil {
		return nil, err
	}
	t.IdempotencyKey = idem.String
	if labels.Valid {
		if err := json.Unmarshal([]byte(labels.String), &t.Labels); err != nil {
			return nil, fmt.Errorf("decode labels of task %s: %w", t.ID, err)
		}
	}
	t.CreatedAt = time.Unix(0, created).UTC()
	if finished.Valid {
		t.FinishedAt = time.Unix(0, finished.Int64).UTC()
	}
	return &t, nil
}

func encodeLabels(m map[string]string) (any, error) {
	if len(m) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("%w: labels: %w", ErrInvalid, err)
	}
	return string(b), nil
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

// GetTask implements DB.
func (s *Store) GetTask(ctx context.Context, id string) (*Task, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("store: get task %s: %w", id, ErrClosed)
	}
	t, err := scanTask(s.getOne.QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: task %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: get task %s: %w", id, err)
	}
	return t, nil
}

// Page tokens are opaque to callers: "a" + the arrival of the last task
// returned, base64url-encoded. New tasks always arrive above every cursor, so
// pages are stable under inserts.
func encodePageToken(arrival uint64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("a" + strconv.FormatUint(arrival, 10)))
}

func decodePageToken(tok string) (uint64, error) {
	if tok == "" {
		return math.MaxInt64, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err == nil && len(b) > 1 && b[0] == 'a' {
		if n, err := strconv.ParseUint(string(b[1:]), 10, 63); err == nil {
			return n, nil
		}
	}
	return 0, fmt.Errorf("%w: page token %q", ErrInvalid, tok)
}

// listQuery builds the SQL for ListTasks. An equality label requirement, when
// there is one, drives the query through the label index; otherwise the
// status or plan index does, or the primary key. Every path walks an index in
// arrival order, so LIMIT stops the walk early and no sort is needed.
func listQuery(q Query, cursor uint64, limit int) (string, []any) {
	var b strings.Builder
	args := make([]any, 0, 8)
	b.WriteString("SELECT ")
	b.WriteString(strings.ReplaceAll("t."+taskCols, ", ", ", t."))
	driver := -1
	for i, r := range q.Selector {
		if r.Op == LabelEquals {
			driver = i
			break
		}
	}
	if driver >= 0 {
		r := q.Selector[driver]
		b.WriteString(" FROM task_labels l CROSS JOIN tasks t ON t.arrival = l.arrival WHERE l.key = ? AND l.value = ? AND l.arrival < ?")
		args = append(args, r.Key, r.Value, int64(cursor))
	} else {
		b.WriteString(" FROM tasks t WHERE t.arrival < ?")
		args = append(args, int64(cursor))
	}
	if q.Status != 0 {
		b.WriteString(" AND t.status = ?")
		args = append(args, q.Status)
	}
	if q.Plan != "" {
		b.WriteString(" AND t.plan = ?")
		args = append(args, q.Plan)
	}
	for i, r := range q.Selector {
		if i == driver {
			continue
		}
		switch r.Op {
		case LabelEquals, LabelNotEquals:
			if r.Op == LabelNotEquals {
				b.WriteString(" AND NOT")
			} else {
				b.WriteString(" AND")
			}
			b.WriteString(" EXISTS (SELECT 1 FROM task_labels x WHERE x.arrival = t.arrival AND x.key = ? AND x.value = ?)")
			args = append(args, r.Key, r.Value)
		case LabelExists, LabelNotExists:
			if r.Op == LabelNotExists {
				b.WriteString(" AND NOT")
			} else {
				b.WriteString(" AND")
			}
			b.WriteString(" EXISTS (SELECT 1 FROM task_labels x WHERE x.arrival = t.arrival AND x.key = ?)")
			args = append(args, r.Key)
		}
	}
	if driver >= 0 {
		b.WriteString(" ORDER BY l.arrival DESC LIMIT ?")
	} else {
		b.WriteString(" ORDER BY t.arrival DESC LIMIT ?")
	}
	args = append(args, limit)
	return b.String(), args
}

// ListTasks implements DB.
func (s *Store) ListTasks(ctx context.Context, q Query) ([]*Task, string, error) {
	cursor, err := decodePageToken(q.PageToken)
	if err != nil {
		return nil, "", err
	}
	if err := validateSelector(q.Selector); err != nil {
		return nil, "", err
	}
	size := pageSize(q.PageSize)
	query, args := listQuery(q, cursor, size+1)
	tasks, err := s.queryTasks(ctx, query, args...)
	if err != nil {
		return nil, "", fmt.Errorf("store: list tasks: %w", err)
	}
	next := ""
	if len(tasks) > size {
		tasks = tasks[:size]
		next = encodePageToken(tasks[size-1].Arrival)
	}
	return tasks, next, nil
}

func (s *Store) queryTasks(ctx context.Context, query string, args ...any) ([]*Task, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	rows, err := s.rdb.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Task
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// TasksWithStatus implements DB.
func (s *Store) TasksWithStatus(ctx context.Context, statuses ...int32) ([]*Task, error) {
	if len(statuses) == 0 {
		return nil, nil
	}
	query, args := tasksWithStatusQuery(statuses)
	tasks, err := s.queryTasks(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: tasks with status: %w", err)
	}
	return tasks, nil
}

func tasksWithStatusQuery(statuses []int32) (string, []any) {
	args := make([]any, len(statuses))
	for i, st := range statuses {
		args[i] = st
	}
	return `SELECT ` + taskCols + ` FROM tasks WHERE status IN (` + placeholders(len(statuses)) + `) ORDER BY arrival`, args
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

const (
	defaultEventLimit = 1000
	maxEventLimit     = 10000
)

func eventLimit(n int) int {
	switch {
	case n <= 0:
		return defaultEventLimit
	case n > maxEventLimit:
		return maxEventLimit
	}
	return n
}

// eventsQuery selects the rows holding events after after (the first may
// also hold some at or before it) in sequence order; the events within
// them are filtered by type, and by hook for rows mixing both, as they are
// unpacked. There is no LIMIT: Events stops reading once it has enough.
func eventsQuery(after uint64, f EventFilter) (string, []any) {
	var b strings.Builder
	args := make([]any, 0, 2)
	b.WriteString("SELECT first_seq, last_seq, task_id, events FROM event_rows WHERE last_seq > ?")
	args = append(args, int64(after))
	if f.TaskID != "" {
		b.WriteString(" AND task_id = ?")
		args = append(args, f.TaskID)
	}
	if f.HooksOnly {
		b.WriteString(" AND hooks = 1")
	}
	b.WriteString(" ORDER BY last_seq")
	return b.String(), args
}

// Events implements DB. A limit <= 0 means 1000; at most 10000 are returned.
func (s *Store) Events(ctx context.Context, after uint64, f EventFilter, limit int) ([]Event, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("store: events: %w", ErrClosed)
	}
	if after >= math.MaxInt64 {
		return nil, nil // beyond any sequence SQLite can hold
	}
	limit = eventLimit(limit)
	query, args := eventsQuery(after, f)
	rows, err := s.rdb.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: events: %w", err)
	}
	defer rows.Close()
	var out []Event
	for len(out) < limit && rows.Next() {
		var (
			first, last int64
			taskID      string
			packed      []byte
		)
		if err := rows.Scan(&first, &last, &taskID, &packed); err != nil {
			return nil, fmt.Errorf("store: events: %w", err)
		}
		if out, err = unpackRow(out, uint64(first), uint64(last), taskID, packed, after, f, limit); err != nil {
			return nil, fmt.Errorf("store: events: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: events: %w", err)
	}
	return out, nil
}

// EventBounds implements DB.
func (s *Store) EventBounds(ctx context.Context) (oldest, last uint64, err error) {
	// Read last first: events are pruned only from the front, so the oldest
	// read afterwards is never older than what existed at last.
	if s.closed.Load() {
		return 0, 0, fmt.Errorf("store: event bounds: %w", ErrClosed)
	}
	last = s.w.lastSeq.Load()
	var min sql.NullInt64
	if err := s.rdb.QueryRowContext(ctx, `SELECT first_seq FROM event_rows WHERE last_seq > 0 ORDER BY last_seq LIMIT 1`).Scan(&min); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, 0, fmt.Errorf("store: event bounds: %w", err)
	}
	if !min.Valid || uint64(min.Int64) > last {
		return last + 1, last, nil
	}
	return uint64(min.Int64), last, nil
}

// openSide opens a writing connection of its own to the store's database,
// beside the writer's, for a table that keeps its rows outside the event
// log's order (last known states, schedules): SQLite's busy timeout orders
// its writes with the writer's. synchronous is SQLite's level for it.
func (s *Store) openSide(synchronous string) (*sql.DB, error) {
	db, err := sql.Open("sqlite", s.path+"?_pragma=busy_timeout(10000)&_pragma=synchronous("+synchronous+")&_txlock=immediate")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	return db, nil
}
