package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"syscall"
	"time"
)

// A full disk is an episode the store lives through, not a failure it
// passes on. While it lasts:
//   - new tasks are refused with ErrFull (they were never accepted, so the
//     client can hear "disk full" and try later or elsewhere);
//   - every write of a task already accepted (status changes, the terminal
//     record, progress events) is held, in queue order, and tried again
//     every Options.retryEvery with whatever was queued behind it, so the
//     in-memory lifecycle of each accepted task carries on to a terminal
//     status recorded in the store once there is room, with no restart;
//   - sequences are given at commit, so the retried events keep the log's
//     guarantees (global, gap-free, strictly increasing, in queue order).
//
// The episode is logged once when it starts (at most once a minute across
// episodes), reminded of once a minute while it lasts, and once when it
// ends; /readyz reports it through Writable.

const (
	// heldCap bounds the writes held for space: beyond it the queue stays
	// where it is, and writers wait for queue space like any backpressure.
	heldCap = queueLen
	// spaceReserve is the free space the filesystem must report before
	// new tasks are accepted again: a retry that squeezed into the last
	// few free pages does not end the episode.
	spaceReserve = 512 << 10
	// fullLogEvery rate-limits the disk-full log lines.
	fullLogEvery = time.Minute
	// tightMargin is the free space below which the writer checkpoints
	// after every commit (see tight), and tightCheckEvery how often it
	// asks the filesystem. The WAL is otherwise checkpointed only once it
	// reaches 1000 pages (4 MiB), and checkpoints need room to grow the
	// database file: on a disk with less room than that the WAL would
	// grow until the disk is full and then could never be drained.
	tightMargin     = 16 << 20
	tightCheckEvery = time.Second
)

// spaceState is the writer goroutine's own account of a disk-full episode.
type spaceState struct {
	held      []*op               // writes to retry, in queue order
	lost      map[string]struct{} // tasks whose creation was refused in the episode
	since     time.Time           // when the episode began
	logged    bool                // its start was logged (so its end is too)
	lastLog   time.Time           // the last disk-full line, any episode
	refusedAt uint64              // w.refused when the episode began
	tight     bool                // little room left: checkpoint after every commit
	checkedAt time.Time           // when tight was last decided
}

// tight keeps the WAL short while the filesystem has little room: after a
// commit it checkpoints, so the WAL's space is reused instead of grown,
// whenever the last look (at most tightCheckEvery old) found less than
// tightMargin free. Costly (a checkpoint per commit), but only on a disk
// that is nearly full. Writer goroutine only.
func (w *writer) tight() {
	if now := time.Now(); now.Sub(w.space.checkedAt) >= tightCheckEvery {
		w.space.checkedAt = now
		w.space.tight = w.opts.freeSpace(filepath.Dir(w.path)) < tightMargin
	}
	if w.space.tight {
		w.checkpoint()
	}
}

// SQLite result codes that mean no space: SQLITE_FULL (primary), and
// SQLITE_IOERR_SHMSIZE (extended), which is how a WAL index that cannot
// grow on a full disk is reported.
const (
	sqliteFull         = 13
	sqliteIOErrShmSize = 10 | 19<<8
)

func isFull(err error) bool {
	var se interface{ Code() int }
	if errors.As(err, &se) && (se.Code()&0xff == sqliteFull || se.Code() == sqliteIOErrShmSize) {
		return true
	}
	return errors.Is(err, syscall.ENOSPC)
}

// refuse is the fast refusal of a write before it is queued: anything once
// the database file is gone, and new tasks while the disk is full.
func (w *writer) refuse(o *op) error {
	if err := w.gone.Load(); err != nil {
		return *err
	}
	if o.kind == opCreate {
		if err := w.full.Load(); err != nil {
			w.refused.Add(1)
			return *err
		}
	}
	return nil
}

// enterFull starts a disk-full episode (if one is not on) and returns the
// error new tasks are refused with. Writer goroutine only.
func (w *writer) enterFull(cause error) error {
	if err := w.full.Load(); err != nil {
		return *err
	}
	dir := filepath.Dir(w.path)
	err := fmt.Errorf("%w: no space left on the filesystem holding %s; new tasks are refused until space is freed there (tasks already accepted carry on once it is)", ErrFull, dir)
	w.full.Store(&err)
	now := time.Now()
	w.space.since, w.space.refusedAt = now, w.refused.Load()
	w.space.logged = now.Sub(w.space.lastLog) >= fullLogEvery || w.space.lastLog.IsZero()
	if w.space.logged {
		w.space.lastLog = now
		w.log.Error("store: disk full; refusing new tasks, holding the writes of accepted ones until space returns",
			"data_dir", dir, "free_bytes", w.opts.freeSpace(dir), "cause", cause)
	}
	return err
}

