package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aura-dev/aura/internal/testbin"
)

func TestDurableAcrossCloseAndOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, dir, Options{Sync: SyncAlways, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	var created []*Task
	for i := range 20 {
		task := newTask(fmt.Sprintf("d%d", i))
		task.IdempotencyKey = fmt.Sprintf("key-%d", i)
		got, _, err := createTask(ctx, s, task, queued(task.ID))
		if err != nil {
			t.Fatal(err)
		}
		created = append(created, got)
	}
	done := *created[3]
	done.Status, done.FinishedAt = statusSucceded, time.Now()
	if err := updateTask(ctx, s, &done, []Event{{TaskID: done.ID, Type: "task.finished", Hook: true}}); err != nil {
		t.Fatal(err)
	}
	created[3] = &done
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openSQLite(t, dir, Options{Sync: SyncAlways})
	for _, want := range created {
		got, err := s.GetTask(ctx, want.ID)
		if err != nil {
			t.Fatal(err)
		}
		assertTask(t, got, want)
	}
	// Idempotency keys outlive a restart.
	again := newTask("d-again")
	again.IdempotencyKey, again.Task = "key-7", created[7].Task
	got, dedup, err := createTask(ctx, s, again, nil)
	if err != nil || !dedup || got.ID != "d7" {
		t.Fatalf("duplicate key after restart: %v dedup %v err %v", got, dedup, err)
	}
	// Sequences and arrivals continue where they stopped.
	next := newTask("d-next")
	evs := queued("d-next")
	got, _, err = createTask(ctx, s, next, evs)
	if err != nil || evs[0].Seq != 22 || got.Arrival != 21 {
		t.Fatalf("after restart: seq %d arrival %d err %v; want 22 and 21", evs[0].Seq, got.Arrival, err)
	}
}

func TestCloseCommitsQueuedWrites(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, dir, Options{Sync: SyncBatch, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		acked []string
	)
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("g%d-%d", g, i)
				if _, _, err := createTask(ctx, s, newTask(id), queued(id)); err != nil {
					if !errors.Is(err, ErrClosed) {
						t.Error(err)
					}
					return
				}
				mu.Lock()
				acked = append(acked, id)
				mu.Unlock()
			}
		})
	}
	testbin.WaitFor(t, "200 acknowledged writes", 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= 200 })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	s = openSQLite(t, dir, Options{})
	for _, id := range acked {
		if _, err := s.GetTask(ctx, id); err != nil {
			t.Fatalf("task %s acknowledged before Close is missing: %v", id, err)
		}
	}
}

