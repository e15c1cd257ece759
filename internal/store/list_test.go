package store

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
)

func TestParseSelector(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []LabelReq
		err  bool
	}{
		{"", nil, false},
		{"env=prod", []LabelReq{{"env", LabelEquals, "prod"}}, false},
		{"env==prod", []LabelReq{{"env", LabelEquals, "prod"}}, false},
		{"env!=prod", []LabelReq{{"env", LabelNotEquals, "prod"}}, false},
		{"gpu", []LabelReq{{"gpu", LabelExists, ""}}, false},
		{"!gpu", []LabelReq{{"gpu", LabelNotExists, ""}}, false},
		{" env = prod , !gpu, team,x.io/tier!=web ", []LabelReq{
			{"env", LabelEquals, "prod"}, {"gpu", LabelNotExists, ""}, {"team", LabelExists, ""}, {"x.io/tier", LabelNotEquals, "web"},
		}, false},
		{"env=", []LabelReq{{"env", LabelEquals, ""}}, false},
		{"=prod", nil, true},
		{"env=prod,", nil, true},
		{"env=pr od", nil, true},
		{"!", nil, true},
		{"a in (b)", nil, true},
		{"schedule=reports/daily", []LabelReq{{"schedule", LabelEquals, "reports/daily"}}, false},
		{"env=a:b", nil, true},
	} {
		got, err := ParseSelector(c.in)
		if (err != nil) != c.err {
			t.Errorf("ParseSelector(%q) error = %v, want error %v", c.in, err, c.err)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("ParseSelector(%q) error %v is not ErrInvalid", c.in, err)
			}
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseSelector(%q) = %v, want %v", c.in, got, c.want)
		}
	}
}

// seedTasks creates n tasks with varied status, plan and labels.
func seedTasks(t *testing.T, db DB, n int) []*Task {
	t.Helper()
	ctx := context.Background()
	var out []*Task
	for i := range n {
		task := newTask(fmt.Sprintf("t%04d", i))
		task.Status = int32(1 + i%3)
		task.Plan = []string{"alpha", "beta"}[i%2]
		task.Labels = map[string]string{"env": []string{"prod", "dev", "test"}[i%3]}
		if i%4 == 0 {
			task.Labels["gpu"] = "true"
		}
		if i%5 == 0 {
			task.Labels = nil
		}
		got, _, err := createTask(ctx, db, task, queued(task.ID))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, got)
	}
	return out
}

// listAll pages through q and returns the IDs in order.
func listAll(t *testing.T, db DB, q Query, between func()) []string {
	t.Helper()
	var ids []string
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("pagination does not end")
		}
		tasks, next, err := db.ListTasks(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		if q.PageSize > 0 && len(tasks) > q.PageSize {
			t.Fatalf("page of %d tasks, page size %d", len(tasks), q.PageSize)
		}
		for _, task := range tasks {
			ids = append(ids, task.ID)
		}
		if next == "" {
			return ids
		}
		if between != nil {
			between()
		}
		q.PageToken = next
	}
}

func TestListTasksFiltersAndSelectors(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			db := b.open(t, Options{})
			all := seedTasks(t, db, 120)
			for _, c := range []struct {
				status int32
				plan   string
				sel    string
			}{
				{0, "", ""},
				{2, "", ""},
				{0, "beta", ""},
				{3, "alpha", ""},
				{0, "", "env=prod"},
				{0, "", "env!=prod"},
				{0, "", "gpu"},
				{0, "", "!gpu"},
				{0, "", "env=dev,gpu"},
				{0, "", "!gpu,env==test"},
				{1, "alpha", "env=prod,gpu"},
				{2, "", "env!=dev,!gpu"},
				{0, "", "env=nope"},
			} {
				sel, err := ParseSelector(c.sel)
				if err != nil {
					t.Fatal(err)
				}
				var want []string
				for i := len(all) - 1; i >= 0; i-- {
					task := all[i]
					if (c.status == 0 || task.Status == c.status) && (c.plan == "" || task.Plan == c.plan) && MatchesAll(sel, task.Labels) {
						want = append(want, task.ID)
					}
				}
				got := listAll(t, db, Query{Status: c.status, Plan: c.plan, Selector: sel, PageSize: 7}, nil)
				if !reflect.DeepEqual(got, want) {
					t.Errorf("status %d plan %q selector %q:\n got %v\nwant %v", c.status, c.plan, c.sel, got, want)
				}
			}
		})
	}
}

func TestListTasksPaginationStableUnderInserts(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			db := b.open(t, Options{})
			all := seedTasks(t, db, 250)
			extra := 0
			insert := func() {
				extra++
				id := fmt.Sprintf("late%03d", extra)
				if _, _, err := createTask(context.Background(), db, newTask(id), nil); err != nil {
					t.Fatal(err)
				}
			}
			got := listAll(t, db, Query{PageSize: 9}, insert)
			if len(got) != len(all) {
				t.Fatalf("listed %d tasks, want the %d that existed when listing began", len(got), len(all))
			}
			for i, id := range got {
				if want := all[len(all)-1-i].ID; id != want {
					t.Fatalf("position %d: %s, want %s (newest first, no duplicates, no gaps)", i, id, want)
				}
			}
			first, _, err := db.ListTasks(context.Background(), Query{PageSize: 1})
			if err != nil || len(first) != 1 || first[0].ID != fmt.Sprintf("late%03d", extra) {
				t.Fatalf("first page after inserts = %v, %v; want the newest task", first, err)
			}
			page, _, err := db.ListTasks(context.Background(), Query{})
			if err != nil || len(page) != defaultPageSize {
				t.Fatalf("default page has %d tasks (%v), want %d", len(page), err, defaultPageSize)
			}
			if _, _, err := db.ListTasks(context.Background(), Query{PageToken: "garbage!"}); !errors.Is(err, ErrInvalid) {
				t.Fatalf("bad page token: %v, want ErrInvalid", err)
			}
		})
	}
}

func TestTasksWithStatusInArrivalOrder(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			db := b.open(t, Options{})
			all := seedTasks(t, db, 30)
			got, err := db.TasksWithStatus(context.Background(), 1, 3)
			if err != nil {
				t.Fatal(err)
			}
			var want, ids []string
			for _, task := range all {
				if task.Status == 1 || task.Status == 3 {
					want = append(want, task.ID)
				}
			}
			for _, task := range got {
				ids = append(ids, task.ID)
			}
			if !reflect.DeepEqual(ids, want) {
				t.Fatalf("TasksWithStatus = %v, want %v", ids, want)
			}
		})
	}
}
