package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aura-dev/aura/internal/testbin"
)

const (
	statusQueued   = 1
	statusRunning  = 3
	statusSucceded = 4
)

func newTask(id string) *Task {
	return &Task{
		ID: id, Task: "demo/" + id, Plan: "demo", Status: statusQueued, Priority: 1,
		Labels: map[string]string{"team": "a"}, Data: []byte("snapshot-" + id),
	}
}

func queued(id string) []Event {
	return []Event{{TaskID: id, Type: "task.queued", Data: []byte("q")}}
}

func TestCreateGetUpdate(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			clock := newFakeClock()
			db := b.open(t, Options{Now: clock.Now})

			in := newTask("t1")
			in.IdempotencyKey = "k1"
			evs := queued("t1")
			got, dedup, err := createTask(ctx, db, in, evs)
			if err != nil || dedup {
				t.Fatalf("CreateTask = %v, dedup %v", err, dedup)
			}
			if got.Arrival == 0 || !got.CreatedAt.Equal(clock.Now()) || evs[0].Seq != 1 {
				t.Fatalf("created task arrival %d created %v, event seq %d", got.Arrival, got.CreatedAt, evs[0].Seq)
			}
			stored, err := db.GetTask(ctx, "t1")
			if err != nil {
				t.Fatal(err)
			}
			assertTask(t, stored, got)

			upd := *stored
			upd.Status, upd.Attempt, upd.FinishedAt, upd.Data = statusSucceded, 2, clock.Now().Add(time.Second), []byte("done")
			upd.Labels = map[string]string{"ignored": "yes"}
			if err := updateTask(ctx, db, &upd, []Event{{TaskID: "t1", Type: "task.finished", Hook: true}}); err != nil {
				t.Fatal(err)
			}
			stored, err = db.GetTask(ctx, "t1")
			if err != nil {
				t.Fatal(err)
			}
			want := *got
			want.Status, want.Attempt, want.FinishedAt, want.Data = statusSucceded, 2, upd.FinishedAt, []byte("done")
			assertTask(t, stored, &want)

			if _, err := db.GetTask(ctx, "nope"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("GetTask(missing) = %v, want ErrNotFound", err)
			}
			if err := updateTask(ctx, db, newTask("nope"), queued("nope")); !errors.Is(err, ErrNotFound) {
				t.Fatalf("UpdateTask(missing) = %v, want ErrNotFound", err)
			}
			if _, _, err := createTask(ctx, db, newTask("t1"), nil); !errors.Is(err, ErrExists) {
				t.Fatalf("CreateTask(duplicate id) = %v, want ErrExists", err)
			}
			all, err := db.Events(ctx, 0, EventFilter{}, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(all) != 2 || all[0].Seq != 1 || all[1].Seq != 2 || !all[1].Hook || all[1].Type != "task.finished" {
				t.Fatalf("events after failed writes = %+v, want exactly seq 1 and 2", all)
			}
			if _, last, _ := db.EventBounds(ctx); last != 2 {
				t.Fatalf("last seq = %d, want 2 (failed writes must not consume sequences)", last)
			}
		})
	}
}

func assertTask(t *testing.T, got, want *Task) {
	t.Helper()
	if got.ID != want.ID || got.Task != want.Task || got.Plan != want.Plan || got.Status != want.Status ||
		got.Priority != want.Priority || got.Attempt != want.Attempt || got.IdempotencyKey != want.IdempotencyKey || got.Principal != want.Principal ||
		got.Arrival != want.Arrival || !got.CreatedAt.Equal(want.CreatedAt) || !got.FinishedAt.Equal(want.FinishedAt) ||
		string(got.Data) != string(want.Data) || fmt.Sprint(got.Labels) != fmt.Sprint(want.Labels) {
		t.Fatalf("task = %+v\nwant   %+v", got, want)
	}
}

func TestConcurrentDuplicateIdempotencyKey(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			db := b.open(t, Options{})
			const n = 50
			var (
				wg      sync.WaitGroup
				mu      sync.Mutex
				ids     = map[string]int{}
				created int
			)
			start := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					<-start
					task := newTask(fmt.Sprintf("dup-%d", i))
					task.IdempotencyKey, task.Task = "same-key", "demo/dup"
					got, dedup, err := createTask(ctx, db, task, queued(task.ID))
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					defer mu.Unlock()
					ids[got.ID]++
					if !dedup {
						created++
					}
				})
			}
			close(start)
			wg.Wait()
			if created != 1 || len(ids) != 1 {
				t.Fatalf("%d creations, answers named %v; want one task for all %d", created, ids, n)
			}
			all, _, err := db.ListTasks(ctx, Query{PageSize: 1000})
			if err != nil {
				t.Fatal(err)
			}
			evs, err := db.Events(ctx, 0, EventFilter{}, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(all) != 1 || len(evs) != 1 {
				t.Fatalf("stored %d tasks and %d events, want 1 and 1", len(all), len(evs))
			}
		})
	}
}

