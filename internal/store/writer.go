package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// rowsPerInsert is how many event rows one INSERT carries: fewer
	// statements for the same rows.
	rowsPerInsert = 32
	// maxBatch caps the operations committed in one transaction.
	maxBatch = 1000
	// pruneBatch caps the rows one prune operation deletes from each table.
	pruneBatch = 500
	queueLen   = 4096
)

type opKind uint8

const (
	opCreate opKind = iota + 1
	opUpdate
	opAppend
	opPrune
)

// op is one queued write: a Batch, or a prune. The submitter owns it until
// it is queued and again once done is closed; in between only the writer
// goroutine touches it.
type op struct {
	kind     opKind
	task     *Task
	events   []Event
	done     chan struct{}
	detached bool // nobody waits: a failure is logged
	// pending is what Write returns: it hears the outcome before done is
	// closed. The batch's task and events are let go of then, so a caller
	// holding the Pending keeps only this op alive, not its batch.
	pending Pending

	// Results.
	err       error
	dedup     bool
	got       *Task // the earlier task, when dedup
	arrival   uint64
	createdAt time.Time
	pruned    int
	more      bool // prune: a batch was full, there may be more
}

type writerParams struct {
	conn *sql.Conn
	opts Options
	// wal is the database's write-ahead log. When set (Sync = SyncAlways)
	// commits do not sync: the syncer fsyncs this file after them, once for
	// every commit made meanwhile, and only then are writers answered. The
	// next transaction runs while the disk syncs the last ones.
	wal string
	// files are the database file and its WAL as they were at open: every
	// commit checks that their paths still name them before anybody hears
	// of the commit (see fileGone). files[0] is the database file.
	files []watchedFile
}

// committed is one committed transaction waiting for its sync.
type committed struct {
	ops    []*op
	events []Event
	seq    uint64
	began  time.Time
}

// writer is the single goroutine that writes to the database: it drains the
// queue, applies everything waiting in one transaction, commits once and
// answers every waiter.
type writer struct {
	// Immutable after construction.
	conn  *sql.Conn
	opts  Options
	log   *slog.Logger
	st    writerStmts
	queue chan *op
	stop  chan struct{}
	done  chan struct{}

	// mu guards closed; submitters hold it shared while they enqueue, so
	// once shutdown holds it exclusively nothing more can be queued.
	mu     sync.RWMutex
	closed bool

	// Accessed only by the writer goroutine.
	seq       uint64
	arrival   uint64
	batch     []*op
	pending   []*Event // the transaction's events, not yet inserted (see flushEvents)
	rows      []eventRow
	packed    []byte // the rows' packed events
	eventArgs []any

	// The syncer's: committed transactions in commit order; closed by run
	// when it exits. nil without a WAL to sync (see writerParams.wal).
	synced     chan committed
	syncerDone chan struct{}
	wal        string
	walFile    *os.File // opened at the first sync
	// broken is the error of a failed sync: nothing is written after it.
	broken atomic.Pointer[error]

	// The database file, files[0].path, and its WAL, as they were at open
	// (see fileGone); gone is set once one is found deleted or replaced.
	path  string
	files []watchedFile
	gone  atomic.Pointer[error]

	// full is set (by the writer goroutine) while the disk is full, read by
	// anyone: new tasks are refused with it (see diskfull.go). refused
	// counts them. giveUp, closed by abandon, ends the holding of writes
	// for space (shutdown).
	full       atomic.Pointer[error]
	refused    atomic.Uint64
	giveUp     chan struct{}
	giveUpOnce sync.Once
	space      spaceState // the writer goroutine's

	// Readable by anyone.
	lastSeq atomic.Uint64 // the last committed (and, with a syncer, synced) sequence
	stats   struct{ batches, ops, failed atomic.Uint64 }
}

