package cluster

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// farm is three nodes with a device each (b has two) and a pool of
// phones only on c.
func farm() []Node {
	return []Node{
		{Name: "a", Capacity: 4, Pools: map[string][]string{"device": {"emu-a"}}, Free: map[string][]string{"device": {"emu-a"}}},
		{Name: "b", Capacity: 4, Pools: map[string][]string{"device": {"emu-b1", "emu-b2"}}, Free: map[string][]string{"device": {"emu-b1", "emu-b2"}}},
		{Name: "c", Capacity: 4, Pools: map[string][]string{"device": {"emu-c"}, "phone": {"r58m"}}, Free: map[string][]string{"device": {"emu-c"}, "phone": {"r58m"}}},
	}
}

// with returns the farm after change.
func with(change func(n map[string]*Node)) []Node {
	nodes := farm()
	byName := map[string]*Node{}
	for i := range nodes {
		byName[nodes[i].Name] = &nodes[i]
	}
	change(byName)
	return nodes
}

func busy(n *Node, pool string) { n.Free = map[string][]string{pool: nil} }

func TestPlace(t *testing.T) {
	for _, tc := range []struct {
		name  string
		self  string
		nodes []Node
		tags  []string
		want  string
	}{
		{"a named instance on another node goes there", "a", farm(), []string{"device:emu-c"}, "c"},
		{"a named instance here stays", "b", farm(), []string{"device:emu-b2"}, "b"},
		{"a limit written on the tag changes nothing", "a", farm(), []string{"device:emu-c:1"}, "c"},
		{"a pool only another node has", "a", farm(), []string{"phone:*"}, "c"},
		{"any instance: a free one here first", "a", farm(), []string{"device:*"}, "a"},
		{"any instance: none free here, the node with the most free", "a", with(func(n map[string]*Node) { busy(n["a"], "device") }), []string{"device:*"}, "b"},
		{"any instance: none free anywhere, the shortest queue", "a", with(func(n map[string]*Node) {
			for _, x := range n {
				busy(x, "device")
			}
			n["a"].Queued, n["b"].Queued, n["c"].Queued = 5, 3, 1
		}), []string{"device:*"}, "c"},
		{"any instance: a tie on the queue keeps self", "b", with(func(n map[string]*Node) {
			for _, x := range n {
				busy(x, "device")
			}
		}), []string{"device:*"}, "b"},
		{"two pools: only a node with both", "a", farm(), []string{"device:*", "phone:*"}, "c"},
		{"a pool and a named instance of another", "b", farm(), []string{"device:*", "phone:r58m"}, "c"},
		{"only counting resources: where submitted", "b", farm(), []string{"api:openai:5", "db"}, "b"},
		{"no tags: where submitted", "c", farm(), nil, "c"},
		{"saturated here: the unsaturated node with the shortest queue", "a", with(func(n map[string]*Node) {
			n["a"].Running, n["a"].Queued = 4, 10
			n["b"].Queued, n["c"].Queued = 2, 1
		}), nil, "c"},
		{"every node saturated: where submitted", "a", with(func(n map[string]*Node) {
			for _, x := range n {
				x.Running, x.Queued = 4, 1
			}
			n["a"].Queued = 9
		}), nil, "a"},
		{"saturated owner of a named instance still gets it", "a", with(func(n map[string]*Node) { n["c"].Running = 4 }), []string{"device:emu-c"}, "c"},
		{"no capacity published: never saturated", "a", with(func(n map[string]*Node) { n["a"].Capacity, n["a"].Running = 0, 50 }), nil, "a"},
		{"a tag under an undeclared pool name is a counting resource", "a", farm(), []string{"gpu:0"}, "a"},
		{"a malformed tag is left to the node's own check", "a", farm(), []string{"device:emu-c", "x:0"}, "c"},
		{"self outside the live set (its session lapsed)", "z", farm(), nil, "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Place(tc.self, tc.nodes, tc.tags, "")
			if err != nil {
				t.Fatal(err)
			}
			if got.Node != tc.want {
				t.Errorf("Place(%s, %v) = %s (%s); want %s", tc.self, tc.tags, got.Node, got.Reason, tc.want)
			}
		})
	}
}

func TestPlaceRefusesWhatNoLiveNodeHas(t *testing.T) {
	for _, tags := range [][]string{{"device:emu-z"}, {"device:emu-c", "device:emu-a"}, {"phone:*", "device:emu-a"}} {
		_, err := Place("a", farm(), tags, "")
		var none *NoNodeError
		if !errors.As(err, &none) {
			t.Fatalf("%v: got %v; want a NoNodeError", tags, err)
		}
		if !strings.Contains(err.Error(), "emu-b1@b") && !strings.Contains(err.Error(), "r58m@c") {
			t.Errorf("%v: %q does not say what the live nodes have", tags, err)
		}
	}
}

func TestPlaceWithAffinityIsStable(t *testing.T) {
	// The same key reaches the same node whatever the load and wherever
	// it is submitted; different keys spread over the nodes.
	seen := map[string]bool{}
	for i := range 60 {
		key := fmt.Sprintf("alice\x00demo/hello\x00key-%d", i)
		first, err := Place("a", farm(), []string{"device:*"}, key)
		if err != nil {
			t.Fatal(err)
		}
		for _, self := range []string{"b", "c"} {
			loaded := with(func(n map[string]*Node) {
				busy(n[first.Node], "device")
				n[first.Node].Queued = 100
			})
			again, err := Place(self, loaded, []string{"device:*"}, key)
			if err != nil {
				t.Fatal(err)
			}
			if again.Node != first.Node {
				t.Fatalf("key %d went to %s, then to %s from %s", i, first.Node, again.Node, self)
			}
		}
		seen[first.Node] = true
	}
	if len(seen) != 3 {
		t.Errorf("60 keys reached only %v", seen)
	}
	// A named instance wins over the hash: only one node has it.
	for i := range 20 {
		got, _ := Place("a", farm(), []string{"device:emu-a"}, fmt.Sprint(i))
		if got.Node != "a" {
			t.Fatalf("key %d: named instance on a placed on %s", i, got.Node)
		}
	}
}

func TestPlaceElsewhere(t *testing.T) {
	onlyA := []Node{
		{Name: "a", Capacity: 4, Pools: map[string][]string{"device": {"emu-a"}}},
		{Name: "b", Capacity: 4, Queued: 3},
		{Name: "c", Capacity: 4, Queued: 1},
	}
	for _, tc := range []struct {
		name  string
		nodes []Node
		tags  []string
		want  string // "" : it stays
	}{
		{"an instance only here stays, though no other node declares its pool", onlyA, []string{"device:emu-a"}, ""},
		{"a pool only here stays", onlyA, []string{"device:*"}, ""},
		{"only counting resources: the shortest queue elsewhere", onlyA, []string{"api"}, "c"},
		{"any instance: another node with a free one", farm(), []string{"device:*"}, "b"},
		{"a named instance of another node goes there", farm(), []string{"device:emu-c"}, "c"},
		{"alone: stays", onlyA[:1], nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PlaceElsewhere("a", tc.nodes, tc.tags)
			var none *NoNodeError
			switch {
			case tc.want == "" && !errors.As(err, &none):
				t.Errorf("got %v, %v; want it to stay", got, err)
			case tc.want != "" && (err != nil || got.Node != tc.want):
				t.Errorf("got %v, %v; want %s", got, err, tc.want)
			}
		})
	}
}
