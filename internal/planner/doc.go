// Package planner brings a system into a task's required initial state: it
// detects the current state by running the state map's check tasks, finds
// the cheapest chain of transitions (FindPath, Dijkstra, pure), runs each
// transition, verifies arrival with bounded retries, and replans on failure
// up to the state map's max_replans, ending in an *Error that says where it
// got stuck.
//
// The planner runs no tasks itself: a Runner supplied by the caller (the
// execution manager) runs check and transition tasks as real child tasks,
// under the parent's admitted resources and inside its timeout. Runner calls
// carry a context marked WithPlanning, so a check or transition task that
// itself requires an initial state is refused instead of recursing.
package planner