func TestIdempotencyTTL(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			clock := newFakeClock()
			db := b.open(t, Options{Now: clock.Now, IdempotencyTTL: time.Hour})
			first := newTask("first")
			first.IdempotencyKey = "k"
			if _, _, err := createTask(ctx, db, first, nil); err != nil {
				t.Fatal(err)
			}
			clock.Advance(59 * time.Minute)
			again := newTask("again")
			again.IdempotencyKey, again.Task = "k", first.Task
			got, dedup, err := createTask(ctx, db, again, queued("again"))
			if err != nil || !dedup || got.ID != "first" {
				t.Fatalf("within TTL: got %v dedup %v err %v, want first, dedup", got, dedup, err)
			}
			clock.Advance(2 * time.Minute)
			got, dedup, err = createTask(ctx, db, again, nil)
			if err != nil || dedup || got.ID != "again" {
				t.Fatalf("after TTL: got %v dedup %v err %v, want a new task", got, dedup, err)
			}
			later := newTask("later")
			later.IdempotencyKey, later.Task = "k", first.Task
			got, dedup, err = createTask(ctx, db, later, nil)
			if err != nil || !dedup || got.ID != "again" {
				t.Fatalf("key reused after TTL: got %v dedup %v err %v, want the newest task (again)", got, dedup, err)
			}
		})
	}
}

func TestSequencesGapFreeUnderConcurrentWriters(t *testing.T) {
	for _, b := range append(backends(), alwaysBackend()) {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			var (
				mu       sync.Mutex
				observed []uint64
			)
			onCommit := func(evs []Event) {
				mu.Lock()
				defer mu.Unlock()
				for _, e := range evs {
					observed = append(observed, e.Seq)
				}
			}
			db := b.open(t, Options{OnCommit: onCommit})
			const writers, perWriter = 16, 40
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					for i := range perWriter {
						id := fmt.Sprintf("w%d-%d", w, i)
						evs := []Event{{TaskID: id, Type: "task.queued"}, {TaskID: id, Type: "task.planning"}}
						task, _, err := createTask(ctx, db, newTask(id), evs)
						if err != nil {
							t.Error(err)
							return
						}
						if evs[1].Seq != evs[0].Seq+1 {
							t.Errorf("one write got sequences %d, %d; want consecutive", evs[0].Seq, evs[1].Seq)
						}
						mu.Lock()
						seen := slices.Contains(observed, evs[1].Seq)
						mu.Unlock()
						if !seen {
							t.Errorf("CreateTask returned before OnCommit saw seq %d", evs[1].Seq)
						}
						task.Status = statusRunning
						upd := []Event{{TaskID: id, Type: "task.running"}}
						if err := updateTask(ctx, db, task, upd); err != nil {
							t.Error(err)
							return
						}
						if err := appendEvents(ctx, db, []Event{{TaskID: id, Type: "step.started"}}); err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			total := writers * perWriter * 4
			if len(observed) != total {
				t.Fatalf("OnCommit saw %d events, want %d", len(observed), total)
			}
			for i, s := range observed {
				if s != uint64(i+1) {
					t.Fatalf("OnCommit order: position %d has seq %d, want %d", i, s, i+1)
				}
			}
			var stored []Event
			for after := uint64(0); ; {
				page, err := db.Events(ctx, after, EventFilter{}, 300)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) == 0 {
					break
				}
				stored = append(stored, page...)
				after = page[len(page)-1].Seq
			}
			if len(stored) != total {
				t.Fatalf("stored %d events, want %d", len(stored), total)
			}
			for i, e := range stored {
				if e.Seq != uint64(i+1) {
					t.Fatalf("stored event %d has seq %d", i, e.Seq)
				}
			}
			oldest, last, err := db.EventBounds(ctx)
			if err != nil || oldest != 1 || last != uint64(total) {
				t.Fatalf("EventBounds = %d, %d, %v; want 1, %d", oldest, last, err, total)
			}
		})
	}
}

