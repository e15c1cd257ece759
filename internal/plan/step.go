package plan

import (
	"time"

	"github.com/aura-dev/aura/internal/template"
)

// Step is one compiled step of a task.
type Step struct {
	ID     string
	Index  int // position in Task.Steps
	Action string
	// Params is the compiled params mapping; nil when the step has none.
	Params template.Value
	// When gates the step; nil means always run. A falsy value skips it.
	When template.Value
	// Depends lists the steps this one waits for (map form only).
	Depends Depends
	// Loop repeats the action; nil for a plain step.
	Loop              *Loop
	Retry             Retry
	Timeout           time.Duration // per attempt; 0 = none
	ContinueOnFailure bool
	Lane              string // "" (the task's mode), "io" or "cpu"
	Line, Col         int
}

// DependMode says how a step's dependencies combine.
type DependMode int

const (
	// DependAll runs the step once every dependency has settled and all
	// of their conditions hold; otherwise the step is skipped.
	DependAll DependMode = iota
	// DependAny runs the step as soon as one dependency settles with its
	// condition met; the step is skipped when none can.
	DependAny
)

// Condition is what a dependency must end as for its dependent to run.
type Condition int

const (
	// OnSuccess (the default) needs the dependency to have succeeded.
	OnSuccess Condition = iota
	// OnFailure needs the dependency to have failed.
	OnFailure
	// OnDone needs the dependency to have run, whether it succeeded or failed.
	OnDone
)

func (c Condition) String() string {
	switch c {
	case OnFailure:
		return "failed"
	case OnDone:
		return "done"
	}
	return "success"
}

// Depends is a step's depends_on.
type Depends struct {
	Mode DependMode
	On   []Dependency
}

// Dependency is one upstream step and the outcome it must have.
type Dependency struct {
	ID   string
	Step int // index in Task.Steps
	On   Condition
}

// Loop is a step's loop section: exactly one of ForEach and Times is set.
type Loop struct {
	ForEach     template.Value // must evaluate to a list
	Times       template.Value // must evaluate to a non-negative integer
	Parallelism int            // >= 1
}

// Retry is a step's retry policy.
type Retry struct {
	MaxAttempts int           // >= 1
	Delay       time.Duration // before the second attempt
	Backoff     float64       // delay multiplier per attempt, >= 1
	MaxDelay    time.Duration // cap on the delay; 0 = none
}

// DelayBefore returns how long to wait before attempt (2, 3, ...).
func (r Retry) DelayBefore(attempt int) time.Duration {
	d := float64(r.Delay)
	for i := 2; i < attempt; i++ {
		d *= r.Backoff
		if r.MaxDelay > 0 && d >= float64(r.MaxDelay) {
			break
		}
	}
	if r.MaxDelay > 0 && d > float64(r.MaxDelay) {
		return r.MaxDelay
	}
	return time.Duration(d)
}
