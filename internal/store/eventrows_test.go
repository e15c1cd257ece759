package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// writePackedLog writes to db a log whose SQLite rows pack events in every
// way the writer does: several events of one write, a write whose events
// belong to several tasks, a run longer than a row holds, an event larger
// than a row holds, nil, empty and binary data, and several writes of one
// task committed together in one row.
func writePackedLog(t *testing.T, db DB, gate func(hold func())) {
	t.Helper()
	ctx := context.Background()
	at := time.Date(2026, 3, 4, 5, 6, 7, 891, time.UTC)
	ev := func(id, typ string, hook bool, data []byte) Event {
		at = at.Add(time.Millisecond + 17)
		return Event{TaskID: id, Type: typ, Hook: hook, Time: at, Data: data}
	}
	t1 := newTask("t1")
	if _, _, err := createTask(ctx, db, t1, []Event{ev("t1", "task.queued", false, []byte("q\x00\xff"))}); err != nil {
		t.Fatal(err)
	}
	t1.Status = statusRunning
	if err := updateTask(ctx, db, t1, []Event{ev("t1", "before_task_run", true, []byte("snap")), ev("t1", "task.running", false, nil)}); err != nil {
		t.Fatal(err)
	}
	var long []Event
	for i := range maxRunEvents + 7 {
		data := []byte(fmt.Sprint("line ", i))
		if i%9 == 0 {
			data = []byte{}
		}
		long = append(long, ev("t2", "step.log", i%5 == 0, data))
	}
	if err := appendEvents(ctx, db, long); err != nil {
		t.Fatal(err)
	}
	mixed := []Event{ev("t1", "step.started", false, nil), ev("t1", "step.x", true, []byte("a")), ev("t2", "step.x", false, []byte("b")),
		ev("", "schedule.fired", false, []byte("c")), ev("t1", "step.succeeded", false, []byte("d"))}
	if err := appendEvents(ctx, db, mixed); err != nil {
		t.Fatal(err)
	}
	big := []Event{ev("t2", "step.log", false, []byte("small")), ev("t2", "step.log", false, bytes.Repeat([]byte{'z'}, maxRunBytes+100)),
		ev("t2", "step.log", true, []byte("after the big one"))}
	if err := appendEvents(ctx, db, big); err != nil {
		t.Fatal(err)
	}
	// Several writes of t3 queued while the writer is held: one commit.
	gate(func() {
		var ps []*Pending
		for i := range 4 {
			ps = append(ps, db.Write(ctx, Batch{Events: []Event{ev("t3", fmt.Sprint("step.", i), i == 2, []byte{byte(i)})}}))
		}
		ps = append(ps, db.Write(ctx, Batch{Events: []Event{ev("t4", "task.queued", false, nil)}}))
		ps = append(ps, db.Write(ctx, Batch{Events: []Event{ev("t3", "step.4", false, nil), ev("t3", "step.5", true, []byte("h"))}}))
		for _, p := range ps {
			if err := p.Wait(); err != nil {
				t.Error(err)
			}
		}
	})
	t1.Status, t1.FinishedAt = statusSucceded, at
	if err := updateTask(ctx, db, t1, []Event{ev("t1", "task.finished", false, []byte("end")),
		ev("t1", "after_task_success", true, []byte("s")), ev("t1", "after_task_run", true, []byte("r"))}); err != nil {
		t.Fatal(err)
	}
}

// heldWriter makes the writes a gate queues commit together: it holds the
// SQLite writer in an OnCommit call (of a write of its own) until they
// are all queued.
type heldWriter struct {
	mu      sync.Mutex
	holding chan struct{} // closed once the writer is held
	release chan struct{}
}

func (h *heldWriter) onCommit([]Event) {
	h.mu.Lock()
	holding, release := h.holding, h.release
	h.holding = nil
	h.mu.Unlock()
	if holding != nil {
		close(holding)
		<-release
	}
}

// park is the write that holds the writer; the twin gets it too, so both
// logs have the same sequences.
var park = Batch{Events: []Event{{TaskID: "park", Type: "park"}}}

func (h *heldWriter) gate(s *Store) func(func()) {
	return func(queue func()) {
		h.mu.Lock()
		h.holding, h.release = make(chan struct{}), make(chan struct{})
		holding, release := h.holding, h.release
		h.mu.Unlock()
		p := s.Write(context.Background(), park)
		<-holding
		done := make(chan struct{})
		go func() {
			defer close(done)
			queue() // queues its writes, then waits for them
		}()
		for deadline := time.Now().Add(10 * time.Second); len(s.w.queue) < 6 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		close(release)
		<-done
		if err := p.Wait(); err != nil {
			panic(err)
		}
	}
}

// twinGate is the in-memory twin's gate: the same writes, one at a time.
func twinGate(m *Memory) func(func()) {
	return func(queue func()) {
		if err := m.Write(context.Background(), park).Wait(); err != nil {
			panic(err)
		}
		queue()
	}
}

