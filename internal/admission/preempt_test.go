package admission

import (
	"slices"
	"testing"
)

// holder is an admitted request of a preemption table: its priority, its
// tags, whether it is preemptible.
type holder struct {
	id          string
	prio        int32
	tags        []string
	preemptible bool
}

// asker is a waiting request of a preemption table.
type asker struct {
	id      string
	prio    int32
	tags    []string
	preempt bool
}

func TestPreemptionsChooseTheVictim(t *testing.T) {
	rows := []struct {
		name    string
		holders []holder
		waiters []asker
		busy    []string
		want    []Preemption
	}{
		{name: "a preempt task takes the instance of a lower-priority preemptible holder",
			holders: []holder{{"low", 1, []string{"device:*"}, true}},
			waiters: []asker{{"high", 5, []string{"device:*"}, true}},
			want:    []Preemption{{"high", "low"}}},
		{name: "a holder not marked preemptible is never preempted",
			holders: []holder{{"low", 1, []string{"device:*"}, false}},
			waiters: []asker{{"high", 5, []string{"device:*"}, true}}},
		{name: "a waiter without preempt waits",
			holders: []holder{{"low", 1, []string{"device:*"}, true}},
			waiters: []asker{{"high", 5, []string{"device:*"}, false}}},
		{name: "equal priority is not lower",
			holders: []holder{{"same", 5, []string{"device:*"}, true}},
			waiters: []asker{{"high", 5, []string{"device:*"}, true}}},
		{name: "the lowest priority goes first",
			holders: []holder{{"mid", 3, []string{"device:*"}, true}, {"low", 1, []string{"device:*"}, true}},
			waiters: []asker{{"high", 5, []string{"device:*"}, true}},
			want:    []Preemption{{"high", "low"}}},
		{name: "among equals the latest to arrive goes (the least work lost)",
			holders: []holder{{"first", 1, []string{"device:*"}, true}, {"second", 1, []string{"device:*"}, true}},
			waiters: []asker{{"high", 5, []string{"device:*"}, true}},
			want:    []Preemption{{"high", "second"}}},
		{name: "a named instance is taken only from its holder",
			holders: []holder{{"on-a", 1, []string{"device:a"}, true}, {"on-b", 0, []string{"device:b"}, true}},
			waiters: []asker{{"high", 5, []string{"device:a"}, true}},
			want:    []Preemption{{"high", "on-a"}}},
		{name: "the victim must hold every slot the waiter asks for",
			holders: []holder{{"low", 1, []string{"device:*"}, true}},
			waiters: []asker{{"high", 5, []string{"device:*", "gpu"}, true}}},
		{name: "a victim with more than the waiter asks covers it",
			holders: []holder{{"low", 1, []string{"device:*", "gpu"}, true}},
			waiters: []asker{{"high", 5, []string{"device:*"}, true}},
			want:    []Preemption{{"high", "low"}}},
		{name: "a waiter for no instance preempts nobody",
			holders: []holder{{"low", 1, []string{"device:*", "gpu"}, true}},
			waiters: []asker{{"high", 5, []string{"gpu"}, true}}},
		{name: "a busy victim (already paused) is passed over",
			holders: []holder{{"low", 1, []string{"device:*"}, true}, {"mid", 2, []string{"device:*"}, true}},
			waiters: []asker{{"high", 5, []string{"device:*"}, true}},
			busy:    []string{"low"},
			want:    []Preemption{{"high", "mid"}}},
		{name: "each victim goes to one waiter, the highest priority first",
			holders: []holder{{"low", 1, []string{"device:*"}, true}, {"pinned", 3, []string{"device:*"}, false}},
			waiters: []asker{{"second", 4, []string{"device:*"}, true}, {"first", 9, []string{"device:*"}, true}},
			want:    []Preemption{{"first", "low"}}},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			q := farm(Config{GlobalLimit: 10, Limits: map[string]int{"gpu": 1}}, "a", "b")
			for _, h := range row.holders {
				if _, err := q.Push(Request{ID: h.id, Priority: h.prio, Tags: tags(t, h.tags...), Preemptible: h.preemptible}); err != nil {
					t.Fatal(err)
				}
				if got := q.Admit(); !slices.Equal(got, []string{h.id}) {
					t.Fatalf("admitting holder %s: admitted %v", h.id, got)
				}
			}
			// Non-preemptible fillers take the instances left, so the
			// waiters must wait.
			for i := 0; ; i++ {
				id := "filler" + string(rune('0'+i))
				if _, err := q.Push(Request{ID: id, Tags: tags(t, "device:*")}); err != nil {
					t.Fatal(err)
				}
				if len(q.Admit()) == 0 {
					q.Remove(id)
					break
				}
			}
			for _, w := range row.waiters {
				if _, err := q.Push(Request{ID: w.id, Priority: w.prio, Tags: tags(t, w.tags...), Preempt: w.preempt}); err != nil {
					t.Fatal(err)
				}
			}
			if got := q.Admit(); len(got) != 0 {
				t.Fatalf("the table's waiters must wait; admitted %v", got)
			}
			got := q.Preemptions(func(id string) bool { return slices.Contains(row.busy, id) })
			if !slices.Equal(got, row.want) {
				t.Fatalf("Preemptions() = %v, want %v", got, row.want)
			}
		})
	}
}

// A preempting request that is admitted or withdrawn is no longer asked
// about.
func TestPreemptionsForgetWaitersThatLeft(t *testing.T) {
	q := farm(Config{GlobalLimit: 10}, "a")
	if _, err := q.Push(Request{ID: "low", Tags: tags(t, "device:*"), Preemptible: true}); err != nil {
		t.Fatal(err)
	}
	q.Admit()
	if _, err := q.Push(Request{ID: "high", Priority: 5, Tags: tags(t, "device:*"), Preempt: true}); err != nil {
		t.Fatal(err)
	}
	if got := q.Preemptions(nil); len(got) != 1 {
		t.Fatalf("Preemptions() = %v", got)
	}
	q.Remove("high")
	if got := q.Preemptions(nil); len(got) != 0 {
		t.Fatalf("after Remove: %v", got)
	}
	if _, err := q.Push(Request{ID: "high2", Priority: 5, Tags: tags(t, "device:*"), Preempt: true}); err != nil {
		t.Fatal(err)
	}
	if got := release(t, q, "low"); !slices.Equal(got, []string{"high2"}) {
		t.Fatalf("admitted %v", got)
	}
	if got := q.Preemptions(nil); len(got) != 0 {
		t.Fatalf("after its admission: %v", got)
	}
}
