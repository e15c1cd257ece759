package cluster

import (
	"fmt"
	"hash/fnv"
	"slices"
	"sort"
	"strings"

	"github.com/aura-dev/aura/internal/admission"
)

// Placement is where a submission goes, and why (for the log).
type Placement struct {
	Node   string
	Reason string
}

// NoNodeError says that no live node has what a submission's tags ask for:
// the instance (or pool) may be plugged into a node that is down, or may
// not exist at all.
type NoNodeError struct {
	Tag  string // the tag no live node can serve
	Have string // what the live nodes have of that pool, for the message
}

func (e *NoNodeError) Error() string {
	return fmt.Sprintf("resource tag %s: no live node has it (live: %s); if it is plugged into a node that is down, start that node and submit again; `auractl nodes` lists what each live node has", e.Tag, e.Have)
}

// Place decides which node a submission runs on. It is a pure function of
// the live nodes (self among them), the submission's resource tags as
// rendered, and affinity, which is empty or names the submission for
// idempotency (principal, task and idempotency key):
//
//   - A tag <pool>:<instance> keeps the nodes that have that instance; a
//     tag <pool>:* keeps the nodes that have the pool. A tag is a pool's
//     when some live node declares a pool of that name; every other tag is
//     a counting resource, which any node can serve.
//   - With an affinity, the nodes kept are ranked by rendezvous hashing of
//     it, so a retried submission reaches the same node (and its
//     idempotency key finds the first one) for as long as the nodes that
//     can serve it stay the same.
//   - Otherwise, with <pool>:* tags: self when it has a free instance of
//     each, else the node with the most free instances, else the one with
//     the shortest queue (self on a tie).
//   - Otherwise (only named instances and counting resources): self when
//     it is kept and not saturated (its running tasks fill its capacity);
//     else the unsaturated node kept with the shortest queue; when all are
//     saturated, self if kept, else the shortest queue.
func Place(self string, nodes []Node, tags []string, affinity string) (Placement, error) {
	return place(self, nodes, tags, affinity, false)
}

// PlaceElsewhere is Place for a task that must leave self (a draining
// node's queued task): self's pools still decide which tags are a pool's,
// so a task naming an instance only self has is a NoNodeError rather than
// a counting resource elsewhere.
func PlaceElsewhere(self string, nodes []Node, tags []string) (Placement, error) {
	return place(self, nodes, tags, "", true)
}

func place(self string, nodes []Node, tags []string, affinity string, leave bool) (Placement, error) {
	kept := slices.Clone(nodes)
	if leave {
		kept = slices.DeleteFunc(kept, func(n Node) bool { return n.Name == self })
		if len(kept) == 0 {
			return Placement{}, &NoNodeError{Tag: strings.Join(tags, ","), Have: "no other live node"}
		}
	}
	var anyPools []string
	for _, raw := range tags {
		tag, err := admission.ParseTag(raw)
		if err != nil {
			// The node that takes it refuses it with its own message.
			continue
		}
		if pool := admission.PoolOf(tag.Key); pool != "" {
			if !declared(nodes, pool) {
				continue // the local check names the missing pool
			}
			anyPools = append(anyPools, pool)
			kept = slices.DeleteFunc(kept, func(n Node) bool { return len(n.Pools[pool]) == 0 })
			if len(kept) == 0 {
				return Placement{}, &NoNodeError{Tag: raw, Have: have(nodes, pool)}
			}
			continue
		}
		pool, inst, ok := strings.Cut(tag.Key, ":")
		if !ok || !declared(nodes, pool) {
			continue // a counting resource
		}
		kept = slices.DeleteFunc(kept, func(n Node) bool { return !slices.Contains(n.Pools[pool], inst) })
		if len(kept) == 0 {
			return Placement{}, &NoNodeError{Tag: raw, Have: have(nodes, pool)}
		}
	}
	if len(kept) == 0 {
		return Placement{}, &NoNodeError{Tag: strings.Join(tags, ","), Have: "no live node"}
	}
	if affinity != "" {
		return Placement{Node: rendezvous(kept, affinity), Reason: "idempotency key: rendezvous hash"}, nil
	}
	selfNode, selfKept := find(kept, self)
	if len(anyPools) > 0 {
		if selfKept && freeIn(selfNode, anyPools) > 0 {
			return Placement{Node: self, Reason: "free instance here"}, nil
		}
		best, bestFree := "", 0
		for _, n := range kept {
			if f := freeIn(n, anyPools); f > bestFree {
				best, bestFree = n.Name, f
			}
		}
		if best != "" {
			return Placement{Node: best, Reason: "free instance"}, nil
		}
		return Placement{Node: shortestQueue(kept, self), Reason: "no free instance: shortest queue"}, nil
	}
	if selfKept && !saturated(selfNode) {
		return Placement{Node: self, Reason: "where submitted"}, nil
	}
	var open []Node
	for _, n := range kept {
		if !saturated(n) {
			open = append(open, n)
		}
	}
	if len(open) > 0 {
		return Placement{Node: shortestQueue(open, self), Reason: "shortest queue of the unsaturated nodes"}, nil
	}
	if selfKept {
		return Placement{Node: self, Reason: "every node saturated: where submitted"}, nil
	}
	return Placement{Node: shortestQueue(kept, self), Reason: "every node saturated: shortest queue"}, nil
}

// declared reports whether some live node declares pool.
func declared(nodes []Node, pool string) bool {
	for _, n := range nodes {
		if len(n.Pools[pool]) > 0 {
			return true
		}
	}
	return false
}

// have lists each live node's instances of pool, as instance@node.
func have(nodes []Node, pool string) string {
	var out []string
	for _, n := range nodes {
		for _, inst := range n.Pools[pool] {
			out = append(out, inst+"@"+n.Name)
		}
	}
	if len(out) == 0 {
		return "no instance of pool " + pool
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

func find(nodes []Node, name string) (Node, bool) {
	for _, n := range nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// freeIn is how many free instances n has of the pools, 0 when it lacks
// a free one of any of them.
func freeIn(n Node, pools []string) int {
	total := 0
	for _, p := range pools {
		f := len(n.Free[p])
		if f == 0 {
			return 0
		}
		total += f
	}
	return total
}

// saturated reports whether n's running tasks fill its global limit, so
// that another task would wait in its queue.
func saturated(n Node) bool { return n.Capacity > 0 && n.Running >= n.Capacity }

// shortestQueue is the node with the fewest queued tasks; self wins a tie,
// then the first by name (nodes come sorted by name).
func shortestQueue(nodes []Node, self string) string {
	best := nodes[0]
	for _, n := range nodes[1:] {
		if n.Queued < best.Queued || (n.Queued == best.Queued && n.Name == self) {
			best = n
		}
	}
	return best.Name
}

// rendezvous is the node ranked first for key by highest-random-weight
// hashing: the same key picks the same node among the same nodes, and a
// node joining or leaving moves only the keys it wins or held.
func rendezvous(nodes []Node, key string) string {
	best, bestScore := "", uint64(0)
	for _, n := range nodes {
		h := fnv.New64a()
		h.Write([]byte(key))
		h.Write([]byte{0})
		h.Write([]byte(n.Name))
		if s := mix(h.Sum64()); best == "" || s > bestScore {
			best, bestScore = n.Name, s
		}
	}
	return best
}

// mix is splitmix64's finalizer: FNV alone scores names that differ only
// in their last byte too much alike.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}
