package store

import (
	"context"
	"database/sql"
	"testing"
)

// An idempotency key deduplicates only within one principal and one task:
// another principal's key, or the same principal's key on another task,
// makes a new task and never answers with the earlier one.
func TestIdempotencyKeyScopedByPrincipalAndTask(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			db := b.open(t, Options{})
			create := func(id, principal, task string) (*Task, bool) {
				t.Helper()
				x := newTask(id)
				x.Principal, x.Task, x.IdempotencyKey = principal, task, "nightly-2026-12-01"
				got, dedup, err := createTask(ctx, db, x, queued(id))
				if err != nil {
					t.Fatal(err)
				}
				return got, dedup
			}
			if got, dedup := create("b1", "plan-b", "b/report"); dedup || got.ID != "b1" {
				t.Fatalf("first use of the key: %s dedup %v", got.ID, dedup)
			}
			if got, dedup := create("a1", "plan-a", "b/report"); dedup || got.ID != "a1" {
				t.Fatalf("another principal, same task and key: answered with %s (dedup %v), want its own task", got.ID, dedup)
			}
			if got, dedup := create("b2", "plan-b", "b/other"); dedup || got.ID != "b2" {
				t.Fatalf("same principal, another task: answered with %s (dedup %v), want its own task", got.ID, dedup)
			}
			if got, dedup := create("b3", "plan-b", "b/report"); !dedup || got.ID != "b1" || got.Principal != "plan-b" {
				t.Fatalf("same principal, task and key: %s dedup %v, want b1 deduplicated", got.ID, dedup)
			}
			if got, dedup := create("a2", "plan-a", "b/report"); !dedup || got.ID != "a1" {
				t.Fatalf("the other principal's retry: %s dedup %v, want a1 deduplicated", got.ID, dedup)
			}
			stored, err := db.GetTask(ctx, "a1")
			if err != nil {
				t.Fatal(err)
			}
			if stored.Principal != "plan-a" {
				t.Fatalf("stored principal %q, want plan-a", stored.Principal)
			}
		})
	}
}

// A database written by the previous schema version opens and is upgraded:
// its tasks keep everything, count as the anonymous principal's, and their
// keys still deduplicate for that principal only.
func TestUpgradeFromSchemaVersion1(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	// Build a version 1 database the way that version did.
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
	if err := applyMigration(ctx, conn, 1, migrations[0]); err != nil {
		t.Fatal(err)
	}
	now := newFakeClock().Now()
	if _, err := conn.ExecContext(ctx, `INSERT INTO tasks (arrival, id, task, plan, status, priority, attempt, idem_key, labels, created_at, finished_at, data)
		VALUES (1, 'old', 'demo/hello', 'demo', 1, 0, 1, 'k', '{"team":"a"}', ?, NULL, x'01')`, now.UnixNano()); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, `UPDATE counters SET last_seq = 0, last_arrival = 1`); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
	_ = db.Close()

	clock := newFakeClock()
	s := openSQLite(t, dir, Options{Now: clock.Now})
	var v int
	if err := s.rdb.QueryRow(`SELECT MAX(version) FROM schema_version`).Scan(&v); err != nil || v != len(migrations) {
		t.Fatalf("schema version %d (%v) after upgrade, want %d", v, err, len(migrations))
	}
	old, err := s.GetTask(ctx, "old")
	if err != nil {
		t.Fatal(err)
	}
	if old.Principal != "anonymous" || old.IdempotencyKey != "k" || old.Task != "demo/hello" || old.Labels["team"] != "a" || old.Status != 1 {
		t.Fatalf("upgraded task %+v", old)
	}
	queuedNow, err := s.TasksWithStatus(ctx, 1)
	if err != nil || len(queuedNow) != 1 || queuedNow[0].Principal != "anonymous" {
		t.Fatalf("queued tasks after upgrade: %v %v", queuedNow, err)
	}
	retry := &Task{ID: "retry", Task: "demo/hello", Plan: "demo", Status: 1, IdempotencyKey: "k", Principal: "anonymous", Data: []byte("r")}
	if got, dedup, err := createTask(ctx, s, retry, queued("retry")); err != nil || !dedup || got.ID != "old" {
		t.Fatalf("anonymous retry of an upgraded key: %v dedup %v err %v, want old", got, dedup, err)
	}
	other := &Task{ID: "other", Task: "demo/hello", Plan: "demo", Status: 1, IdempotencyKey: "k", Principal: "plan-b", Data: []byte("o")}
	if got, dedup, err := createTask(ctx, s, other, queued("other")); err != nil || dedup || got.ID != "other" {
		t.Fatalf("another principal with an upgraded key: %v dedup %v err %v, want its own task", got, dedup, err)
	}
	if got, err := s.GetTask(ctx, "other"); err != nil || got.Arrival != 2 {
		t.Fatalf("arrival after upgrade: %v %v, want 2", got, err)
	}
}
