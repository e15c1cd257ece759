package plan

import (
	"reflect"
	"testing"
	"time"
)

func TestDependsForms(t *testing.T) {
	set, err := Load("testdata/good", Options{SkipBroken: true})
	if err != nil {
		t.Fatal(err)
	}
	tk, err := set.Task("ok/graph")
	if err != nil {
		t.Fatal(err)
	}
	if tk.Sequential {
		t.Fatal("a map of steps is a graph")
	}
	byID := map[string]*Step{}
	var order []string
	for i, s := range tk.Steps {
		if s.Index != i {
			t.Errorf("step %s has index %d at %d", s.ID, s.Index, i)
		}
		byID[s.ID] = s
		order = append(order, s.ID)
	}
	if !reflect.DeepEqual(order, []string{"a", "b", "c", "d", "e", "f", "g"}) {
		t.Errorf("steps keep declaration order; got %v", order)
	}
	dep := func(id string, on Condition) Dependency { return Dependency{ID: id, Step: byID[id].Index, On: on} }
	tests := []struct {
		step string
		want Depends
	}{
		{"a", Depends{}},
		{"b", Depends{On: []Dependency{dep("a", OnSuccess)}}},
		{"c", Depends{On: []Dependency{dep("a", OnSuccess), dep("b", OnSuccess)}}},
		{"d", Depends{On: []Dependency{dep("a", OnSuccess), dep("b", OnFailure)}}},
		{"e", Depends{Mode: DependAny, On: []Dependency{dep("c", OnSuccess), dep("d", OnSuccess)}}},
		{"f", Depends{On: []Dependency{dep("a", OnDone), dep("e", OnSuccess)}}},
	}
	for _, tc := range tests {
		got := byID[tc.step].Depends
		if len(got.On) == 0 {
			got.On = nil
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s depends = %+v, want %+v", tc.step, got, tc.want)
		}
	}
	g := byID["g"]
	wantRetry := Retry{MaxAttempts: 4, Delay: 10 * time.Millisecond, Backoff: 3, MaxDelay: time.Second}
	if g.Retry != wantRetry || g.Timeout != 2*time.Second || g.Lane != "cpu" || !g.ContinueOnFailure || g.When == nil {
		t.Errorf("step g = %+v", g)
	}
	if g.Loop == nil || g.Loop.Parallelism != 2 || g.Loop.ForEach == nil || g.Loop.Times != nil {
		t.Errorf("loop = %+v", g.Loop)
	}
}