func TestEventFilters(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			db := b.open(t, Options{})
			for _, id := range []string{"a", "b"} {
				if _, _, err := createTask(ctx, db, newTask(id), queued(id)); err != nil {
					t.Fatal(err)
				}
			}
			if err := appendEvents(ctx, db, []Event{
				{TaskID: "a", Type: "task.running"},
				{TaskID: "a", Type: "before_task_run", Hook: true},
				{TaskID: "b", Type: "before_task_run", Hook: true},
				{TaskID: "a", Type: "task.finished"},
			}); err != nil {
				t.Fatal(err)
			}
			seqs := func(f EventFilter, after uint64, limit int) []uint64 {
				evs, err := db.Events(ctx, after, f, limit)
				if err != nil {
					t.Fatal(err)
				}
				var out []uint64
				for _, e := range evs {
					out = append(out, e.Seq)
				}
				return out
			}
			for _, c := range []struct {
				name  string
				f     EventFilter
				after uint64
				limit int
				want  []uint64
			}{
				{"all", EventFilter{}, 0, 0, []uint64{1, 2, 3, 4, 5, 6}},
				{"after", EventFilter{}, 4, 0, []uint64{5, 6}},
				{"limit", EventFilter{}, 1, 2, []uint64{2, 3}},
				{"task", EventFilter{TaskID: "a"}, 0, 0, []uint64{1, 3, 4, 6}},
				{"task after", EventFilter{TaskID: "a"}, 3, 0, []uint64{4, 6}},
				{"hooks", EventFilter{HooksOnly: true}, 0, 0, []uint64{4, 5}},
				{"hooks of task", EventFilter{HooksOnly: true, TaskID: "b"}, 0, 0, []uint64{5}},
				{"types", EventFilter{Types: []string{"task.queued", "task.finished"}}, 0, 0, []uint64{1, 2, 6}},
				{"past the end", EventFilter{}, 6, 0, nil},
				{"far past the end", EventFilter{}, 1<<64 - 1, 0, nil},
				{"far past the end of a task", EventFilter{TaskID: "a"}, 1<<63 + 5, 0, nil},
			} {
				if got := seqs(c.f, c.after, c.limit); !slices.Equal(got, c.want) {
					t.Errorf("%s: seqs %v, want %v", c.name, got, c.want)
				}
			}
		})
	}
}

func TestClosedStoreRefusesWrites(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			db := b.open(t, Options{})
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			if _, _, err := createTask(context.Background(), db, newTask("x"), nil); !errors.Is(err, ErrClosed) {
				t.Fatalf("CreateTask after Close = %v, want ErrClosed", err)
			}
			if _, err := db.GetTask(context.Background(), "x"); !errors.Is(err, ErrClosed) {
				t.Fatalf("GetTask after Close = %v, want ErrClosed", err)
			}
			if _, _, err := db.ListTasks(context.Background(), Query{}); !errors.Is(err, ErrClosed) {
				t.Fatalf("ListTasks after Close = %v, want ErrClosed", err)
			}
			if err := db.Close(); err != nil {
				t.Fatalf("second Close = %v", err)
			}
		})
	}
}

// The store keeps an event's bytes as the writer encoded them: OnCommit
// hears them and Events reads them back unchanged, each reader with its own
// copy.
func TestEventBytesAreKeptAsGiven(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			var (
				mu    sync.Mutex
				heard []string
			)
			db := b.open(t, Options{OnCommit: func(evs []Event) {
				mu.Lock()
				defer mu.Unlock()
				for _, e := range evs {
					heard = append(heard, string(e.Data))
				}
			}})
			want := []string{"queued\x00\xff", "step failed: boom"}
			task := &Task{ID: "t1", Task: "p/t", Plan: "p", Status: 1, Data: []byte("snapshot")}
			if _, _, err := createTask(ctx, db, task, []Event{{TaskID: "t1", Type: "task.queued", Data: []byte(want[0])}}); err != nil {
				t.Fatal(err)
			}
			if err := appendEvents(ctx, db, []Event{{TaskID: "t1", Type: "step.failed", Data: []byte(want[1])}}); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			got := slices.Clone(heard)
			mu.Unlock()
			if !slices.Equal(got, want) {
				t.Fatalf("OnCommit heard %q, want %q", got, want)
			}
			for range 2 {
				evs, err := db.Events(ctx, 0, EventFilter{}, 0)
				if err != nil {
					t.Fatal(err)
				}
				got = got[:0]
				for _, e := range evs {
					got = append(got, string(e.Data))
					e.Data[0] = '!' // a reader's copy: the next read is unchanged
				}
				if !slices.Equal(got, want) {
					t.Fatalf("Events read %q, want %q", got, want)
				}
			}
		})
	}
}

