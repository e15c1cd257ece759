// Package planner brings a system into a task's required initial state: it
// detects the current state by running the state map's check tasks, finds
// the cheapest chain of transitions (FindPath, Dijkstra, pure), runs each
// transition, verifies arrival with bounded retries, and replans on failure
// up to the state map's max_replans, ending in an *Error that says where it
// got stuck.
//
// The planner runs no tasks itself: a Runner supplied by the caller (the
// execution manager) runs them, under the planned task's admitted
// resources and inside its timeout. The execution manager runs a check
// inline (its steps, unrecorded: only its answer matters) and a transition
// as a recorded child task that skips planning. Runner calls carry a
// context marked WithPlanning, and Reach refuses to start under such a
// context (ErrRecursivePlanning), so planning never nests.
package planner
