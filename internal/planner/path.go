package planner

import (
	"container/heap"
	"errors"
	"fmt"
	"math"

	"github.com/aura-dev/aura/internal/plan"
)

var (
	// ErrUnknownState: a state named by the caller is not in the state map.
	ErrUnknownState = errors.New("unknown state")
	// ErrNoPath: no chain of transitions leads to the target.
	ErrNoPath = errors.New("no path")
	// ErrInvalidCost: a transition cost is negative or not a number.
	ErrInvalidCost = errors.New("invalid transition cost")
)

// Path is a chain of transitions and its total cost.
type Path struct {
	Transitions []*plan.Transition
	Cost        float64
}

// graph is a state map indexed for path search: states are numbered and
// the transitions out of (or, reversed, into) each state sit in one slice.
type graph struct {
	sm    *plan.StateMap
	index map[string]int32
	names []string
	start []int32   // edges of node i: adj[start[i]:start[i+1]]
	adj   []int32   // transition index into sm.Transitions
	other []int32   // node at the far end of adj[k]
	cost  []float64 // cost of adj[k]
}

// newGraph indexes sm; reverse follows transitions backwards (to reach a
// target from everywhere).
func newGraph(sm *plan.StateMap, reverse bool) (*graph, error) {
	g := &graph{sm: sm, index: make(map[string]int32, len(sm.States))}
	node := func(name string) int32 {
		i, ok := g.index[name]
		if !ok {
			i = int32(len(g.names))
			g.index[name] = i
			g.names = append(g.names, name)
		}
		return i
	}
	for name := range sm.States {
		node(name)
	}
	ends := make([][2]int32, len(sm.Transitions))
	for k, tr := range sm.Transitions {
		if tr.Cost < 0 || math.IsNaN(tr.Cost) {
			return nil, fmt.Errorf("transition %q -> %q (task %q) cost %v: %w", tr.From, tr.To, tr.Task, tr.Cost, ErrInvalidCost)
		}
		f, t := node(tr.From), node(tr.To)
		if reverse {
			f, t = t, f
		}
		ends[k] = [2]int32{f, t}
	}
	n := len(g.names)
	g.start = make([]int32, n+1)
	for _, e := range ends {
		g.start[e[0]+1]++
	}
	for i := range n {
		g.start[i+1] += g.start[i]
	}
	g.adj = make([]int32, len(ends))
	g.other = make([]int32, len(ends))
	g.cost = make([]float64, len(ends))
	fill := make([]int32, n)
	for k, e := range ends {
		pos := g.start[e[0]] + fill[e[0]]
		fill[e[0]]++
		g.adj[pos] = int32(k)
		g.other[pos] = e[1]
		g.cost[pos] = sm.Transitions[k].Cost
	}
	return g, nil
}

// search runs Dijkstra from src. It stops once stop is settled (stop < 0:
// never). Ties in cost go to fewer transitions, then to the transition
// declared first.
func (g *graph) search(src, stop int32) (dist []float64, via []int32) {
	n := len(g.names)
	dist = make([]float64, n)
	hops := make([]int32, n)
	via = make([]int32, n)
	done := make([]bool, n)
	for i := range dist {
		dist[i] = math.Inf(1)
		via[i] = -1
	}
	dist[src] = 0
	pq := &nodeQueue{{node: src}}
	for pq.Len() > 0 {
		it := heap.Pop(pq).(nodeItem)
		if done[it.node] {
			continue
		}
		done[it.node] = true
		if it.node == stop {
			break
		}
		for k := g.start[it.node]; k < g.start[it.node+1]; k++ {
			next := g.other[k]
			d, h := it.dist+g.cost[k], it.hops+1
			if done[next] || d > dist[next] || (d == dist[next] && h >= hops[next]) {
				continue
			}
			dist[next], hops[next], via[next] = d, h, g.adj[k]
			heap.Push(pq, nodeItem{node: next, dist: d, hops: h})
		}
	}
	return dist, via
}

// path returns the cheapest path from one state to another.
func (g *graph) path(from, to string) (Path, error) {
	src, ok1 := g.index[from]
	dst, ok2 := g.index[to]
	if !ok1 || !ok2 {
		return Path{}, fmt.Errorf("from %q to %q: %w", from, to, ErrUnknownState)
	}
	dist, via := g.search(src, dst)
	if math.IsInf(dist[dst], 1) {
		return Path{}, fmt.Errorf("from %q to %q: %w", from, to, ErrNoPath)
	}
	var n int
	for v := dst; v != src; v = g.index[g.sm.Transitions[via[v]].From] {
		n++
	}
	p := Path{Transitions: make([]*plan.Transition, n), Cost: dist[dst]}
	for v := dst; v != src; v = g.index[g.sm.Transitions[via[v]].From] {
		n--
		p.Transitions[n] = g.sm.Transitions[via[v]]
	}
	return p, nil
}

func checkStates(sm *plan.StateMap, names ...string) error {
	if sm == nil {
		return fmt.Errorf("no state map: %w", ErrUnknownState)
	}
	for _, s := range names {
		if _, ok := sm.States[s]; !ok {
			return fmt.Errorf("state %q: %w", s, ErrUnknownState)
		}
	}
	return nil
}

// FindPath returns the cheapest chain of transitions from one state to
// another; from == to is the empty path. Equal costs go to the path with
// fewer transitions. It is pure: no I/O, no goroutines.
func FindPath(sm *plan.StateMap, from, to string) (Path, error) {
	if err := checkStates(sm, from, to); err != nil {
		return Path{}, fmt.Errorf("find path %q -> %q: %w", from, to, err)
	}
	if from == to {
		return Path{}, nil
	}
	g, err := newGraph(sm, false)
	if err != nil {
		return Path{}, err
	}
	return g.path(from, to)
}

// DistancesTo returns each state's cheapest path cost to target (+Inf when
// target cannot be reached from it; 0 for target itself). It is pure.
func DistancesTo(sm *plan.StateMap, target string) (map[string]float64, error) {
	if err := checkStates(sm, target); err != nil {
		return nil, fmt.Errorf("distances to %q: %w", target, err)
	}
	return distancesTo(sm, target)
}

// distancesTo returns each state's path cost to target (+Inf when target
// cannot be reached from it).
func distancesTo(sm *plan.StateMap, target string) (map[string]float64, error) {
	g, err := newGraph(sm, true)
	if err != nil {
		return nil, err
	}
	dist, _ := g.search(g.index[target], -1)
	out := make(map[string]float64, len(g.names))
	for i, name := range g.names {
		out[name] = dist[i]
	}
	return out, nil
}

type nodeItem struct {
	node int32
	hops int32
	dist float64
}

func (a nodeItem) less(b nodeItem) bool {
	if a.dist != b.dist {
		return a.dist < b.dist
	}
	return a.hops < b.hops
}

// nodeQueue is a min-heap of nodeItems, ordered by less, for container/heap.
// The standard heap boxes each pushed item (an allocation); a hand-rolled
// heap measured no faster on state maps of a real plan's size (tens of
// states) and about 1.5 times faster only on 1000 states, a size no plan
// has, next to planning's real cost, the check and transition tasks.
type nodeQueue []nodeItem

func (q nodeQueue) Len() int           { return len(q) }
func (q nodeQueue) Less(i, j int) bool { return q[i].less(q[j]) }
func (q nodeQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *nodeQueue) Push(x any)        { *q = append(*q, x.(nodeItem)) }
func (q *nodeQueue) Pop() any {
	h := *q
	it := h[len(h)-1]
	*q = h[:len(h)-1]
	return it
}