// TestGroupCommit queues concurrent writes while the writer is busy and
// checks that they commit in one transaction, and that a bad write among
// them fails alone.
func TestGroupCommit(t *testing.T) {
	ctx := context.Background()
	// The blocker's OnCommit holds the writer so that everything queued
	// meanwhile lands in one batch.
	release := make(chan struct{})
	blocked := make(chan struct{})
	s := openSQLite(t, t.TempDir(), Options{Sync: SyncOff, OnCommit: func(evs []Event) {
		if evs[0].Type == "blocker" {
			close(blocked)
			<-release
		}
	}})
	if _, _, err := createTask(ctx, s, newTask("taken"), nil); err != nil {
		t.Fatal(err)
	}
	blockerDone := make(chan error, 1)
	go func() { blockerDone <- appendEvents(ctx, s, []Event{{TaskID: "x", Type: "blocker"}}) }()
	<-blocked
	before := s.WriterStats()

	const n = 20
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			id := fmt.Sprintf("ok%d", i)
			if i == n/2 {
				id = "taken"
			}
			_, _, errs[i] = createTask(ctx, s, newTask(id), queued(id))
		})
	}
	testbin.WaitFor(t, fmt.Sprintf("%d writes queued behind the blocker", n), 10*time.Second, func() bool { return len(s.w.queue) == n })
	close(release)
	wg.Wait()
	if err := <-blockerDone; err != nil {
		t.Fatal(err)
	}
	if after := s.WriterStats(); after.Batches != before.Batches+1 || after.Ops != before.Ops+n {
		t.Fatalf("%d concurrent writes took %d commits (%d ops); want one", n, after.Batches-before.Batches, after.Ops-before.Ops)
	}
	for i, err := range errs {
		if i == n/2 {
			if !errors.Is(err, ErrExists) {
				t.Fatalf("duplicate ID: %v, want ErrExists", err)
			}
		} else if err != nil {
			t.Fatalf("write %d failed with its batch: %v", i, err)
		}
	}
	evs, err := s.Events(ctx, 0, EventFilter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != n { // the blocker and n-1 queued events
		t.Fatalf("%d events stored, want %d", len(evs), n)
	}
	for i, e := range evs {
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d: the failed write left a gap", i, e.Seq)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("corrupt file", func(t *testing.T) {
		dir := t.TempDir()
		garbage := []byte(strings.Repeat("this is not an SQLite database, just garbage bytes. ", 200))
		if err := os.WriteFile(filepath.Join(dir, DBFile), garbage, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(ctx, dir, Options{Logger: quietLogger})
		if err == nil {
			s.Close()
			t.Fatal("Open of a garbage file succeeded")
		}
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), DBFile) {
			t.Fatalf("Open of a garbage file: %v; want ErrCorrupt naming the file", err)
		}
	})
	t.Run("dir is a file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "plain")
		if err := os.WriteFile(file, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(ctx, filepath.Join(file, "data"), Options{Logger: quietLogger}); err == nil || !strings.Contains(err.Error(), "plain") {
			t.Fatalf("Open under a regular file: %v; want an error naming the path", err)
		}
	})
	t.Run("unwritable dir", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root ignores directory permissions")
		}
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
		if _, err := Open(ctx, dir, Options{Logger: quietLogger}); err == nil || !strings.Contains(err.Error(), "not writable") {
			t.Fatalf("Open of a read-only dir: %v; want a not-writable error", err)
		}
	})
	t.Run("read-only file", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root ignores file permissions")
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, DBFile), nil, 0o400); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(ctx, dir, Options{Logger: quietLogger}); err == nil {
			t.Fatal("Open of a read-only database file succeeded")
		}
	})
	t.Run("second process", func(t *testing.T) {
		dir := t.TempDir()
		openSQLite(t, dir, Options{})
		if _, err := Open(ctx, dir, Options{Logger: quietLogger}); !errors.Is(err, ErrLocked) {
			t.Fatalf("second Open of one dir: %v, want ErrLocked", err)
		}
	})
	t.Run("newer schema", func(t *testing.T) {
		dir := t.TempDir()
		s, err := Open(ctx, dir, Options{Logger: quietLogger})
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		db, err := sql.Open("sqlite", filepath.Join(dir, DBFile))
		if err != nil {
			t.Fatal(err)
		}
		_, err = db.Exec(`INSERT INTO schema_version (version, applied_at) VALUES (?, 0)`, len(migrations)+1)
		db.Close()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Open(ctx, dir, Options{Logger: quietLogger}); !errors.Is(err, ErrSchemaTooNew) {
			t.Fatalf("Open of a newer schema: %v, want ErrSchemaTooNew", err)
		}
	})
}

func TestSchemaVersionRecorded(t *testing.T) {
	s := openSQLite(t, t.TempDir(), Options{})
	var v int
	if err := s.rdb.QueryRow(`SELECT MAX(version) FROM schema_version`).Scan(&v); err != nil || v != len(migrations) {
		t.Fatalf("schema version %d (%v), want %d", v, err, len(migrations))
	}
}

