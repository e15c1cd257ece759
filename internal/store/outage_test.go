package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aura-dev/aura/internal/testbin"
)

// setMaxPages caps the database at n pages: SQLite then fails a write that
// needs more with SQLITE_FULL, exactly as on a full disk. The writer's
// connection is the one that writes, so the cap goes there.
func setMaxPages(t *testing.T, s *Store, n int64) {
	t.Helper()
	if _, err := s.w.conn.ExecContext(context.Background(), fmt.Sprintf("PRAGMA max_page_count = %d", n)); err != nil {
		t.Fatal(err)
	}
}

func pageCount(t *testing.T, s *Store) int64 {
	t.Helper()
	var n int64
	if err := s.w.conn.QueryRowContext(context.Background(), "PRAGMA page_count").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A full disk refuses new tasks with ErrFull, holds the writes of tasks
// already accepted (in order, events included) and commits them once
// there is room again, with gap-free sequences; it is logged once, and
// the rollback SQLite already did is not reported as a failure.
func TestDiskFullHoldsAcceptedWritesUntilSpaceReturns(t *testing.T) {
	logs := &testbin.SyncBuffer{}
	s := openSQLite(t, t.TempDir(), Options{Sync: SyncOff, retryEvery: 5 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	ctx := context.Background()
	accepted := newTask("accepted")
	if _, _, err := createTask(ctx, s, accepted, queued(accepted.ID)); err != nil {
		t.Fatal(err)
	}
	setMaxPages(t, s, pageCount(t, s))

	// Every write below needs new pages (8 KiB events overflow a page).
	big := func(typ string) Event {
		return Event{TaskID: accepted.ID, Type: typ, Data: bytes.Repeat([]byte{'x'}, 8<<10)}
	}
	for i := range 5 {
		appendDetached(s, []Event{big(fmt.Sprintf("step.%d", i))})
	}
	running := *accepted
	running.Status = statusRunning
	// Queued now, so that it is held ahead of the terminal write below.
	runningWrite := updateQueued(ctx, s, &running, []Event{big("task.running")})
	updated := make(chan error, 1)
	go func() { updated <- runningWrite.Wait() }()

	testbin.WaitFor(t, "the store to report the full disk", 30*time.Second, func() bool { return errors.Is(s.Writable(), ErrFull) })
	if _, _, err := createTask(ctx, s, newTask("refused"), queued("refused")); !errors.Is(err, ErrFull) {
		t.Fatalf("CreateTask on a full disk: %v, want ErrFull", err)
	}
	if p := createQueued(ctx, s, newTask("refused2"), queued("refused2")); !errors.Is(p.Wait(), ErrFull) {
		t.Fatalf("CreateTaskQueued on a full disk: %v, want ErrFull", p.Wait())
	}
	select {
	case err := <-updated:
		t.Fatalf("an accepted task's write returned while the disk was full: %v; it must wait for space", err)
	default:
	}
	finished := running
	finished.Status, finished.FinishedAt = statusSucceded, time.Now()
	done := updateQueued(ctx, s, &finished, []Event{big("task.finished")})

	setMaxPages(t, s, 1<<30) // space is back
	if err := <-updated; err != nil {
		t.Fatalf("held write after space returned: %v", err)
	}
	if err := done.Wait(); err != nil {
		t.Fatalf("held terminal write after space returned: %v", err)
	}
	testbin.WaitFor(t, "the store to accept writes again", 30*time.Second, func() bool { return s.Writable() == nil })
	if _, _, err := createTask(ctx, s, newTask("after"), queued("after")); err != nil {
		t.Fatalf("CreateTask once space is back: %v", err)
	}

	got, err := s.GetTask(ctx, accepted.ID)
	if err != nil || got.Status != statusSucceded {
		t.Fatalf("accepted task after the episode: %+v, %v; want it recorded SUCCEEDED", got, err)
	}
	evs, err := s.Events(ctx, 0, EventFilter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"task.queued", "step.0", "step.1", "step.2", "step.3", "step.4", "task.running", "task.finished", "task.queued"}
	var types []string
	for i, e := range evs {
		types = append(types, e.Type)
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d (%s) has seq %d: the held writes left a gap or went out of order", i, e.Type, e.Seq)
		}
	}
	if strings.Join(types, ",") != strings.Join(want, ",") {
		t.Fatalf("events %v, want %v (in queue order)", types, want)
	}
	for _, id := range []string{"refused", "refused2"} {
		if _, err := s.GetTask(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Fatalf("refused task %s was stored: %v", id, err)
		}
	}
	out := logs.String()
	if n := strings.Count(out, "level=ERROR"); n != 1 || !strings.Contains(out, "disk full") {
		t.Fatalf("want exactly one ERROR line, about the full disk; log:\n%s", out)
	}
	if strings.Contains(out, "rollback failed") {
		t.Fatalf("the rollback SQLite did itself was reported as a failure:\n%s", out)
	}
	if !strings.Contains(out, "disk space is back") {
		t.Fatalf("the end of the episode was not logged:\n%s", out)
	}
}

// A task whose creation was refused for lack of space never existed: a
// write of it queued behind the creation fails (not found) instead of
// waiting for space that is not coming.
func TestDiskFullRefusedCreationDoesNotHoldItsLaterWrites(t *testing.T) {
	s := openSQLite(t, t.TempDir(), Options{Sync: SyncOff, retryEvery: 5 * time.Millisecond})
	ctx := context.Background()
	setMaxPages(t, s, pageCount(t, s))
	task := newTask("phantom")
	// Larger than the pages a fresh database has free (those of the
	// tables its migrations replaced), so it cannot fit.
	task.Data = bytes.Repeat([]byte{'x'}, 64<<10)
	created := createQueued(ctx, s, task, queued(task.ID))
	run := *task
	run.Status = statusRunning
	updated := updateQueued(ctx, s, &run, nil)
	if err := created.Wait(); !errors.Is(err, ErrFull) {
		t.Fatalf("creation on a full disk: %v, want ErrFull", err)
	}
	if err := updated.Wait(); !errors.Is(err, ErrNotFound) {
		t.Fatalf("write of a refused task: %v, want ErrNotFound", err)
	}
}

// Close while the disk is full fails the held writes instead of waiting
// for space for ever.
func TestDiskFullCloseFailsHeldWrites(t *testing.T) {
	s, err := Open(context.Background(), t.TempDir(), Options{Sync: SyncOff, retryEvery: 5 * time.Millisecond, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	task := newTask("t")
	if _, _, err := createTask(ctx, s, task, nil); err != nil {
		t.Fatal(err)
	}
	setMaxPages(t, s, pageCount(t, s))
	// Larger than the pages a fresh database has free (those of the
	// tables its migrations replaced), so it cannot fit.
	p := updateQueued(ctx, s, task, []Event{{TaskID: "t", Type: "big", Data: bytes.Repeat([]byte{'x'}, 64<<10)}})
	testbin.WaitFor(t, "the full disk", 30*time.Second, func() bool { return errors.Is(s.Writable(), ErrFull) })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); !errors.Is(err, ErrFull) {
		t.Fatalf("held write at Close: %v, want ErrFull", err)
	}
}

// The database file deleted or replaced under a running store: the next
// write is refused (never acknowledged into a file no start will find),
// and Writable says why, naming the file.
func TestDatabaseFileGoneRefusesWrites(t *testing.T) {
	for _, how := range []string{"deleted", "replaced", "wal deleted"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			s := openSQLite(t, dir, Options{Sync: SyncOff})
			ctx := context.Background()
			if _, _, err := createTask(ctx, s, newTask("before"), queued("before")); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, DBFile)
			remove := []string{path, path + "-wal", path + "-shm"}
			named, said := path, how
			if how == "wal deleted" {
				// What the WAL holds since the last checkpoint would be
				// lost at the next start just the same.
				remove, named, said = remove[1:2], path+"-wal", "deleted"
			}
			for _, f := range remove {
				if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
					t.Fatal(err)
				}
			}
			if how == "replaced" {
				if err := os.WriteFile(path, nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, _, err := createTask(ctx, s, newTask("after"), queued("after"))
			if !errors.Is(err, ErrGone) || !strings.Contains(err.Error(), named+" was "+said) {
				t.Fatalf("write after the file was %s: %v; want ErrGone saying %s was %s", how, err, named, said)
			}
			if err := s.Writable(); !errors.Is(err, ErrGone) {
				t.Fatalf("Writable() = %v, want ErrGone", err)
			}
			if err := updateTask(ctx, s, newTask("before"), nil); !errors.Is(err, ErrGone) {
				t.Fatalf("a later write: %v, want ErrGone", err)
			}
		})
	}
}

// An idle store notices the deletion when asked (readiness).
func TestWritableNoticesDeletionWhenIdle(t *testing.T) {
	dir := t.TempDir()
	s := openSQLite(t, dir, Options{Sync: SyncOff})
	if err := s.Writable(); err != nil {
		t.Fatalf("Writable() of a fresh store: %v", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := s.Writable(); !errors.Is(err, ErrGone) {
		t.Fatalf("Writable() after rm -rf: %v, want ErrGone", err)
	}
}

func makeStore(t *testing.T, tasks int) string {
	t.Helper()
	dir := t.TempDir()
	s, err := Open(context.Background(), dir, Options{Sync: SyncOff, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	for i := range tasks {
		task := newTask(fmt.Sprintf("t%05d", i))
		task.Data = bytes.Repeat([]byte{byte('a' + i%26)}, 300)
		if _, _, err := createTask(context.Background(), s, task, queued(task.ID)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A database damaged in the middle is refused at Open by the integrity
// check, naming the file and the next step, instead of failing later.
func TestOpenRefusesDamagedDatabase(t *testing.T) {
	dir := makeStore(t, 2000)
	path := filepath.Join(dir, DBFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	const page = 4096
	junk := make([]byte, page)
	if _, err := rand.Read(junk); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(junk, (fi.Size()/2/page)*page); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = Open(context.Background(), dir, Options{Logger: quietLogger})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "backup") {
		t.Fatalf("Open of a damaged database: %v; want ErrCorrupt naming %s and the next step", err, path)
	}
}

// A database file truncated to nothing is refused, not started empty.
func TestOpenRefusesEmptiedDatabase(t *testing.T) {
	dir := makeStore(t, 10)
	path := filepath.Join(dir, DBFile)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), dir, Options{Logger: quietLogger})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("Open of an emptied database: %v; want ErrCorrupt naming %s as empty", err, path)
	}
}

// A first start leaves a database file that is not empty, so a second
// start (even after a crash) is never mistaken for a truncated one.
func TestFirstOpenLeavesNonEmptyFile(t *testing.T) {
	dir := t.TempDir()
	openSQLite(t, dir, Options{Sync: SyncOff})
	fi, err := os.Stat(filepath.Join(dir, DBFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() == 0 {
		t.Fatal("the database file is empty right after the first Open")
	}
}

// The integrity check is bounded: one that cannot finish in time lets the
// store open (a warning says so).
func TestIntegrityCheckIsBounded(t *testing.T) {
	dir := makeStore(t, 200)
	logs := &testbin.SyncBuffer{}
	s, err := Open(context.Background(), dir, Options{CheckTimeout: time.Nanosecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatalf("Open with a check that runs out of time: %v", err)
	}
	defer s.Close()
	if !strings.Contains(logs.String(), "integrity check did not finish") {
		t.Fatalf("no warning about the unfinished check:\n%s", logs.String())
	}
}

// On a nearly full disk the WAL is checkpointed after every commit, so its
// space is reused instead of grown: left to the 4 MiB autocheckpoint it
// would fill a disk with less room than that and could then never be
// drained (a checkpoint needs room to grow the database file).
func TestNearlyFullDiskKeepsTheWALShort(t *testing.T) {
	walAfterWrites := func(t *testing.T, free uint64) int64 {
		dir := t.TempDir()
		s := openSQLite(t, dir, Options{Sync: SyncOff, freeSpace: func(string) uint64 { return free }})
		ctx := context.Background()
		task := newTask("t")
		if _, _, err := createTask(ctx, s, task, nil); err != nil {
			t.Fatal(err)
		}
		for i := range 300 {
			ev := Event{TaskID: "t", Type: fmt.Sprintf("step.%d", i), Data: bytes.Repeat([]byte{'x'}, 8<<10)}
			if err := updateTask(ctx, s, task, []Event{ev}); err != nil {
				t.Fatal(err)
			}
		}
		fi, err := os.Stat(filepath.Join(dir, DBFile+"-wal"))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	roomy := walAfterWrites(t, 1<<40)
	tight := walAfterWrites(t, 1<<20)
	if roomy < 1<<20 {
		t.Fatalf("with room to spare the WAL grew to only %d bytes: the writes do not exercise it", roomy)
	}
	if tight > 256<<10 {
		t.Fatalf("with 1 MiB free the WAL grew to %d bytes (%d with room to spare); want it kept short", tight, roomy)
	}
}