// hold keeps the writes of a batch that failed for lack of space for the
// next retry, in order. What cannot wait is failed now: new tasks (refused:
// nobody was told they were accepted), pruning (it runs again), and
// anything once the store has given up holding. Writer goroutine only.
func (w *writer) hold(ops []*op, cause error) {
	for _, o := range ops {
		switch {
		case o.err != nil: // rejected on its own account (a duplicate ID)
			w.complete(o)
		case o.kind == opCreate:
			if w.space.lost == nil {
				w.space.lost = map[string]struct{}{}
			}
			w.space.lost[o.task.ID] = struct{}{}
			o.err, o.dedup, o.got = cause, false, nil
			w.refused.Add(1)
			w.complete(o)
		case o.kind == opPrune:
			o.err = cause
			w.complete(o)
		case o.kind == opUpdate && w.lostTask(o.task.ID):
			// Its creation was refused just now: there is no row to update.
			o.err = fmt.Errorf("%w: %s", ErrNotFound, o.task.ID)
			w.complete(o)
		case w.givenUp():
			o.err = cause
			w.complete(o)
		default:
			resetSeqs(o) // given again at the retry's commit
			w.space.held = append(w.space.held, o)
		}
	}
}

func (w *writer) lostTask(id string) bool {
	_, ok := w.space.lost[id]
	return ok
}

// whileFull is one turn of the writer during a disk-full episode: wait a
// retry interval, then try the held writes again followed by whatever was
// queued meanwhile, in order. The episode ends once nothing is held and the
// filesystem reports room again.
func (w *writer) whileFull() {
	t := time.NewTimer(w.opts.retryEvery)
	select {
	case <-t.C:
	case <-w.giveUp:
	case <-w.stop:
	}
	t.Stop()
	drained := w.checkpoint()

	batch := w.space.held
	w.space.held = nil
gather:
	for len(batch) < heldCap {
		select {
		case o := <-w.queue:
			batch = append(batch, o)
		default:
			break gather
		}
	}
	stillFull := false
	for i := 0; i < len(batch); i += maxBatch {
		chunk := batch[i:min(i+maxBatch, len(batch))]
		if w.commitBatch(chunk) {
			// Nothing after a held write may commit before it.
			w.hold(batch[i+len(chunk):], *w.full.Load())
			stillFull = true
			break
		}
	}
	clear(batch)
	if w.givenUp() {
		// Shutdown: what is still held fails (a write held just before
		// giveUp closed, too); the next start recovers its task.
		for _, o := range w.space.held {
			o.err = *w.full.Load()
			w.complete(o)
		}
		w.space.held = nil
		return
	}
	if !stillFull && drained && len(w.space.held) == 0 && w.opts.freeSpace(filepath.Dir(w.path)) >= spaceReserve {
		w.leaveFull()
		return
	}
	if now := time.Now(); now.Sub(w.space.lastLog) >= fullLogEvery {
		w.space.lastLog = now
		w.log.Error("store: disk still full; new tasks are refused",
			"data_dir", filepath.Dir(w.path), "for", now.Sub(w.space.since).Round(time.Second),
			"held_writes", len(w.space.held), "refused_tasks", w.refused.Load()-w.space.refusedAt)
	}
}

// checkpoint moves the WAL into the database file and reports whether all
// of it went. Only checkpoints do that, and they fail too while the file
// cannot grow, so during an episode the WAL only grows: once there is some
// room, a complete checkpoint lets later commits reuse the WAL's space
// instead of growing it into the next full disk. The episode ends only
// after one, or new tasks would fill the room just freed while the WAL
// still could not be drained. PASSIVE: it waits for no reader (one still
// reading old frames leaves it incomplete, and the next turn tries again).
func (w *writer) checkpoint() bool {
	var busy, frames, done int
	err := w.conn.QueryRowContext(context.Background(), "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &done)
	return err == nil && busy == 0 && frames == done
}

// leaveFull ends the episode: new tasks are accepted again.
func (w *writer) leaveFull() {
	w.full.Store(nil)
	w.space.tight, w.space.checkedAt = true, time.Now() // room is short: keep the WAL short a while
	if w.space.logged {
		w.log.Info("store: disk space is back; held writes committed, new tasks accepted again",
			"data_dir", filepath.Dir(w.path), "after", time.Since(w.space.since).Round(time.Millisecond),
			"refused_tasks", w.refused.Load()-w.space.refusedAt)
	}
	w.space.lost = nil
}

// abandon stops holding writes for space: those held fail now, and later
// ones fail at once while the disk stays full. For shutdown, whose tasks
// would otherwise wait for space forever; the next start recovers them from
// what the store holds.
func (w *writer) abandon() { w.giveUpOnce.Do(func() { close(w.giveUp) }) }

func (w *writer) givenUp() bool {
	select {
	case <-w.giveUp:
		return true
	default:
		return false
	}
}

// freeBytes is the space unprivileged writers have left on the filesystem
// holding dir; when it cannot be told, as much as could be wanted.
func freeBytes(dir string) uint64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return ^uint64(0)
	}
	return st.Bavail * uint64(st.Bsize)
}
