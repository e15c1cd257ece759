package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestMemoryTwinMatchesSQLite runs random operation sequences against both
// implementations and requires identical answers, so benchmarks and tests
// built on the twin see what production would.
func TestMemoryTwinMatchesSQLite(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		ctx := context.Background()
		clock := newFakeClock()
		dir, err := os.MkdirTemp("", "aura-store-twin-")
		if err != nil {
			rt.Fatal(err)
		}
		defer os.RemoveAll(dir)
		opts := Options{Sync: SyncOff, Now: clock.Now, Logger: quietLogger, IdempotencyTTL: time.Hour,
			Retain: 3 * time.Hour, PruneInterval: 10000 * time.Hour}
		sq, err := Open(ctx, dir, opts)
		if err != nil {
			rt.Fatal(err)
		}
		defer sq.Close()
		mem := NewMemory(opts)
		defer mem.Close()

		ids := rapid.SampledFrom([]string{"t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7"})
		statuses := rapid.Int32Range(1, 4)
		labelsGen := rapid.Custom(func(rt *rapid.T) map[string]string {
			m := map[string]string{}
			if rapid.Bool().Draw(rt, "has env") {
				m["env"] = rapid.SampledFrom([]string{"a", "b"}).Draw(rt, "env")
			}
			if rapid.Bool().Draw(rt, "has gpu") {
				m["gpu"] = "x"
			}
			return m
		})
		finished := func(rt *rapid.T) time.Time {
			if rapid.Bool().Draw(rt, "finished") {
				return clock.Now()
			}
			return time.Time{}
		}
		eventsGen := func(rt *rapid.T, id string) []Event {
			n := rapid.IntRange(0, 3).Draw(rt, "events")
			evs := make([]Event, n)
			for i := range evs {
				evs[i] = Event{TaskID: id, Type: rapid.SampledFrom([]string{"a", "b"}).Draw(rt, "type"), Hook: rapid.Bool().Draw(rt, "hook")}
			}
			return evs
		}
		twoEvents := func(evs []Event) ([]Event, []Event) {
			return evs, slices.Clone(evs)
		}

		for step := range rapid.IntRange(1, 40).Draw(rt, "steps") {
			switch rapid.IntRange(0, 9).Draw(rt, "op") {
			case 0, 1: // create
				id := ids.Draw(rt, "id")
				// Few task names and principals, so that keys collide
				// both inside and across idempotency scopes.
				name := rapid.SampledFrom([]string{"p/x", "p/y"}).Draw(rt, "task")
				principal := rapid.SampledFrom([]string{"", "alice", "bob"}).Draw(rt, "principal")
				mk := func() *Task {
					return &Task{ID: id, Task: name, Plan: "p", Principal: principal, Status: 1, Labels: nil, Data: []byte(id)}
				}
				a, b := mk(), mk()
				key := rapid.SampledFrom([]string{"", "k1", "k2"}).Draw(rt, "key")
				labels := labelsGen.Draw(rt, "labels")
				st := statuses.Draw(rt, "status")
				fin := finished(rt)
				for _, x := range []*Task{a, b} {
					x.IdempotencyKey, x.Labels, x.Status, x.FinishedAt = key, labels, st, fin
				}
				ea, eb := twoEvents(eventsGen(rt, id))
				ga, da, erra := createTask(ctx, sq, a, ea)
				gb, db, errb := createTask(ctx, mem, b, eb)
				sameErr(rt, step, "create", erra, errb)
				if erra == nil {
					if da != db {
						rt.Fatalf("step %d create %s: dedup %v vs %v", step, id, da, db)
					}
					sameTask(rt, step, ga, gb)
					sameEvents(rt, step, ea, eb)
				}
			case 2: // update
				id := ids.Draw(rt, "id")
				st, fin := statuses.Draw(rt, "status"), finished(rt)
				mk := func() *Task {
					return &Task{ID: id, Task: "p/" + id, Plan: "p", Status: st, Attempt: 1, FinishedAt: fin, Data: []byte("u")}
				}
				ea, eb := twoEvents(eventsGen(rt, id))
				sameErr(rt, step, "update", updateTask(ctx, sq, mk(), ea), updateTask(ctx, mem, mk(), eb))
				sameEvents(rt, step, ea, eb)
			case 3: // append
				ea, eb := twoEvents(eventsGen(rt, ids.Draw(rt, "id")))
				sameErr(rt, step, "append", appendEvents(ctx, sq, ea), appendEvents(ctx, mem, eb))
				sameEvents(rt, step, ea, eb)
			case 4:
				clock.Advance(time.Duration(rapid.IntRange(0, 120).Draw(rt, "minutes")) * time.Minute)
			case 5:
				na, erra := sq.Prune(ctx)
				nb, errb := mem.Prune(ctx)
				sameErr(rt, step, "prune", erra, errb)
				if na != nb {
					rt.Fatalf("step %d prune: %d vs %d rows", step, na, nb)
				}
			case 6: // list
				q := Query{PageSize: rapid.IntRange(1, 4).Draw(rt, "page")}
				if rapid.Bool().Draw(rt, "by status") {
					q.Status = statuses.Draw(rt, "status")
				}
				sel, err := ParseSelector(rapid.SampledFrom([]string{"", "env=a", "env!=a", "gpu", "!gpu", "env=b,!gpu", "gpu,env"}).Draw(rt, "selector"))
				if err != nil {
					rt.Fatal(err)
				}
				q.Selector = sel
				la, lb := listIDs(rt, sq, q), listIDs(rt, mem, q)
				if !slices.Equal(la, lb) {
					rt.Fatalf("step %d list %+v: %v vs %v", step, q, la, lb)
				}
			case 7: // events
				after := uint64(rapid.IntRange(0, 20).Draw(rt, "after"))
				f := EventFilter{HooksOnly: rapid.Bool().Draw(rt, "hooks")}
				if rapid.Bool().Draw(rt, "by task") {
					f.TaskID = ids.Draw(rt, "task")
				}
				if rapid.Bool().Draw(rt, "by type") {
					f.Types = []string{"b"}
				}
				limit := rapid.IntRange(0, 5).Draw(rt, "limit")
				ea, erra := sq.Events(ctx, after, f, limit)
				eb, errb := mem.Events(ctx, after, f, limit)
				sameErr(rt, step, "events", erra, errb)
				sameEvents(rt, step, ea, eb)
				oa, la, _ := sq.EventBounds(ctx)
				ob, lb, _ := mem.EventBounds(ctx)
				if oa != ob || la != lb {
					rt.Fatalf("step %d bounds: %d..%d vs %d..%d", step, oa, la, ob, lb)
				}
			case 8: // get
				id := ids.Draw(rt, "id")
				ta, erra := sq.GetTask(ctx, id)
				tb, errb := mem.GetTask(ctx, id)
				sameErr(rt, step, "get", erra, errb)
				if erra == nil {
					sameTask(rt, step, ta, tb)
				}
			case 9:
				st := statuses.Draw(rt, "status")
				ta, _ := sq.TasksWithStatus(ctx, st, 1)
				tb, _ := mem.TasksWithStatus(ctx, st, 1)
				if len(ta) != len(tb) {
					rt.Fatalf("step %d TasksWithStatus: %d vs %d tasks", step, len(ta), len(tb))
				}
				for i := range ta {
					sameTask(rt, step, ta[i], tb[i])
				}
			}
		}
	})
}

