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
	// ErrExists: CreateTask with an ID that is already stored.
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
	OnCommit func([]Event)
	// ObserveCommit, when set, hears of every SQLite group commit: how many
	// operations it carried and how long it took, sync included.
	ObserveCommit func(ops int, d time.Duration)
	// Now is the clock, for tests. Default time.Now.
	Now func() time.Time
	// Encode turns an event written without Data into its bytes (see
	// Event). Without it, events must be written with Data.
	Encode func(*Event) []byte
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

// refuseKeyed refuses a queued creation of a task with an idempotency key:
// whether it is new is known only once the store has looked for the key,
// which CreateTask waits for. Nil for any other task.
func refuseKeyed(t *Task) *Pending {
	if t == nil || t.IdempotencyKey == "" {
		return nil
	}
	return Finished(fmt.Errorf("store: create task %s: %w: a task with an idempotency key needs CreateTask", t.ID, ErrInvalid))
}

// encode fills e.Data from e.Fields when it is missing.
func (o *Options) encode(e *Event) {
	if e.Data == nil && o.Encode != nil {
		e.Data = o.Encode(e)
	}
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
// Principal, CreatedAt and Arrival are fixed when the task is created;
// UpdateTask leaves them as they were (so their indexes are never
// rewritten).
type Task struct {
	ID, Task, Plan            string
	Status, Priority, Attempt int32
	IdempotencyKey            string
	Labels                    map[string]string
	Arrival                   uint64    // global arrival order, assigned by CreateTask
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
// Data is the encoded event. A writer may leave it nil and describe the
// event with Fields instead; the store encodes it (Options.Encode) only when
// bytes are needed: when it is persisted, handed to OnCommit or read back.
// Events read from the store always have Data. The store keeps the slices it
// is given (Data, Fields.Snapshot): callers must not modify them afterwards.
type Event struct {
	Seq    uint64
	TaskID string
	Type   string
	Hook   bool
	Time   time.Time
	Data   []byte
	Fields EventFields
}

// EventFields is an event not yet encoded. The store does not interpret it;
// Options.Encode does.
type EventFields struct {
	Status, Attempt       int32
	Step, Message, Stream string
	Snapshot              []byte // the task as encoded at a status change; shared, read-only
	// On step.retrying: the delay before the next attempt, and the step's
	// max attempts.
	RetryDelay  time.Duration
	MaxAttempts int32
}

// Pending is a queued write.
type Pending struct {
	done <-chan struct{}
	err  error // set before done is closed
}

// closed is the done channel of writes that are over when queued.
var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Finished returns the Pending of a write that is already over with err.
func Finished(err error) *Pending { return &Pending{done: closed, err: err} }

// NewPending returns a Pending and the function that completes it with the
// write's outcome (once): for DB implementations outside this package.
func NewPending() (p *Pending, complete func(error)) {
	done := make(chan struct{})
	p = &Pending{done: done}
	var once sync.Once
	return p, func(err error) {
		once.Do(func() {
			p.err = err
			close(done)
		})
	}
}

// Wait returns the write's outcome once it is committed (or failed).
func (p *Pending) Wait() error {
	<-p.done
	return p.err
}

// Committed reports, without waiting, whether the write is over.
func (p *Pending) Committed() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
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

// DB is what the rest of Aura uses: the SQLite store (*Store) and the
// in-memory twin (*Memory) both implement it.
type DB interface {
	// CreateTask inserts t and appends events in one transaction and
	// returns once that is committed (and synced, per Options.Sync). If
	// t.IdempotencyKey is set and a task with that key, the same Principal
	// and the same Task was created within the idempotency TTL, it returns
	// that task with dedup=true and writes
	// nothing. Otherwise got is t itself with Arrival (and a zero CreatedAt)
	// filled in. On success the Seq (and a zero Time) of each element of
	// events is filled in. A task ID already stored gives ErrExists.
	//
	// Every write method waits for its commit once the write is queued;
	// ctx only bounds the wait for queue space. On a full disk the SQLite
	// store refuses a creation with ErrFull and holds every other write
	// until there is room (so that wait can be long); once its database
	// file is gone it refuses every write with ErrGone.
	CreateTask(ctx context.Context, t *Task, events []Event) (got *Task, dedup bool, err error)
	// CreateTaskQueued is CreateTask in two halves, for a task without an
	// idempotency key (there is no earlier task to find): it returns once
	// the write is queued, so it commits before any write queued after it
	// returns, and the Pending tells when it is committed and how it went.
	// The caller must not read t until then.
	CreateTaskQueued(ctx context.Context, t *Task, events []Event) *Pending
	// UpdateTask rewrites the task's mutable fields (Status, Attempt,
	// FinishedAt, Data) and appends events atomically.
	// An unknown ID gives ErrNotFound and writes nothing.
	UpdateTask(ctx context.Context, t *Task, events []Event) error
	// UpdateTaskQueued is UpdateTask in two halves: it returns once the
	// write is queued (so it commits before any write queued after it
	// returns); the Pending tells when it is committed and how it went.
	UpdateTaskQueued(ctx context.Context, t *Task, events []Event) *Pending
	// AppendEvents appends events on their own, atomically.
	AppendEvents(ctx context.Context, events []Event) error
	// AppendEventsAsync queues events behind every write queued before
	// them without waiting for the commit (progress events whose loss in a
	// crash changes no task's fate); a failure is logged.
	AppendEventsAsync(events []Event)
	// GetTask returns a copy of the stored task, or ErrNotFound.
	GetTask(ctx context.Context, id string) (*Task, error)
	// ListTasks returns tasks newest first (by arrival) and a token for the
	// next page ("" when there is none). Pages are stable under inserts.
	ListTasks(ctx context.Context, q Query) ([]*Task, string, error)
	// TasksWithStatus returns the tasks in any of statuses, in arrival order.
	TasksWithStatus(ctx context.Context, statuses ...int32) ([]*Task, error)
	// Events returns up to limit (<= 0: 1000; at most 10000) events with
	// Seq > after that pass f, in sequence order.
	Events(ctx context.Context, after uint64, f EventFilter, limit int) ([]Event, error)
	// EventBounds returns the oldest retained and the last committed
	// sequence. With no retained events oldest is last+1. Replaying after N
	// is gap-free exactly when N+1 >= oldest.
	EventBounds(ctx context.Context) (oldest, last uint64, err error)
	// Prune deletes finished tasks and events older than the retention now
	// (it also runs in the background) and returns how many rows went.
	Prune(ctx context.Context) (int, error)
	Close() error
}

var (
	_ DB = (*Store)(nil)
	_ DB = (*Memory)(nil)
)

func validateTask(t *Task) error {
	if t == nil {
		return fmt.Errorf("%w: nil task", ErrInvalid)
	}
	if t.ID == "" {
		return fmt.Errorf("%w: task without ID", ErrInvalid)
	}
	return nil
}
