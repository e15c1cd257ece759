package store

import (
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
)

// spaceState is the writer goroutine's own account of a disk-full episode.
type spaceState struct {
	held      []*op               // writes to retry, in queue order
	lost      map[string]struct{} // tasks whose creation was refused in the episode
	since     time.Time           // when the episode began
	logged    bool                // its start was logged (so its end is too)
	lastLog   time.Time           // the last disk-full line, any episode
	refusedAt uint64              // w.refused when the episode began
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
			"data_dir", dir, "free_bytes", freeBytes(dir), "cause", cause)
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
	if !stillFull && len(w.space.held) == 0 && freeBytes(filepath.Dir(w.path)) >= spaceReserve {
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

// leaveFull ends the episode: new tasks are accepted again.
func (w *writer) leaveFull() {
	w.full.Store(nil)
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