func listIDs(rt *rapid.T, db DB, q Query) []string {
	var ids []string
	for range 100 {
		tasks, next, err := db.ListTasks(context.Background(), q)
		if err != nil {
			rt.Fatal(err)
		}
		for _, t := range tasks {
			ids = append(ids, t.ID)
		}
		if next == "" {
			return ids
		}
		q.PageToken = next
	}
	rt.Fatal("pagination does not end")
	return nil
}

func sameErr(rt *rapid.T, step int, what string, a, b error) {
	kind := func(err error) string {
		for _, k := range []error{ErrExists, ErrNotFound, ErrInvalid, ErrClosed} {
			if errors.Is(err, k) {
				return k.Error()
			}
		}
		if err != nil {
			return "other: " + err.Error()
		}
		return "nil"
	}
	if kind(a) != kind(b) {
		rt.Fatalf("step %d %s: sqlite error %v, memory error %v", step, what, a, b)
	}
}

func sameTask(rt *rapid.T, step int, a, b *Task) {
	if fmt.Sprint(a.ID, a.Task, a.Plan, a.Principal, a.Status, a.Priority, a.Attempt, a.IdempotencyKey, a.Arrival, a.Labels, string(a.Data)) !=
		fmt.Sprint(b.ID, b.Task, b.Plan, b.Principal, b.Status, b.Priority, b.Attempt, b.IdempotencyKey, b.Arrival, b.Labels, string(b.Data)) ||
		!a.CreatedAt.Equal(b.CreatedAt) || !a.FinishedAt.Equal(b.FinishedAt) {
		rt.Fatalf("step %d: sqlite task %+v\nmemory task %+v", step, a, b)
	}
}

func sameEvents(rt *rapid.T, step int, a, b []Event) {
	if len(a) != len(b) {
		rt.Fatalf("step %d: %d vs %d events", step, len(a), len(b))
	}
	for i := range a {
		if a[i].Seq != b[i].Seq || a[i].TaskID != b[i].TaskID || a[i].Type != b[i].Type || a[i].Hook != b[i].Hook || !a[i].Time.Equal(b[i].Time) {
			rt.Fatalf("step %d event %d: sqlite %+v, memory %+v", step, i, a[i], b[i])
		}
	}
}
