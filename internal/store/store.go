package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Errors callers must tell apart. They are returned wrapped; use errors.Is.
var (
	// ErrNotFound: no task with that ID.
	ErrNotFound = errors.New("store: not found")
	// ErrExists: a Batch.Create with an ID that is already stored.
	ErrExists = errors.New("store: task already exists")
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("store: closed")
	// ErrCorrupt: the database file is not a usable SQLite database.
	ErrCorrupt = errors.New("store: database file is corrupt or not a database")
	// ErrLocked: another process holds the data directory.
	ErrLocked = errors.New("store: data directory is in use by another process")
	// ErrSchemaTooNew: the database was written by a newer Aura.
	ErrSchemaTooNew = errors.New("store: database schema is newer than this binary")
	// ErrInvalid: a malformed argument (selector, page token, task).
	ErrInvalid = errors.New("store: invalid argument")
	// ErrFull: the filesystem holding the database has no space left. New
	// tasks are refused with it while that lasts; writes of tasks already
	// accepted wait and are retried, in order, until there is room again.
	ErrFull = errors.New("store: disk full")
	// ErrGone: the database file was deleted or replaced under the running
	// store. Every later write is refused with it: what it would write
	// would be lost at the next start. Only a restart clears it.
	ErrGone = errors.New("store: database file deleted or replaced")
)

// SyncMode says how hard a commit is pushed to disk before it is acknowledged.
type SyncMode int

const (
	// SyncAlways fsyncs the WAL after every group commit, before any writer
	// in it is answered (one fsync may cover several commits made while
	// the previous one was syncing).
	// An acknowledged write survives power loss.
	SyncAlways SyncMode = iota
	// SyncBatch leaves syncing to checkpoints (synchronous=NORMAL). An
	// acknowledged write survives a crash of the process, not of the machine.
	SyncBatch
	// SyncOff never syncs (synchronous=OFF).
	SyncOff
)

// ParseSyncMode parses "always", "batch" or "off".
func ParseSyncMode(s string) (SyncMode, error) {
	switch s {
	case "always", "":
		return SyncAlways, nil
	case "batch":
		return SyncBatch, nil
	case "off":
		return SyncOff, nil
	}
	return 0, fmt.Errorf("%w: sync mode %q (want always, batch or off)", ErrInvalid, s)
}

func (m SyncMode) String() string {
	switch m {
	case SyncAlways:
		return "always"
	case SyncBatch:
		return "batch"
	case SyncOff:
		return "off"
	}
	return fmt.Sprintf("SyncMode(%d)", int(m))
}

// pragma is SQLite's synchronous setting for the mode. SyncAlways commits
// with NORMAL too (no sync in the commit), and the writer's syncer fsyncs
// the WAL before anybody hears of the commit; see writerParams.wal.
func (m SyncMode) pragma() string {
	if m == SyncOff {
		return "OFF"
	}
	return "NORMAL"
}

// Options configure a store. The zero value is usable.
type Options struct {
	Sync SyncMode
	// IdempotencyTTL is how long an idempotency key deduplicates. Default 24h.
	IdempotencyTTL time.Duration
	// Retain is how long finished tasks and events are kept. Default 7
	// days. A task goes once it finished more than Retain ago (and was
	// created more than IdempotencyTTL ago, so its key still deduplicates).
	// Events go from the front of the log once older than Retain, whatever
	// their task's state, so the retained log never has holes.
	Retain time.Duration
	// PruneInterval is how often a Memory prunes during its writes.
	// Default 1m. (A Store is pruned by a Pruner, which has its own.)
	PruneInterval time.Duration
	Logger        *slog.Logger
	// OnCommit is called after each durable commit with the events just
	// committed (Seq set), in sequence order, from one goroutine at a time,
	// before the writers of those events are answered. It must be fast and
	// must not write to the store (that would deadlock); reading is fine.
	// It may keep the slice; the events' Data is shared and read-only.
	OnCommit func([]Event)
	// ObserveCommit, when set, hears of every SQLite group commit: how many
	// operations it carried and how long it took, sync included.
	ObserveCommit func(ops int, d time.Duration)
	// Now is the clock, for tests. Default time.Now.
	Now func() time.Time
	// CheckTimeout bounds the integrity check (PRAGMA quick_check) Open
	// runs on an existing database. Default 30s; a check that does not
	// finish in time is logged and the store opens anyway, so a huge
	// database cannot keep aurad from starting. Negative: no check.
	CheckTimeout time.Duration

	// retryEvery is how often writes held for disk space are tried again.
	// Default 250ms; tests shorten it.
	retryEvery time.Duration
	// freeSpace tells the free bytes of the filesystem holding a directory.
	// Default freeBytes (statfs); tests fake a nearly full disk with it.
	freeSpace func(dir string) uint64
}