// Replay from every sequence, whole and in small pages, by task, of hooks
// and of types gives exactly what the in-memory twin gives: every event
// after the sequence, once, in order, whether it is the first, the middle
// or the last of a packed row.
func TestEventsReplayAcrossPackedRows(t *testing.T) {
	ctx := context.Background()
	var held heldWriter
	s := openSQLite(t, t.TempDir(), Options{Sync: SyncOff, OnCommit: held.onCommit})
	m := NewMemory(Options{})
	t.Cleanup(func() { _ = m.Close() })
	writePackedLog(t, s, held.gate(s))
	writePackedLog(t, m, twinGate(m))

	var rows, multi int
	if err := s.rdb.QueryRow(`SELECT COUNT(*), SUM(last_seq > first_seq) FROM event_rows`).Scan(&rows, &multi); err != nil {
		t.Fatal(err)
	}
	_, last, err := s.EventBounds(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if multi == 0 || uint64(rows) >= last {
		t.Fatalf("%d events in %d rows, %d of several events: nothing was packed", last, rows, multi)
	}
	var t3Rows int
	if err := s.rdb.QueryRow(`SELECT COUNT(*) FROM event_rows WHERE task_id = 't3'`).Scan(&t3Rows); err != nil || t3Rows != 2 {
		t.Fatalf("t3's six events of one commit are in %d rows (%v), want 2 (before and after t4's)", t3Rows, err)
	}

	read := func(db DB, after uint64, f EventFilter, limit int) []Event {
		t.Helper()
		var all []Event
		for {
			evs, err := db.Events(ctx, after, f, limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) > limit {
				t.Fatalf("Events(%d, %+v, %d) returned %d", after, f, limit, len(evs))
			}
			all = append(all, evs...)
			if len(evs) < limit {
				return all
			}
			after = evs[len(evs)-1].Seq
		}
	}
	show := func(evs []Event) string {
		var b strings.Builder
		for _, e := range evs {
			fmt.Fprintf(&b, "%d %s %s %v %d %q\n", e.Seq, e.TaskID, e.Type, e.Hook, e.Time.UnixNano(), e.Data)
		}
		return b.String()
	}
	filters := []EventFilter{{}, {TaskID: "t1"}, {TaskID: "t2"}, {TaskID: "t3"}, {HooksOnly: true},
		{Types: []string{"task.finished", "step.x"}}, {TaskID: "t1", HooksOnly: true}, {TaskID: "nobody"}}
	for _, f := range filters {
		for after := uint64(0); after <= last+1; after++ {
			for _, limit := range []int{3, maxEventLimit} {
				got, want := show(read(s, after, f, limit)), show(read(m, after, f, limit))
				if got != want {
					t.Fatalf("after %d, %+v, pages of %d:\nSQLite:\n%s\nmemory:\n%s", after, f, limit, got, want)
				}
			}
		}
	}
	all := read(s, 0, EventFilter{}, maxEventLimit)
	for i, e := range all {
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d has sequence %d", i, e.Seq)
		}
	}
}