type writerStmts struct {
	begin, commit, rollback              *sql.Stmt
	insertTask, insertLabel, insertRow   *sql.Stmt
	insertRows                           *sql.Stmt // rowsPerInsert rows at once
	updateTask, idemLookup, setCounters  *sql.Stmt
	pruneTasks, deleteLabels, deleteTask *sql.Stmt
	eventPrefix, deleteEvents            *sql.Stmt
}

func newWriter(ctx context.Context, p writerParams) (*writer, error) {
	w := &writer{
		conn:      p.conn,
		opts:      p.opts,
		log:       p.opts.Logger,
		queue:     make(chan *op, queueLen),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		batch:     make([]*op, 0, maxBatch),
		eventArgs: make([]any, 0, 6*rowsPerInsert),
		wal:       p.wal,
		files:     p.files,
		giveUp:    make(chan struct{}),
	}
	if len(p.files) > 0 {
		w.path = p.files[0].path
	}
	if p.wal != "" {
		w.synced = make(chan committed, 64)
		w.syncerDone = make(chan struct{})
	}
	var seq, arrival, maxSeq, maxArrival int64
	if err := p.conn.QueryRowContext(ctx, `SELECT last_seq, last_arrival,
		(SELECT COALESCE(MAX(last_seq), 0) FROM event_rows), (SELECT COALESCE(MAX(arrival), 0) FROM tasks)
		FROM counters WHERE id = 1`).Scan(&seq, &arrival, &maxSeq, &maxArrival); err != nil {
		return nil, fmt.Errorf("read counters: %w", err)
	}
	w.seq, w.arrival = uint64(max(seq, maxSeq)), uint64(max(arrival, maxArrival))
	w.lastSeq.Store(w.seq)

	prep := []struct {
		dst **sql.Stmt
		sql string
	}{
		{&w.st.begin, `BEGIN IMMEDIATE`},
		{&w.st.commit, `COMMIT`},
		{&w.st.rollback, `ROLLBACK`},
		{&w.st.insertTask, `INSERT INTO tasks (arrival, id, task, plan, status, priority, attempt, idem_key, labels, created_at, finished_at, data, principal)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`},
		{&w.st.insertLabel, `INSERT INTO task_labels (arrival, key, value) VALUES (?, ?, ?)`},
		{&w.st.insertRow, `INSERT INTO event_rows (last_seq, first_seq, task_id, time, hooks, events) VALUES (?, ?, ?, ?, ?, ?)`},
		{&w.st.insertRows, `INSERT INTO event_rows (last_seq, first_seq, task_id, time, hooks, events) VALUES ` +
			strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?), ", rowsPerInsert), ", ")},
		{&w.st.updateTask, `UPDATE tasks SET status = ?, attempt = ?, finished_at = ?, data = ? WHERE id = ?`},
		{&w.st.idemLookup, `SELECT ` + taskCols + ` FROM tasks WHERE idem_key = ? AND task = ? AND principal = ? AND created_at >= ? ORDER BY created_at DESC LIMIT 1`},
		{&w.st.setCounters, `UPDATE counters SET last_seq = ?, last_arrival = ? WHERE id = 1`},
		{&w.st.pruneTasks, `SELECT arrival FROM tasks WHERE finished_at IS NOT NULL AND finished_at < ? AND created_at < ? ORDER BY finished_at LIMIT ?`},
		{&w.st.deleteLabels, `DELETE FROM task_labels WHERE arrival = ?`},
		{&w.st.deleteTask, `DELETE FROM tasks WHERE arrival = ?`},
		{&w.st.eventPrefix, `SELECT last_seq, first_seq, time FROM event_rows WHERE last_seq > 0 ORDER BY last_seq LIMIT ?`},
		{&w.st.deleteEvents, `DELETE FROM event_rows WHERE last_seq <= ?`},
	}
	for _, p := range prep {
		st, err := w.conn.PrepareContext(ctx, p.sql)
		if err != nil {
			w.closeStmts()
			return nil, fmt.Errorf("prepare %q: %w", p.sql, err)
		}
		*p.dst = st
	}
	return w, nil
}