// TestQueriesUseIndexes proves with EXPLAIN QUERY PLAN that no query the
// store runs scans a whole table, and that listing needs no sort.
func TestQueriesUseIndexes(t *testing.T) {
	s := openSQLite(t, t.TempDir(), Options{})
	seedTasks(t, s, 50)
	sel := func(str string) []LabelReq {
		r, err := ParseSelector(str)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	type check struct {
		name    string
		sql     string
		args    []any
		sortsOK bool
	}
	var checks []check
	for _, q := range []Query{
		{}, {Status: 2}, {Plan: "alpha"}, {Status: 2, Plan: "alpha"},
		{Selector: sel("env=prod")}, {Selector: sel("gpu")}, {Selector: sel("!gpu")}, {Selector: sel("env!=prod")},
		{Status: 1, Selector: sel("gpu,env=dev,!x,y!=z")}, {Plan: "beta", Selector: sel("!gpu")},
	} {
		query, args := listQuery(q, 1<<40, 101)
		checks = append(checks, check{name: fmt.Sprintf("list %+v", q), sql: query, args: args})
	}
	for _, f := range []EventFilter{{}, {TaskID: "t1"}, {HooksOnly: true}, {Types: []string{"a", "b"}}, {TaskID: "t1", HooksOnly: true}} {
		query, args := eventsQuery(5, f)
		checks = append(checks, check{name: fmt.Sprintf("events %+v", f), sql: query, args: args})
	}
	query, args := tasksWithStatusQuery([]int32{1, 2})
	checks = append(checks,
		check{name: "tasks with status", sql: query, args: args, sortsOK: true},
		check{name: "get", sql: `SELECT ` + taskCols + ` FROM tasks WHERE id = ?`, args: []any{"x"}},
		check{name: "idempotency", sql: `SELECT ` + taskCols + ` FROM tasks WHERE idem_key = ? AND task = ? AND principal = ? AND created_at >= ? ORDER BY created_at DESC LIMIT 1`, args: []any{"k", "demo/x", "p", 0}},
		check{name: "update", sql: `UPDATE tasks SET status = ? WHERE id = ?`, args: []any{1, "x"}},
		check{name: "prune tasks", sql: `SELECT arrival FROM tasks WHERE finished_at IS NOT NULL AND finished_at < ? AND created_at < ? ORDER BY finished_at LIMIT ?`, args: []any{1, 1, 500}},
		check{name: "prune labels", sql: `DELETE FROM task_labels WHERE arrival = ?`, args: []any{1}},
		check{name: "prune event prefix", sql: `SELECT last_seq, first_seq, time FROM event_rows WHERE last_seq > 0 ORDER BY last_seq LIMIT ?`, args: []any{500}},
		check{name: "prune events", sql: `DELETE FROM event_rows WHERE last_seq <= ?`, args: []any{1}},
		check{name: "event bounds", sql: `SELECT first_seq FROM event_rows WHERE last_seq > 0 ORDER BY last_seq LIMIT 1`},
	)
	for _, c := range checks {
		rows, err := s.rdb.Query("EXPLAIN QUERY PLAN "+c.sql, c.args...)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		t.Logf("%s: %q", c.name, plan)
		for _, d := range plan {
			if strings.HasPrefix(d, "SCAN ") || (!c.sortsOK && strings.Contains(d, "TEMP B-TREE")) {
				t.Errorf("%s: plan %q has %q\nSQL: %s", c.name, plan, d, c.sql)
			}
		}
	}
}

// Detached events commit in queue order ahead of a later waited-for
// write: once that write returns, they are in the log, before it.
func TestDetachedEventsCommitAheadOfLaterWrites(t *testing.T) {
	s := openSQLite(t, t.TempDir(), Options{})
	ctx := context.Background()
	task := &Task{ID: "t1", Task: "p/a", Plan: "p"}
	if _, _, err := createTask(ctx, s, task, nil); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		appendDetached(s, []Event{{TaskID: "t1", Type: fmt.Sprintf("step.%d", i)}})
	}
	if err := updateTask(ctx, s, task, []Event{{TaskID: "t1", Type: "task.finished"}}); err != nil {
		t.Fatal(err)
	}
	evs, err := s.Events(ctx, 0, EventFilter{TaskID: "t1"}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 51 || evs[50].Type != "task.finished" {
		t.Fatalf("got %d events, last %q", len(evs), evs[len(evs)-1].Type)
	}
	for i, ev := range evs[:50] {
		if ev.Type != fmt.Sprintf("step.%d", i) || (i > 0 && ev.Seq != evs[i-1].Seq+1) {
			t.Fatalf("event %d: %q seq %d", i, ev.Type, ev.Seq)
		}
	}
}

// With --sync always a writer hears of its commit only after the WAL is
// synced; when a sync fails, the writers of those commits get the error and
// the store refuses every later write rather than acknowledge what the disk
// may not hold.
func TestFailedSyncFailsWritersAndBreaksTheStore(t *testing.T) {
	s := openSQLite(t, t.TempDir(), Options{Sync: SyncAlways})
	ctx := context.Background()
	s.w.wal = filepath.Join(t.TempDir(), "missing-wal") // the first sync cannot open it
	_, _, err := createTask(ctx, s, &Task{ID: "lost", Task: "p/t", Plan: "p", Status: 1}, nil)
	if err == nil || !strings.Contains(err.Error(), "syncing") {
		t.Fatalf("write whose sync failed: %v, want the sync error", err)
	}
	if _, _, err := createTask(ctx, s, &Task{ID: "after", Task: "p/t", Plan: "p", Status: 1}, nil); err == nil || !strings.Contains(err.Error(), "syncing") {
		t.Fatalf("write after a failed sync: %v, want refused", err)
	}
	if _, err := s.GetTask(ctx, "after"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a write after the failed sync was committed: %v", err)
	}
	if err := s.Broken(); err == nil || !strings.Contains(err.Error(), "syncing") {
		t.Fatalf("Broken() = %v, want the sync error", err)
	}
}