// A database written before the log was packed (one row per event, front
// already pruned) opens with every event where it was: same sequences,
// bytes, times, hooks and bounds; new events follow the old ones, reads
// by task span both layouts, and retention prunes the moved rows.
func TestUpgradeMovesEventsToPackedRows(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sql.Open("sqlite", dir+"/"+DBFile)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, `CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	packed := slices.IndexFunc(migrations, func(m string) bool { return strings.Contains(m, "CREATE TABLE event_rows") })
	if packed < 0 {
		t.Fatal("no migration creates event_rows")
	}
	for v, m := range migrations[:packed] {
		if err := applyMigration(ctx, conn, v+1, m); err != nil {
			t.Fatal(err)
		}
	}
	clock := newFakeClock()
	base := clock.Now()
	old := []Event{ // sequences 1..4 were pruned
		{Seq: 5, TaskID: "old", Type: "task.queued", Time: base.Add(1), Data: []byte("q\x00\xff")},
		{Seq: 6, TaskID: "old", Type: "before_task_run", Hook: true, Time: base.Add(2), Data: []byte("snap")},
		{Seq: 7, TaskID: "other", Type: "tâche.ünïcode", Time: base.Add(3)},
		{Seq: 8, TaskID: "old", Type: "task.running", Time: base.Add(4), Data: []byte{}},
		{Seq: 9, TaskID: "", Type: "schedule.fired", Hook: true, Time: base.Add(5), Data: bytes.Repeat([]byte{0, 1, 2}, 3000)},
	}
	for _, e := range old {
		var data any
		if e.Data != nil {
			data = e.Data
		}
		if _, err := conn.ExecContext(ctx, `INSERT INTO events (seq, task_id, type, hook, time, data) VALUES (?, ?, ?, ?, ?, ?)`,
			int64(e.Seq), e.TaskID, e.Type, e.Hook, e.Time.UnixNano(), data); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.ExecContext(ctx, `UPDATE counters SET last_seq = 9, last_arrival = 0`); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
	_ = db.Close()

	s := openSQLite(t, dir, Options{Now: clock.Now, Retain: time.Hour})
	oldest, last, err := s.EventBounds(ctx)
	if err != nil || oldest != 5 || last != 9 {
		t.Fatalf("bounds after upgrade %d..%d (%v), want 5..9", oldest, last, err)
	}
	got, err := s.Events(ctx, 0, EventFilter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(old) {
		t.Fatalf("%d events after upgrade, want %d", len(got), len(old))
	}
	for i, e := range got {
		w := old[i]
		if e.Seq != w.Seq || e.TaskID != w.TaskID || e.Type != w.Type || e.Hook != w.Hook || !e.Time.Equal(w.Time) ||
			!bytes.Equal(e.Data, w.Data) || (e.Data == nil) != (w.Data == nil) {
			t.Fatalf("event %d after upgrade: %+v\nwant %+v", i, e, w)
		}
	}
	// New events follow, packed, and a task's events span both layouts.
	if err := appendEvents(ctx, s, []Event{{TaskID: "old", Type: "task.finished"}, {TaskID: "old", Type: "after_task_run", Hook: true}}); err != nil {
		t.Fatal(err)
	}
	byTask, err := s.Events(ctx, 6, EventFilter{TaskID: "old"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, e := range byTask {
		seqs = append(seqs, e.Seq)
	}
	if !slices.Equal(seqs, []uint64{8, 10, 11}) {
		t.Fatalf("task old after 6: sequences %v, want [8 10 11]", seqs)
	}
	hooks, err := s.Events(ctx, 0, EventFilter{HooksOnly: true}, 0)
	if err != nil || len(hooks) != 3 || hooks[0].Seq != 6 || hooks[1].Seq != 9 || hooks[2].Seq != 11 {
		t.Fatalf("hook events after upgrade: %v %v", hooks, err)
	}
	// Retention reaches the moved rows (the new ones are as old: same clock).
	clock.Advance(2 * time.Hour)
	if n, err := s.Prune(ctx); err != nil || n != 7 {
		t.Fatalf("Prune = %d, %v; want the 7 events", n, err)
	}
	if oldest, last, err := s.EventBounds(ctx); err != nil || oldest != 12 || last != 11 {
		t.Fatalf("bounds after pruning %d..%d (%v), want 12..11", oldest, last, err)
	}
}

// Retention cuts the log at its front a whole row at a time: a row goes
// once the newest of its events is past retention, and the bounds say
// where the retained log starts, even in the middle of what one write
// wrote.
func TestPruneTakesWholePackedRows(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	s := openSQLite(t, t.TempDir(), Options{Now: clock.Now, Retain: time.Hour, Sync: SyncOff})
	at := clock.Now()
	// One write, one row: its newest event is two hours newer.
	if err := appendEvents(ctx, s, []Event{{TaskID: "a", Type: "x", Time: at}, {TaskID: "a", Type: "y", Time: at.Add(2 * time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	if err := appendEvents(ctx, s, []Event{{TaskID: "b", Type: "z", Time: at}}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(90 * time.Minute)
	if n, err := s.Prune(ctx); err != nil || n != 0 {
		t.Fatalf("Prune = %d, %v; want nothing (the first row's newest event is recent)", n, err)
	}
	clock.Advance(3 * time.Hour)
	if n, err := s.Prune(ctx); err != nil || n != 3 {
		t.Fatalf("Prune = %d, %v; want 3", n, err)
	}
	if oldest, last, err := s.EventBounds(ctx); err != nil || oldest != 4 || last != 3 {
		t.Fatalf("bounds %d..%d (%v), want 4..3", oldest, last, err)
	}
}

// An event type too long for the packed form is refused, by both stores
// alike, and nothing of its write is kept.
func TestEventTypeTooLongIsRefused(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			db := b.open(t, Options{})
			long := strings.Repeat("x", maxEventType+1)
			err := db.Write(ctx, Batch{Create: newTask("t"), Events: []Event{{TaskID: "t", Type: long}}}).Wait()
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "type of 65536 bytes") {
				t.Fatalf("write with a %d-byte type: %v, want ErrInvalid naming its length", len(long), err)
			}
			if _, err := db.GetTask(ctx, "t"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("the refused write left its task: %v", err)
			}
			if err := appendEvents(ctx, db, []Event{{TaskID: "t", Type: long[:maxEventType]}}); err != nil {
				t.Fatal(err)
			}
			evs, err := db.Events(ctx, 0, EventFilter{}, 0)
			if err != nil || len(evs) != 1 || evs[0].Seq != 1 || len(evs[0].Type) != maxEventType {
				t.Fatalf("the longest type: %d events, %v", len(evs), err)
			}
		})
	}
}