func (w *writer) closeStmts() {
	for _, st := range []*sql.Stmt{w.st.begin, w.st.commit, w.st.rollback, w.st.insertTask, w.st.insertLabel, w.st.insertRow, w.st.insertRows, w.st.updateTask,
		w.st.idemLookup, w.st.setCounters, w.st.pruneTasks, w.st.deleteLabels, w.st.deleteTask,
		w.st.eventPrefix, w.st.deleteEvents} {
		if st != nil {
			_ = st.Close()
		}
	}
	w.st = writerStmts{}
	_ = w.conn.Close()
}

func (w *writer) start() {
	if w.synced != nil {
		go w.syncer()
	}
	go w.run()
}

// shutdown stops accepting writes, lets the writer commit everything queued
// and waits for it to exit.
func (w *writer) shutdown() {
	// A stopping writer waits for no disk space; first, since submitters
	// blocked on a queue full of held writes hold mu until it drains.
	w.abandon()
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		<-w.done
		return
	}
	w.closed = true
	w.mu.Unlock()
	close(w.stop)
	<-w.done
}

// newOp returns the op that carries b, with its Pending.
func (w *writer) newOp(b Batch) *op {
	o := &op{kind: opAppend, events: b.Events, done: make(chan struct{}), detached: b.Detached}
	switch {
	case b.Create != nil:
		o.kind, o.task = opCreate, b.Create
	case b.Update != nil:
		o.kind, o.task = opUpdate, b.Update
	}
	o.pending.done = o.done
	return o
}

// settleEarly is the Pending of a batch that failed before it was queued.
func (w *writer) settleEarly(b *Batch, err error) *Pending {
	err = fmt.Errorf("%s: %w", b.what(), err)
	if b.Detached {
		w.logDetached(len(b.Events), err)
	}
	return Finished(err)
}

// logDetached logs the failure of a write nobody waits for. A full disk or
// a deleted database is logged once by itself, not once per progress event
// it swallows.
func (w *writer) logDetached(events int, err error) {
	if !errors.Is(err, ErrFull) && !errors.Is(err, ErrGone) {
		w.log.Error("store: queued events not recorded", "events", events, "err", err)
	}
}

