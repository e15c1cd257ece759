package plan

import "time"

// StateMap is a plan's parsed and validated states_map.yaml.
type StateMap struct {
	File        string // absolute path of states_map.yaml
	States      map[string]*State
	Transitions []*Transition
	Planning    PlanningConfig
	// Scope is the resource pool whose instances each have their own
	// state (states_map.yaml scope: <pool>); "" for scope: plan, one state
	// for the plan.
	Scope               string
	ScopeLine, ScopeCol int
}

// State is one named state; it holds when its Check task succeeds with a
// truthy result.
type State struct {
	Name       string
	Check      string // task name inside the plan, e.g. "checks/logged_in"
	Priority   int
	Sequential bool
	Line       int
}

// Transition moves the system from one state to another by running Task.
type Transition struct {
	From, To, Task string
	Cost           float64
	Line           int
}

// PlanningConfig tunes the planner's replan loop.
type PlanningConfig struct {
	MaxReplans    int
	ReplanDelay   time.Duration
	VerifyRetries int
	VerifyDelay   time.Duration
}

// defaultPlanning is the planning configuration used when states_map.yaml
// has no planning section (or leaves a field out).
var defaultPlanning = PlanningConfig{
	MaxReplans:    10,
	ReplanDelay:   time.Second,
	VerifyRetries: 5,
	VerifyDelay:   500 * time.Millisecond,
}
