package engine

import (
	"time"

	"github.com/aura-dev/aura/internal/plan"
)

// runGraph runs map-form steps: each step starts on its own goroutine as
// soon as its dependencies allow; this goroutine owns all run state and
// evaluates every template, so step goroutines only run actions.
func (ru *run) runGraph() {
	steps := ru.task.Steps
	n := len(steps)
	dependents := make([][]int, n)
	for i, s := range steps {
		for _, d := range s.Depends.On {
			dependents[d.Step] = append(dependents[d.Step], i)
		}
	}
	decided := make([]bool, n)
	done := make(chan outcome, n)
	running := 0
	stopped := false
	var ready []job // prepared, waiting for launch

	// consider decides step i when its dependencies allow, starting or
	// skipping it; skipping cascades to its dependents.
	var consider func(i int)
	consider = func(i int) {
		if decided[i] || stopped || ru.ctx.Err() != nil {
			return
		}
		switch ru.readiness(steps[i]) {
		case waiting:
			return
		case skipIt:
			decided[i] = true
			ru.skip(i)
			for _, k := range dependents[i] {
				consider(k)
			}
			return
		}
		decided[i] = true
		j, ok := ru.prepare(i)
		if !ok { // skipped by when, or failed while preparing
			for _, k := range dependents[i] {
				consider(k)
			}
			return
		}
		ready = append(ready, j)
	}
	jobs := make([]job, n) // the steps started, to start again after an abort
	start := func(j job) {
		jobs[j.index] = j
		ru.states[j.index].StartedAt = time.Now()
		ru.setStatus(j.index, StepRunning)
	}
	// settle takes a step's outcome: a step a pause aborted waits among
	// the ready ones to run again after the pause.
	settle := func(o outcome) {
		if o.aborted {
			j := jobs[o.index]
			j.first = o.attempts
			ru.setStatus(o.index, StepPending)
			ready = append(ready, j)
			return
		}
		ru.finish(o)
		for _, k := range dependents[o.index] {
			consider(k)
		}
	}
	// launch starts the ready steps. A lone ready step with nothing else
	// running runs inline: no other completion can arrive meanwhile, and a
	// dependency chain then costs no goroutines. Once a pause is asked no
	// step starts: the boundary comes when the running ones are over.
	launch := func() {
		for len(ready) > 0 && !stopped {
			if ru.req.Pause.asked() {
				if running > 0 {
					return
				}
				if !ru.boundary() {
					stopped = true
					return
				}
				continue
			}
			if len(ready) == 1 && running == 0 {
				j := ready[0]
				ready = ready[:0]
				start(j)
				settle(j.execute(ru.ctx))
				continue
			}
			for _, j := range ready {
				running++
				start(j)
				go func() { done <- j.execute(ru.ctx) }()
			}
			ready = ready[:0]
		}
	}
	for i := range steps {
		consider(i)
	}
	launch()
	for running > 0 {
		select {
		case o := <-done:
			running--
			settle(o)
			launch()
		case <-ru.ctx.Done():
			// Stop starting steps; the running ones see ctx and return.
			stopped = true
			for running > 0 {
				ru.finish(<-done)
				running--
			}
		}
	}
	if ru.ctx.Err() != nil && ru.err == nil {
		ru.err = stopErr(ru.ctx)
	}
}

type readiness int

const (
	waiting readiness = iota
	runIt
	skipIt
)

// readiness applies depends_on to the current step statuses.
func (ru *run) readiness(s *plan.Step) readiness {
	if len(s.Depends.On) == 0 {
		return runIt
	}
	unsettled := false
	for _, d := range s.Depends.On {
		st := ru.states[d.Step].Status
		if !st.settled() {
			unsettled = true
			continue
		}
		met := meets(d.On, st)
		if s.Depends.Mode == plan.DependAny && met {
			return runIt
		}
		if s.Depends.Mode == plan.DependAll && !met {
			return skipIt
		}
	}
	switch {
	case unsettled:
		return waiting
	case s.Depends.Mode == plan.DependAny:
		return skipIt
	}
	return runIt
}

func meets(c plan.Condition, st StepStatus) bool {
	switch c {
	case plan.OnFailure:
		return st == StepFailed
	case plan.OnDone:
		return st == StepSucceeded || st == StepFailed
	}
	return st == StepSucceeded
}