// Writes not waited for at once report through their Pending what waiting
// would have: committed, refused, or deduplicated by an idempotency key.
func TestQueuedWrites(t *testing.T) {
	for _, b := range append(backends(), alwaysBackend()) {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			db := b.open(t, Options{})
			task := &Task{ID: "t1", Task: "p/t", Plan: "p", Status: 1, Data: []byte("x")}
			if err := createQueued(ctx, db, task, []Event{{TaskID: "t1", Type: "task.queued", Data: []byte("q")}}).Wait(); err != nil {
				t.Fatal(err)
			}
			if got, err := db.GetTask(ctx, "t1"); err != nil || got.Status != 1 {
				t.Fatalf("after CreateTaskQueued: %v %v", got, err)
			}
			upd := &Task{ID: "t1", Task: "p/t", Plan: "p", Status: 2, Data: []byte("y")}
			p := updateQueued(ctx, db, upd, nil)
			if err := p.Wait(); err != nil || !p.Done() {
				t.Fatalf("UpdateTaskQueued: %v, committed %v", err, p.Done())
			}
			if got, _ := db.GetTask(ctx, "t1"); got.Status != 2 {
				t.Fatalf("status %d after the queued update, want 2", got.Status)
			}
			err := updateQueued(ctx, db, &Task{ID: "nope", Task: "p/t", Plan: "p", Status: 2}, nil).Wait()
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("update of an unknown task: %v, want ErrNotFound", err)
			}
			// Two creations with one key, queued back to back: the second
			// finds the first at commit and writes nothing.
			first := createQueued(ctx, db, &Task{ID: "k1", Task: "p/t", Plan: "p", Status: 1, IdempotencyKey: "k"}, []Event{{TaskID: "k1", Type: "task.queued", Data: []byte("q")}})
			second := createQueued(ctx, db, &Task{ID: "k2", Task: "p/t", Plan: "p", Status: 1, IdempotencyKey: "k"}, []Event{{TaskID: "k2", Type: "task.queued", Data: []byte("q")}})
			if err := first.Wait(); err != nil || first.Duplicate() != nil {
				t.Fatalf("first keyed create: %v, duplicate %v", err, first.Duplicate())
			}
			if err := second.Wait(); err != nil || second.Duplicate() == nil || second.Duplicate().ID != "k1" {
				t.Fatalf("second keyed create: %v, duplicate %v; want k1", err, second.Duplicate())
			}
			if _, err := db.GetTask(ctx, "k2"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("the duplicate was stored: %v", err)
			}
			if evs, _ := db.Events(ctx, 0, EventFilter{TaskID: "k2"}, 0); len(evs) != 0 {
				t.Fatalf("the duplicate's events were stored: %v", evs)
			}
			both := db.Write(ctx, Batch{Create: &Task{ID: "t3"}, Update: &Task{ID: "t1"}}).Wait()
			if !errors.Is(both, ErrInvalid) {
				t.Fatalf("a batch that creates and updates: %v, want ErrInvalid", both)
			}
		})
	}
}