// send queues o, waiting (bounded by ctx) for queue space.
func (w *writer) send(ctx context.Context, o *op) error {
	if err := w.refuse(o); err != nil {
		return err
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return ErrClosed
	}
	select {
	case w.queue <- o:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *writer) run() {
	defer close(w.done)
	if w.synced != nil {
		defer func() {
			close(w.synced)
			<-w.syncerDone
		}()
	}
	for {
		if w.full.Load() != nil && !w.givenUp() {
			w.whileFull()
			continue
		}
		select {
		case o := <-w.queue:
			w.collect(o)
		case <-w.stop:
			// Nothing can be queued any more: commit what is left.
			for {
				select {
				case o := <-w.queue:
					w.collect(o)
				default:
					return
				}
			}
		}
	}
}

// collect gathers o and whatever else is waiting (up to maxBatch) and
// commits them together.
func (w *writer) collect(first *op) {
	w.batch = append(w.batch[:0], first)
	// When the queue runs dry, yield once so that submitters just woken by
	// the previous commit can queue their next write: larger batches for the
	// price of a reschedule, with no timer and no added latency when idle.
	yielded := false
	for len(w.batch) < maxBatch {
		select {
		case o := <-w.queue:
			w.batch = append(w.batch, o)
			continue
		default:
		}
		if yielded {
			break
		}
		yielded = true
		runtime.Gosched()
	}
	w.commitBatch(w.batch)
	clear(w.batch)
}

// commitBatch commits batch in one transaction and answers its writers.
// It reports whether the disk was full: then the batch's writes of tasks
// already accepted are held for a retry (see hold) instead of failed.
func (w *writer) commitBatch(batch []*op) (full bool) {
	if err := w.broken.Load(); err != nil {
		w.failAll(batch, *err)
		return false
	}
	if err := w.gone.Load(); err != nil {
		w.failAll(batch, *err)
		return false
	}
	startSeq, startArrival := w.seq, w.arrival
	began := time.Now()
	if _, err := w.st.begin.Exec(); err != nil {
		return w.abort(batch, startSeq, startArrival, fmt.Errorf("begin: %w", err))
	}
	now := w.opts.Now()
	for _, o := range batch {
		seq, arrival := w.seq, w.arrival
		err := w.apply(o, now)
		if err == nil {
			continue
		}
		w.seq, w.arrival = seq, arrival
		var rej *rejection
		if errors.As(err, &rej) {
			// Nothing of o was written: it fails alone and the batch goes on.
			o.err = rej.err
			continue
		}
		return w.abort(batch, startSeq, startArrival, err)
	}
	if err := w.flushEvents(); err != nil {
		return w.abort(batch, startSeq, startArrival, err)
	}
	if w.seq != startSeq || w.arrival != startArrival {
		if _, err := w.st.setCounters.Exec(int64(w.seq), int64(w.arrival)); err != nil {
			return w.abort(batch, startSeq, startArrival, fmt.Errorf("update counters: %w", err))
		}
	}
	if _, err := w.st.commit.Exec(); err != nil {
		return w.abort(batch, startSeq, startArrival, fmt.Errorf("commit: %w", err))
	}
	// What was just committed went into a file that is no longer the
	// database when the data directory was deleted or replaced: nobody
	// may hear of it as done, since the next start will not find it.
	if err := w.fileGone(); err != nil {
		w.failAll(batch, err)
		return false
	}
	w.tight()
	w.stats.batches.Add(1)
	w.stats.ops.Add(uint64(len(batch)))
	c := committed{ops: batch, seq: w.seq, began: began}
	if w.opts.OnCommit != nil {
		for _, o := range batch {
			if o.err == nil && !o.dedup {
				c.events = append(c.events, o.events...)
			}
		}
	}
	if w.synced != nil {
		// The batch slice is reused for the next transaction.
		c.ops = append([]*op(nil), batch...)
		w.synced <- c
		return false
	}
	w.answer(c)
	return false
}

// answer completes a durable transaction: its sequence becomes visible,
// OnCommit hears its events, and every writer in it gets its result.
func (w *writer) answer(c committed) {
	w.lastSeq.Store(c.seq)
	if w.opts.ObserveCommit != nil {
		w.opts.ObserveCommit(len(c.ops), time.Since(c.began))
	}
	if len(c.events) > 0 && w.opts.OnCommit != nil {
		w.opts.OnCommit(c.events) // its own slice: OnCommit may keep it
	}
	for _, o := range c.ops {
		w.complete(o)
	}
}

// complete answers o's writer. A failed op's events lose their sequences,
// and a failure nobody waits for is logged.
func (w *writer) complete(o *op) {
	if o.err != nil {
		resetSeqs(o)
		if o.detached {
			w.logDetached(len(o.events), o.err)
		}
	}
	if o.kind != opPrune {
		p := &o.pending
		switch {
		case o.err != nil:
			p.err = fmt.Errorf("%s: %w", what(o.kind == opCreate, o.task), o.err)
		case o.dedup:
			p.duplicate = o.got
		case o.kind == opCreate:
			o.task.Arrival, o.task.CreatedAt = o.arrival, o.createdAt
		}
		o.task, o.events, o.got = nil, nil, nil
	}
	close(o.done)
}

// syncer makes committed transactions durable: it fsyncs the WAL once for
// everything committed since the last sync, then answers them in order. A
// failed sync fails those writers and breaks the store (what the disk
// holds is no longer known), as databases do.
//
// Between a commit and its sync, readers of the database (GetTask,
// ListTasks, Events) may already see it; nobody is told of it (writers,
// OnCommit, lastSeq) before the sync. A power loss in that window loses
// only writes whose writers were not answered (a reader may have seen them).
func (w *writer) syncer() {
	defer close(w.syncerDone)
	defer func() {
		if w.walFile != nil {
			_ = w.walFile.Close()
		}
	}()
	var pending []committed
	for c := range w.synced {
		pending = append(pending[:0], c)
	drain:
		for {
			select {
			case c, ok := <-w.synced:
				if !ok {
					break drain
				}
				pending = append(pending, c)
			default:
				break drain
			}
		}
		err := w.syncWAL()
		for _, c := range pending {
			if err != nil {
				w.failAll(c.ops, err)
				continue
			}
			w.answer(c)
		}
		clear(pending)
	}
}

func (w *writer) syncWAL() error {
	if err := w.broken.Load(); err != nil {
		return *err
	}
	var err error
	if w.walFile == nil {
		w.walFile, err = os.Open(w.wal)
	}
	if err == nil {
		err = w.walFile.Sync()
	}
	if err != nil {
		err = fmt.Errorf("syncing %s: %w", w.wal, err)
		w.log.Error("store: sync failed; refusing further writes", "err", err)
		w.broken.Store(&err)
	}
	return err
}

// abort rolls the transaction back and restores the counters: none of the
// batch was committed. When the disk is full the batch is held for a retry
// (and abort reports true); otherwise every operation in it fails.
func (w *writer) abort(batch []*op, seq, arrival uint64, cause error) (full bool) {
	// SQLite may have rolled the transaction back already (it does on
	// SQLITE_FULL, among others): there is then none to roll back, which
	// is not a failure.
	if _, err := w.st.rollback.Exec(); err != nil && !strings.Contains(err.Error(), "no transaction is active") {
		w.log.Error("store: rollback failed", "err", err)
	}
	w.seq, w.arrival = seq, arrival
	w.dropPending()
	w.stats.failed.Add(1)
	if isFull(cause) {
		err := w.enterFull(cause)
		if !w.givenUp() {
			w.hold(batch, err)
			return true
		}
		w.failAll(batch, err)
		return false
	}
	w.log.Error("store: transaction failed", "ops", len(batch), "err", cause)
	w.failAll(batch, cause)
	return false
}

func (w *writer) failAll(batch []*op, cause error) {
	for _, o := range batch {
		if o.err == nil {
			o.err = cause
		}
		o.dedup, o.got = false, nil
		w.complete(o)
	}
}

func resetSeqs(o *op) {
	if o.kind == opPrune {
		return
	}
	for i := range o.events {
		o.events[i].Seq = 0
	}
}

func (w *writer) apply(o *op, now time.Time) error {
	switch o.kind {
	case opCreate:
		return w.create(o, now)
	case opUpdate:
		return w.update(o, now)
	case opAppend:
		w.appendEvents(o.events, now)
		return nil
	case opPrune:
		return w.prune(o, now)
	}
	return fmt.Errorf("unknown operation %d", o.kind)
}

// rejection is an operation's failure that happened before it wrote
// anything, so the rest of its batch can still commit. Any other error from
// apply may have left partial writes and aborts the whole batch.
type rejection struct{ err error }

func (r *rejection) Error() string { return r.err.Error() }
func (r *rejection) Unwrap() error { return r.err }

func reject(err error) error { return &rejection{err: err} }

func (w *writer) create(o *op, now time.Time) error {
	t := o.task
	if t.IdempotencyKey != "" {
		got, err := scanTask(w.st.idemLookup.QueryRow(t.IdempotencyKey, t.Task, t.Principal, now.Add(-w.opts.IdempotencyTTL).UnixNano()))
		switch {
		case err == nil:
			o.dedup, o.got = true, got
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return reject(fmt.Errorf("idempotency lookup: %w", err))
		}
	}
	labels, err := encodeLabels(t.Labels)
	if err != nil {
		return reject(err)
	}
	created := t.CreatedAt
	if created.IsZero() {
		created = now
	}
	w.arrival++
	if _, err := w.st.insertTask.Exec(int64(w.arrival), t.ID, t.Task, t.Plan, t.Status, t.Priority, t.Attempt,
		nullString(t.IdempotencyKey), labels, created.UnixNano(), nullTime(t.FinishedAt), t.Data, t.Principal); err != nil {
		if isConstraint(err) {
			// SQLite undid the failed statement; nothing else was written.
			return reject(fmt.Errorf("%w: %s", ErrExists, t.ID))
		}
		return fmt.Errorf("insert task: %w", err)
	}
	for k, v := range t.Labels {
		if _, err := w.st.insertLabel.Exec(int64(w.arrival), k, v); err != nil {
			return fmt.Errorf("insert label %q: %w", k, err)
		}
	}
	o.arrival, o.createdAt = w.arrival, created
	w.appendEvents(o.events, now)
	return nil
}

func (w *writer) update(o *op, now time.Time) error {
	t := o.task
	res, err := w.st.updateTask.Exec(t.Status, t.Attempt, nullTime(t.FinishedAt), t.Data, t.ID)
	if err != nil {
		return fmt.Errorf("update task: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("update task: %w", err)
	} else if n == 0 {
		return reject(fmt.Errorf("%w: %s", ErrNotFound, t.ID))
	}
	w.appendEvents(o.events, now)
	return nil
}

// appendEvents gives events their sequences (and times) and
// holds them for flushEvents, which inserts the transaction's events
// together, packed into rows.
func (w *writer) appendEvents(events []Event, now time.Time) {
	for i := range events {
		e := &events[i]
		if e.Time.IsZero() {
			e.Time = now
		}
		w.seq++
		e.Seq = w.seq
		w.pending = append(w.pending, e)
	}
}

// dropPending forgets the held events (they point into the batch's ops).
func (w *writer) dropPending() {
	clear(w.pending)
	w.pending = w.pending[:0]
	clear(w.rows)
	w.rows = w.rows[:0]
	w.packed = w.packed[:0]
}

// flushEvents inserts the events appendEvents held, in sequence order: a
// row for each run of consecutive events of one task (see eventrows.go),
// many rows per statement.
func (w *writer) flushEvents() error {
	defer w.dropPending()
	w.rows, w.packed = packRuns(w.rows[:0], w.packed[:0], w.pending)
	if cap(w.packed) > 4<<20 {
		// One huge transaction should not keep its buffer for ever.
		defer func() { w.packed = nil }()
	}
	rows := w.rows
	for len(rows) >= rowsPerInsert {
		args := w.eventArgs[:0]
		for i := range rows[:rowsPerInsert] {
			args = w.rowArgs(args, &rows[i])
		}
		_, err := w.st.insertRows.Exec(args...)
		clear(args)
		if err != nil {
			return fmt.Errorf("insert events: %w", err)
		}
		rows = rows[rowsPerInsert:]
	}
	for i := range rows {
		args := w.rowArgs(w.eventArgs[:0], &rows[i])
		_, err := w.st.insertRow.Exec(args...)
		clear(args)
		if err != nil {
			return fmt.Errorf("insert events: %w", err)
		}
	}
	return nil
}

func (w *writer) rowArgs(args []any, r *eventRow) []any {
	return append(args, int64(r.last), int64(r.first), r.taskID, r.time, r.hooks, w.packed[r.start:r.end])
}

func isConstraint(err error) bool {
	var se interface{ Code() int }
	return errors.As(err, &se) && se.Code()&0xff == 19 // SQLITE_CONSTRAINT
}
