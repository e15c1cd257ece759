package planner

import (
	"errors"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/aura-dev/aura/internal/plan"
)

// stateMap builds a state map from state names and "from>to:task:cost" edges.
func stateMap(states []string, edges ...*plan.Transition) *plan.StateMap {
	sm := &plan.StateMap{States: map[string]*plan.State{}, Transitions: edges, Planning: plan.PlanningConfig{
		MaxReplans: 3, ReplanDelay: 1e9, VerifyRetries: 3, VerifyDelay: 5e8}}
	for _, s := range states {
		sm.States[s] = &plan.State{Name: s, Check: "checks/" + s}
	}
	return sm
}

func tr(from, to, task string, cost float64) *plan.Transition {
	return &plan.Transition{From: from, To: to, Task: task, Cost: cost}
}

func tasksOf(p Path) []string {
	var out []string
	for _, t := range p.Transitions {
		out = append(out, t.Task)
	}
	return out
}

func TestFindPath(t *testing.T) {
	sm := stateMap([]string{"a", "b", "c", "d", "island"},
		tr("a", "b", "ab", 1), tr("b", "d", "bd", 1), tr("a", "d", "ad", 5),
		tr("a", "c", "ac", 1), tr("c", "d", "cd", 2), tr("d", "a", "da", 1))
	tests := []struct {
		from, to string
		want     []string
		cost     float64
		err      error
	}{
		{from: "a", to: "b", want: []string{"ab"}, cost: 1},
		{from: "a", to: "d", want: []string{"ab", "bd"}, cost: 2},
		{from: "d", to: "c", want: []string{"da", "ac"}, cost: 2},
		{from: "a", to: "a", want: nil, cost: 0},
		{from: "a", to: "island", err: ErrNoPath},
		{from: "island", to: "a", err: ErrNoPath},
		{from: "a", to: "nowhere", err: ErrUnknownState},
		{from: "nowhere", to: "a", err: ErrUnknownState},
	}
	for _, tt := range tests {
		p, err := FindPath(sm, tt.from, tt.to)
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("FindPath(%s, %s) error %v, want %v", tt.from, tt.to, err, tt.err)
			}
			continue
		}
		if err != nil || !equal(tasksOf(p), tt.want) || p.Cost != tt.cost {
			t.Errorf("FindPath(%s, %s) = %v cost %v, %v; want %v cost %v", tt.from, tt.to, tasksOf(p), p.Cost, err, tt.want, tt.cost)
		}
	}
}

func TestFindPathTiesPreferFewerTransitions(t *testing.T) {
	sm := stateMap([]string{"a", "b", "c", "d"},
		tr("a", "b", "ab", 1), tr("b", "c", "bc", 0), tr("c", "d", "cd", 1), tr("b", "d", "bd", 1))
	p, err := FindPath(sm, "a", "d")
	if err != nil || !equal(tasksOf(p), []string{"ab", "bd"}) {
		t.Fatalf("path %v, %v; want [ab bd] (same cost, fewer transitions)", tasksOf(p), err)
	}
}

func TestFindPathRejectsNegativeCost(t *testing.T) {
	sm := stateMap([]string{"a", "b"}, tr("a", "b", "ab", -1))
	if _, err := FindPath(sm, "a", "b"); !errors.Is(err, ErrInvalidCost) {
		t.Fatalf("error %v, want ErrInvalidCost", err)
	}
	if _, err := FindPath(nil, "a", "b"); !errors.Is(err, ErrUnknownState) {
		t.Fatalf("nil state map: %v, want ErrUnknownState", err)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// bigStateMap is a connected random graph of n states with about 4
// transitions out of each.
func bigStateMap(n int) *plan.StateMap {
	rng := rand.New(rand.NewPCG(7, 9))
	names := make([]string, n)
	for i := range names {
		names[i] = "s" + strconv.Itoa(i)
	}
	var edges []*plan.Transition
	for i := range n {
		edges = append(edges, tr(names[i], names[(i+1)%n], "next"+strconv.Itoa(i), 10))
		for range 3 {
			j := rng.IntN(n)
			edges = append(edges, tr(names[i], names[j], "jump"+strconv.Itoa(i)+"_"+strconv.Itoa(j), float64(1+rng.IntN(20))))
		}
	}
	return stateMap(names, edges...)
}

func BenchmarkFindPath1000States(b *testing.B) {
	sm := bigStateMap(1000)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := FindPath(sm, "s"+strconv.Itoa(i%1000), "s"+strconv.Itoa((i*7+500)%1000)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFindPath20States is the size of a real plan's state map (the
// examples have a handful of states): what a task's planning pays per call.
func BenchmarkFindPath20States(b *testing.B) {
	sm := bigStateMap(20)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := FindPath(sm, "s"+strconv.Itoa(i%20), "s"+strconv.Itoa((i*7+10)%20)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFindPath1000StatesIndexed(b *testing.B) {
	// The search alone, on a graph indexed once (as Reach does per call).
	sm := bigStateMap(1000)
	g, err := newGraph(sm, false)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := g.path("s"+strconv.Itoa(i%1000), "s"+strconv.Itoa((i*7+500)%1000)); err != nil {
			b.Fatal(err)
		}
	}
}
