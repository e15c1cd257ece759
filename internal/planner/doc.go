// Package planner brings a system into a required state before a task runs:
// it detects the current state by running the state map's check tasks,
// finds the cheapest path of transitions (Dijkstra, a pure function), runs
// each transition, verifies arrival, and replans on failure.
//
// The planner does not run tasks itself; a Runner supplied by the caller
// (the execution manager) runs check and transition tasks as real child
// tasks under the parent's admitted resources and timeout.
package planner