// Writes of one task that land in one group commit must leave what applying
// them one by one leaves, and a rejected write (an unknown task, a duplicate
// ID) fails alone without its events while the rest of the transaction
// commits. The writer is held in OnCommit after a first commit, so that
// everything queued meanwhile commits together.
func TestSeveralWritesOfATaskInOneCommit(t *testing.T) {
	ctx := context.Background()
	entered, gate := make(chan struct{}), make(chan struct{})
	var once sync.Once
	db := openSQLite(t, t.TempDir(), Options{Sync: SyncBatch, OnCommit: func([]Event) {
		once.Do(func() {
			close(entered)
			<-gate
		})
	}})
	ev := func(id, typ string) []Event { return []Event{{TaskID: id, Type: typ, Data: []byte(typ)}} }
	before := &Task{ID: "old", Task: "p/t", Plan: "p", Status: 1, Data: []byte("old-1")}
	first := createQueued(ctx, db, before, ev("old", "task.queued"))
	<-entered // the writer is parked: what follows commits in one transaction

	end := time.Unix(1700000000, 0).UTC()
	pending := map[string]*Pending{
		"new created":  createQueued(ctx, db, &Task{ID: "new", Task: "p/t", Plan: "p", Status: 1, Data: []byte("new-1")}, ev("new", "task.queued")),
		"new running":  updateQueued(ctx, db, &Task{ID: "new", Task: "p/t", Plan: "p", Status: 3, Data: []byte("new-3")}, ev("new", "task.running")),
		"new finished": updateQueued(ctx, db, &Task{ID: "new", Task: "p/t", Plan: "p", Status: 4, Attempt: 2, FinishedAt: end, Data: []byte("new-4")}, ev("new", "task.finished")),
		"old running":  updateQueued(ctx, db, &Task{ID: "old", Task: "p/t", Plan: "p", Status: 3, Data: []byte("old-3")}, ev("old", "task.running")),
		"old again":    updateQueued(ctx, db, &Task{ID: "old", Task: "p/t", Plan: "p", Status: 5, Data: []byte("old-5")}, ev("old", "task.finished")),
		"ghost 1":      updateQueued(ctx, db, &Task{ID: "ghost", Task: "p/t", Plan: "p", Status: 3}, ev("ghost", "task.running")),
		"ghost 2":      updateQueued(ctx, db, &Task{ID: "ghost", Task: "p/t", Plan: "p", Status: 4}, ev("ghost", "task.finished")),
		"dup created":  createQueued(ctx, db, &Task{ID: "old", Task: "p/t", Plan: "p", Status: 1, Data: []byte("dup")}, ev("old", "dup.queued")),
	}
	close(gate)
	if err := first.Wait(); err != nil {
		t.Fatal(err)
	}
	for name, p := range pending {
		err := p.Wait()
		switch {
		case strings.HasPrefix(name, "ghost"):
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("%s: %v, want ErrNotFound", name, err)
			}
		case name == "dup created":
			if !errors.Is(err, ErrExists) {
				t.Errorf("%s: %v, want ErrExists", name, err)
			}
		case err != nil:
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, want := range []struct {
		id, data string
		status   int32
		attempt  int32
		finished time.Time
		events   []string
	}{
		{id: "new", data: "new-4", status: 4, attempt: 2, finished: end, events: []string{"task.queued", "task.running", "task.finished"}},
		{id: "old", data: "old-5", status: 5, events: []string{"task.queued", "task.running", "task.finished"}},
	} {
		got, err := db.GetTask(ctx, want.id)
		if err != nil {
			t.Fatal(err)
		}
		if string(got.Data) != want.data || got.Status != want.status || got.Attempt != want.attempt || !got.FinishedAt.Equal(want.finished) {
			t.Errorf("%s: data %q status %d attempt %d finished %v; want %q %d %d %v",
				want.id, got.Data, got.Status, got.Attempt, got.FinishedAt, want.data, want.status, want.attempt, want.finished)
		}
		evs, err := db.Events(ctx, 0, EventFilter{TaskID: want.id}, 0)
		if err != nil {
			t.Fatal(err)
		}
		var types []string
		for _, e := range evs {
			types = append(types, e.Type)
		}
		if !slices.Equal(types, want.events) {
			t.Errorf("%s: events %v, want %v", want.id, types, want.events)
		}
	}
	if evs, _ := db.Events(ctx, 0, EventFilter{TaskID: "ghost"}, 0); len(evs) != 0 {
		t.Errorf("the rejected updates left events: %v", evs)
	}
}

// A detached write has nobody to tell of its failure, so the store logs it;
// a write somebody waits for is not logged (its caller reports it).
func TestDetachedWriteFailureIsLogged(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			logs := &testbin.SyncBuffer{}
			db := b.open(t, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			evs := []Event{{TaskID: "t1", Type: "step.started", Data: []byte("x")}}
			if err := db.Write(context.Background(), Batch{Events: evs}).Wait(); !errors.Is(err, ErrClosed) {
				t.Fatalf("write after Close: %v, want ErrClosed", err)
			}
			if strings.Contains(logs.String(), "not recorded") {
				t.Fatalf("a waited-for write's failure was logged:\n%s", logs)
			}
			if err := db.Write(context.Background(), Batch{Events: evs, Detached: true}).Wait(); !errors.Is(err, ErrClosed) {
				t.Fatalf("detached write after Close: %v, want ErrClosed", err)
			}
			if !strings.Contains(logs.String(), "store: queued events not recorded") {
				t.Fatalf("a detached write's failure was not logged:\n%s", logs)
			}
		})
	}
}
