package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/aura-dev/aura/internal/testbin"
)

func TestPruneRetention(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			clock := newFakeClock()
			db := b.open(t, Options{Now: clock.Now, Retain: 7 * 24 * time.Hour, IdempotencyTTL: 24 * time.Hour})
			create := func(id string, finished bool) {
				t.Helper()
				task := newTask(id)
				task.Labels = map[string]string{"old": "yes"}
				task.IdempotencyKey = "key-" + id
				if _, _, err := createTask(ctx, db, task, queued(id)); err != nil {
					t.Fatal(err)
				}
				if finished {
					task.Status, task.FinishedAt = statusSucceded, clock.Now()
					if err := updateTask(ctx, db, task, []Event{{TaskID: id, Type: "task.finished"}}); err != nil {
						t.Fatal(err)
					}
				}
			}
			create("old-done", true)    // seq 1, 2
			create("old-queued", false) // seq 3
			clock.Advance(6 * 24 * time.Hour)
			create("recent-done", true) // seq 4, 5
			clock.Advance(24*time.Hour + time.Minute)

			n, err := db.Prune(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n != 4 { // one task, three events
				t.Fatalf("pruned %d rows, want 4", n)
			}
			if _, err := db.GetTask(ctx, "old-done"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("finished task past retention: %v, want ErrNotFound", err)
			}
			for _, id := range []string{"old-queued", "recent-done"} {
				if _, err := db.GetTask(ctx, id); err != nil {
					t.Fatalf("%s was pruned: %v", id, err)
				}
			}
			byLabel := listAll(t, db, Query{Selector: []LabelReq{{Key: "old", Op: LabelEquals, Value: "yes"}}}, nil)
			if len(byLabel) != 2 {
				t.Fatalf("label query after pruning found %v, want the two kept tasks", byLabel)
			}
			oldest, last, err := db.EventBounds(ctx)
			if err != nil || oldest != 4 || last != 5 {
				t.Fatalf("EventBounds = %d, %d, %v; want 4, 5", oldest, last, err)
			}
			evs, err := db.Events(ctx, 0, EventFilter{}, 0)
			if err != nil || len(evs) != 2 || evs[0].Seq != 4 {
				t.Fatalf("events after pruning: %v, %v", evs, err)
			}
			// The key of a pruned task is free again; sequences go on.
			again := newTask("again")
			again.IdempotencyKey, again.Task = "key-old-done", "demo/old-done"
			e := queued("again")
			if _, dedup, err := createTask(ctx, db, again, e); err != nil || dedup || e[0].Seq != 6 {
				t.Fatalf("create after pruning: dedup %v err %v seq %d", dedup, err, e[0].Seq)
			}
		})
	}
}

func TestPruneInBatchesInTheBackground(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			clock := newFakeClock()
			db := b.open(t, Options{Now: clock.Now, PruneInterval: 5 * time.Millisecond})
			pr := NewPruner(PrunerParams{Store: db, Interval: 5 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
			pr.Start()
			defer pr.Shutdown()
			const n, writers = 1300, 10 // several prune batches
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					for i := w; i < n; i += writers {
						task := newTask(fmt.Sprintf("p%d", i))
						task.Status, task.FinishedAt = statusSucceded, clock.Now()
						if _, _, err := createTask(ctx, db, task, queued(task.ID)); err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			keep := newTask("keep")
			if _, _, err := createTask(ctx, db, keep, nil); err != nil {
				t.Fatal(err)
			}
			clock.Advance(8 * 24 * time.Hour)
			if _, ok := db.(*Memory); ok {
				// The twin has no goroutines: it prunes during writes.
				if err := appendEvents(ctx, db, []Event{{TaskID: "keep", Type: "tick"}}); err != nil {
					t.Fatal(err)
				}
			}
			testbin.WaitFor(t, "the old tasks to be pruned", 30*time.Second, func() bool {
				tasks, _, err := db.ListTasks(ctx, Query{PageSize: 10})
				return err == nil && len(tasks) == 1
			})
			oldest, last, err := db.EventBounds(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, isMem := db.(*Memory); isMem && (oldest != n+1 || last != n+1) {
				t.Fatalf("memory EventBounds = %d, %d; want %d, %d", oldest, last, n+1, n+1)
			}
			if _, isMem := db.(*Memory); !isMem {
				testbin.WaitFor(t, "the old events to be pruned", 30*time.Second, func() bool {
					oldest, _, err = db.EventBounds(ctx)
					return err == nil && oldest == last+1
				})
			}
		})
	}
}

func TestSequencesSurvivePruningEverythingAndRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	clock := newFakeClock()
	s := openSQLite(t, dir, Options{Now: clock.Now})
	for i := range 3 {
		task := newTask(fmt.Sprintf("x%d", i))
		task.FinishedAt = clock.Now()
		if _, _, err := createTask(ctx, s, task, queued(task.ID)); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(30 * 24 * time.Hour)
	if n, err := s.Prune(ctx); err != nil || n != 6 {
		t.Fatalf("Prune = %d, %v; want 6", n, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openSQLite(t, dir, Options{Now: clock.Now})
	oldest, last, err := s.EventBounds(ctx)
	if err != nil || oldest != 4 || last != 3 {
		t.Fatalf("EventBounds after restart = %d, %d, %v; want 4, 3", oldest, last, err)
	}
	task := newTask("y")
	e := queued("y")
	got, _, err := createTask(ctx, s, task, e)
	if err != nil || e[0].Seq != 4 || got.Arrival != 4 {
		t.Fatalf("after pruning everything and restarting: seq %d arrival %d err %v; want 4 and 4", e[0].Seq, got.Arrival, err)
	}
}