func (o Options) withDefaults() Options {
	if o.IdempotencyTTL <= 0 {
		o.IdempotencyTTL = 24 * time.Hour
	}
	if o.Retain <= 0 {
		o.Retain = 7 * 24 * time.Hour
	}
	if o.PruneInterval <= 0 {
		o.PruneInterval = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.CheckTimeout == 0 {
		o.CheckTimeout = 30 * time.Second
	}
	if o.retryEvery <= 0 {
		o.retryEvery = 250 * time.Millisecond
	}
	if o.freeSpace == nil {
		o.freeSpace = freeBytes
	}
	return o
}

// Task is one stored task. Task, Plan, Priority, Labels, IdempotencyKey,
// Principal, CreatedAt and Arrival are fixed when the task is created; an
// update leaves them as they were (so their indexes are never rewritten).
type Task struct {
	ID, Task, Plan            string
	Status, Priority, Attempt int32
	IdempotencyKey            string
	Labels                    map[string]string
	Arrival                   uint64    // global arrival order, assigned when the task is created
	CreatedAt, FinishedAt     time.Time // FinishedAt zero: not finished
	// Data is the caller's opaque snapshot. The store keeps the slice it
	// is given (callers must not modify it afterwards) and hands out copies.
	Data []byte
	// Principal is who submitted the task. An idempotency key deduplicates
	// only against tasks of the same Principal and Task: one caller's key
	// never finds another caller's task.
	Principal string
}

func (t *Task) clone() *Task {
	c := *t
	if t.Labels != nil {
		c.Labels = make(map[string]string, len(t.Labels))
		for k, v := range t.Labels {
			c.Labels[k] = v
		}
	}
	if t.Data != nil {
		c.Data = append([]byte(nil), t.Data...)
	}
	return &c
}

// Event is one entry of the global event log. Seq is assigned by the store:
// global, gap-free and strictly increasing. A zero Time is set to the
// store's clock when the event is written.
//
// Data is the event in its wire form, encoded by the writer; the store
// keeps it as it is given and never looks inside. The store keeps the
// slice (callers must not modify it afterwards); events read back carry
// their own copies, events handed to OnCommit share it.
type Event struct {
	Seq    uint64
	TaskID string
	Type   string
	Hook   bool
	Time   time.Time
	Data   []byte
}

// Batch is one write: at most one task row, created or updated, and events
// appended after it. A batch is atomic: all of it is stored or none of it.
type Batch struct {
	// Create inserts a new task. When its IdempotencyKey is set and a task
	// with the same key, Principal and Task was created within the
	// idempotency TTL, nothing of the batch is written and the Pending's
	// Duplicate returns that earlier task. An ID already stored fails the
	// batch with ErrExists. On commit Arrival, and a zero CreatedAt, are
	// filled in.
	Create *Task
	// Update rewrites a stored task's mutable fields (Status, Attempt,
	// FinishedAt, Data). An unknown ID fails the batch with ErrNotFound.
	Update *Task
	// Events are appended to the log in slice order, after every event of
	// any batch that committed before this one. On commit each Seq, and
	// each zero Time, is filled in.
	Events []Event
	// Detached says that nobody will wait for the outcome (progress events
	// whose loss in a crash changes no task's fate): the store logs a
	// failure itself, except ErrFull and ErrGone, which it reports once on
	// their own rather than once per write.
	Detached bool
}

func (b *Batch) validate() error {
	if b.Create != nil && b.Update != nil {
		return fmt.Errorf("%w: a batch creates or updates one task, not both (%s, %s)", ErrInvalid, b.Create.ID, b.Update.ID)
	}
	if t := b.task(); t != nil && t.ID == "" {
		return fmt.Errorf("%w: task without ID", ErrInvalid)
	}
	for i := range b.Events {
		// The packed log gives a type two bytes of length (see eventrows.go).
		if n := len(b.Events[i].Type); n > maxEventType {
			return fmt.Errorf("%w: event %d: type of %d bytes (at most %d)", ErrInvalid, i, n, maxEventType)
		}
	}
	return nil
}

// maxEventType is the longest event type, in bytes.
const maxEventType = 1<<16 - 1

// task is the batch's task row, if it has one.
func (b *Batch) task() *Task {
	if b.Create != nil {
		return b.Create
	}
	return b.Update
}

// what names the batch in errors: "store: create task x", "store: append
// events".
func (b *Batch) what() string { return what(b.Create != nil, b.task()) }

func what(create bool, t *Task) string {
	switch {
	case t == nil:
		return "store: append events"
	case create:
		return "store: create task " + t.ID
	}
	return "store: update task " + t.ID
}

// Pending is the outcome of a Write, ready once the write is committed (and
// synced, per Options.Sync) or has failed.
type Pending struct {
	done <-chan struct{}
	// Set before done is closed.
	err       error
	duplicate *Task
}

// closed is the done channel of writes that are over when queued.
var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// okPending is the Pending of every write over and done when queued: it is
// never written to, so one serves them all.
var okPending = &Pending{done: closed}

// Finished returns the Pending of a write that is already over with err.
func Finished(err error) *Pending {
	if err == nil {
		return okPending
	}
	return &Pending{done: closed, err: err}
}

// NewPending returns a Pending and the function that completes it with the
// write's outcome (once): for DB implementations outside this package, and
// wrappers of one. duplicate is the earlier task a Create's idempotency key
// found, or nil.
func NewPending() (p *Pending, complete func(duplicate *Task, err error)) {
	done := make(chan struct{})
	p = &Pending{done: done}
	var once sync.Once
	return p, func(duplicate *Task, err error) {
		once.Do(func() {
			p.duplicate, p.err = duplicate, err
			close(done)
		})
	}
}

// Wait returns the write's outcome once it is committed (or failed).
func (p *Pending) Wait() error {
	<-p.done
	return p.err
}

// Done reports, without waiting, whether the write is over.
func (p *Pending) Done() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Duplicate waits for the write and returns the earlier task a
// Batch.Create's idempotency key found (a copy; nothing was written), or
// nil when the write stored its own task or failed.
func (p *Pending) Duplicate() *Task {
	<-p.done
	return p.duplicate
}

// Query selects tasks for ListTasks.
type Query struct {
	Status    int32 // 0: any
	Plan      string
	Selector  []LabelReq
	PageSize  int    // default 100, at most 1000
	PageToken string // from a previous ListTasks; empty for the first page
}

// EventFilter selects events for Events. Zero values select everything.
type EventFilter struct {
	TaskID    string
	HooksOnly bool
	Types     []string
}

const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

func pageSize(n int) int {
	switch {
	case n <= 0:
		return defaultPageSize
	case n > maxPageSize:
		return maxPageSize
	}
	return n
}

// Tasks is the task table: one row per task, found by ID, listed newest
// first, scanned by status at start (recovery). Rows are written only
// through DB.Write; a read sees every write whose Pending is done, and may
// see one still in flight.
type Tasks interface {
	// GetTask returns a copy of the stored task, or ErrNotFound.
	GetTask(ctx context.Context, id string) (*Task, error)
	// ListTasks returns tasks newest first (by arrival) and a token for the
	// next page ("" when there is none). Pages are stable under inserts:
	// a task created after the first page was read never appears on a
	// later one. A malformed token or selector gives ErrInvalid.
	ListTasks(ctx context.Context, q Query) ([]*Task, string, error)
	// TasksWithStatus returns the tasks in any of statuses, in arrival
	// order (oldest first).
	TasksWithStatus(ctx context.Context, statuses ...int32) ([]*Task, error)
}

// EventLog is the global event log, read side: every event has a sequence
// number, assigned at commit, one more than the previous committed event's
// (no gaps, no reuse, even across restarts and failed writes). Events are
// appended only through DB.Write and removed only from the front, by
// retention (Options.Retain), so what is retained is always one unbroken
// run of sequences.
type EventLog interface {
	// Events returns up to limit (<= 0: 1000; at most 10000) events with
	// Seq > after that pass f, in sequence order. Only committed events are
	// returned, never one of a write that later fails.
	Events(ctx context.Context, after uint64, f EventFilter, limit int) ([]Event, error)
	// EventBounds returns the oldest retained and the last committed
	// sequence. With no retained events oldest is last+1. Replaying after N
	// is gap-free exactly when N+1 >= oldest.
	EventBounds(ctx context.Context) (oldest, last uint64, err error)
}

// DB is what the rest of Aura uses: the SQLite store (*Store) and the
// in-memory twin (*Memory) both implement it. Writes go through Write
// alone, so that a task row and the events that tell of it are stored
// together or not at all.
type DB interface {
	Tasks
	EventLog
	// Write stores b atomically and returns once it is queued; the Pending
	// tells when it is committed and how it went.
	//
	// Ordering: a write commits after every write whose Write call
	// returned before this one was made, and its events take the next
	// sequences after theirs. So a caller may queue a task's creation and
	// then its update without waiting between them, and the update cannot
	// overtake the creation.
	//
	// Durability: once Wait returns nil the write survives a crash of the
	// process (and, with SyncAlways, of the machine), and OnCommit has been
	// called with its events. Not before: a write nobody waited for may be
	// lost in a crash, and only then.
	//
	// Failure: a failed write leaves nothing behind (no row, no event, no
	// sequence used; the events' Seq are zero again). A write refused on
	// its own account (ErrExists, ErrNotFound, ErrInvalid) fails alone and
	// the writes queued around it go on; a failure of the storage itself
	// (a failed commit or sync) may fail every write committed with it.
	// The error says which task it was about and wraps ErrExists,
	// ErrNotFound, ErrInvalid, ErrClosed, ErrFull or ErrGone (or ctx's
	// error) where one applies. On a full disk the SQLite store refuses a
	// Create at once with ErrFull and holds every other write until there
	// is room (so Wait can be long); once its database file is gone it
	// refuses every write with ErrGone.
	//
	// Dedup: a Create with an idempotency key that finds an earlier task
	// (see Batch.Create) succeeds without writing anything; Duplicate tells
	// which. Whether it will is known only at commit, so a caller that
	// must know waits before it queues anything that depends on it.
	//
	// ctx bounds only the wait for queue space; once Write has returned
	// the write is carried out whatever becomes of ctx. The store owns the
	// batch's task and events until the Pending is done: the caller must
	// not read or modify them before then.
	Write(ctx context.Context, b Batch) *Pending
	// Prune deletes finished tasks and events older than the retention now
	// (it also runs in the background) and returns how many rows went.
	// A task goes once it finished more than Retain ago and was created
	// more than IdempotencyTTL ago; events go from the front of the log.
	Prune(ctx context.Context) (int, error)
	// Close commits what is queued and releases the store. Later calls
	// return the first result; every other method then fails with
	// ErrClosed.
	Close() error
}

var (
	_ DB = (*Store)(nil)
	_ DB = (*Memory)(nil)
)
