package execmgr

import (
	"errors"
	"fmt"
	"strings"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// A task's lifecycle is a state machine: lifecycle.step takes an event
// and returns the effects to carry out, moving the task to its next state.
// It does no I/O, takes no lock, starts no goroutine and reads no clock, so
// every rule is a row of a table test (lifecycle_test.go). The run
// (run.go) is the thin shell around it: run.feed gives it an event under
// the run's lock and carries out the effects outside it, each in one
// function named for it. Carrying out an effect that is work (planning,
// asking the hooks, the steps, waiting for the end's commit) yields the next
// event, which the same goroutine feeds in; so the goroutine that runs a
// task follows it from start to end (it may leave the wait for the end's
// commit to a goroutine of its own, see taskGoroutines), and another
// goroutine (a cancel, the timeout, the drain) only asks it to stop, or
// ends it itself when it is not running yet.
//
//	New ─queued─► Queued ─admitted─► Admitted ─started─► Planning ─planned─► Asking ─answered─► Running
//	 │              │                   │                   │                  │                  │
//	 │ end, cancel, │ cancel            │ cancel, timeout,  │ the work's end (planned, answered, not-started,
//	 │ shutdown     │                   │ shutdown          │ steps-done): failed, or stopped by cancel,
//	 │              │                   │ (ended at once)   │ timeout, shutdown (effStop)
//	 ▼              ▼                   ▼                   ▼                  ▼                  ▼
//	 └──────────────┴───────────────────┴───────────────────┴────► Ending ◄────┴──────────────────┘
//	                                                                 │ concluded
//	                                                                 ▼
//	                                                               Ended
//
//	Queued ─admitted (shared keys)─► Claiming ─granted─► Admitted
//	  ▲                               │  │
//	  └─ refused, or any answer ──────┘  └─ claim-failed, or any answer after a
//	     after the drain's stop             cancel or a failed creation ─► Ending
//
// admitted goes to Claiming only for a task that holds keys shared beyond
// this process (see ledger.go): the Ledger must grant their slots before it
// starts. The claim is the task's work while it claims: a cancel, a failed
// creation or the drain stop it (effStop), and the claim's answer then
// decides, as the work's end does in Running: the cause of the stop wins,
// except that the drain's puts the task back in Queued (it stays queued in
// the store for the next start).
//
// started goes to Planning only for a task that requires a state;
// otherwise, and after planned, to Asking, or straight to Running when no
// before_task_run hook or interceptor is registered. A transition starts
// from New, under its parent's slots. docs/architecture.md has the same
// diagram, and a table of the states and events.
//
// While a task plans, is asked about or runs, cancel, timeout and shutdown
// stop its work (effStop) and their cause wins over whatever the work then
// reports. A task whose creation never committed vanishes (Ended, nothing
// recorded) wherever it is.
//
// Interrupts and preemption pause a running task (interrupt.go):
//
//	Running ─interrupt─► Running (pausing) ─paused─► Paused ─handled(resume)─► Running
//	                                                   │
//	                                                   └─ handled(requeue, cancel, a failed handler) ─► stop ─steps-done─► Ending
//
// interrupt asks the engine to stop at its next step boundary (effPause);
// the engine's call at the boundary is paused, which records PAUSED and
// runs the handler (or the preempting task) on the task's goroutine while
// the engine waits; handled says how it went and the policy decides:
// resume records RUNNING again and the engine goes on with the next step,
// requeue and cancel (or a failed handler) stop the work with their cause
// and the engine's return ends the task as a stop does in Running. cancel,
// timeout and shutdown in Paused do what they do in Running. A task that
// preempts runs under its victim's slots: lent moves it from Queued to
// Admitted without slots of its own (borrowed).
//
// Adding a state is adding rows to step and to its table test, not a flag
// beside the state. One more is foreseen:
//   - Forwarded (a cluster): an event forwarded in Queued moves the task to
//     Forwarded with the effects dequeue and record the owner; the owner's
//     report of the task's end (an event like concluded) moves it to Ended
//     with notify and forget; cancel in Forwarded is an effect that asks the
//     owner.
type lifecycle struct {
	state state

	// Immutable after the run is built.
	transition bool // a state transition, run under its parent's slots: it holds none and is never requeued
	plans      bool // state planning comes first (requires_initial_state, not skipped)
	requeue    bool // on_interrupt: requeue: an interrupted end goes back to the queue
	// borrowed: a preempting task runs under its victim's slots (lent): it
	// holds none of its own to give back.
	borrowed bool
	// pausing: an interrupt asked the engine to pause (effPause) and the
	// pause is not over; a second interrupt waits for the next.
	pausing bool

	created creation // what is known of the write that created the task
	cause   error    // the first stop asked from outside; it wins over the work's own result
	end     ending   // set on leaving for Ending or Ended
}

// state is where a task is in its lifecycle.
type state uint8

const (
	// stateNew: known to this process and not queued: just prepared (a
	// submission about to be queued, a transition about to start) or
	// restored from the store at start to be ended.
	stateNew state = iota
	// stateQueued: in the admission queue, waiting for its slots.
	stateQueued
	// stateClaiming: admission lent it its slots here; it asks the Ledger
	// for the slots of its shared keys on a goroutine of its own.
	stateClaiming
	// stateAdmitted: holds its slots; its goroutine has not started it.
	stateAdmitted
	// statePlanning: PLANNING is recorded; the planner is bringing the
	// system into the required state.
	statePlanning
	// stateAsking: the before_task_run hooks and interceptors are asked.
	stateAsking
	// stateRunning: RUNNING is recorded (with the before_task_run event);
	// the engine runs the steps.
	stateRunning
	// statePaused: PAUSED is recorded; the engine waits at a step boundary
	// while the interrupt's handler (or the preempting task) runs.
	statePaused
	// stateEnding: its end is decided and queued for the store: the shell
	// waits for the commit and runs the after hooks.
	stateEnding
	// stateEnded: over. Its end is recorded (or it went back to the queue
	// in the store, or it never existed); waiters are released.
	stateEnded
)

var stateNames = [...]string{"New", "Queued", "Claiming", "Admitted", "Planning", "Asking", "Running", "Paused", "Ending", "Ended"}

func (s state) String() string { return stateNames[s] }

// creation is what is known of the write that created the task. Admission
// does not wait for a submission's creation to commit (see SubmitAs), so
// a task may be admitted, and even end, before it is known to exist.
type creation uint8

const (
	// creationCommitted, the zero value: restored tasks, submissions with
	// an idempotency key and transitions are created before they are shared.
	creationCommitted creation = iota
	creationPending
	creationFailed // it never existed: nothing of it may run or be reported
)

// eventKind is what happened to a task.
type eventKind uint8

const (
	evNone eventKind = iota
	// evQueued: it was put in the admission queue.
	evQueued
	// evAdmitted: admission gave it its slots (fed under the manager's
	// lock); claims says some of its keys are shared and must be claimed.
	evAdmitted
	// evGranted: the Ledger granted the claim (fed under the manager's lock,
	// as the other answers are).
	evGranted
	// evRefused: the Ledger has no room for a shared key now.
	evRefused
	// evClaimFailed: the claim ended without an answer: err is why (the
	// Ledger kept failing, or the stop's cause).
	evClaimFailed
	// evStarted: its goroutine starts it (a transition: its parent does).
	evStarted
	// evPlanned: planning is over; err says why it failed.
	evPlanned
	// evAnswered: the before_task_run hooks answered; err is a denial, or
	// the stop that cut them short.
	evAnswered
	// evNotStarted: the status write that starts the work (PLANNING,
	// RUNNING) failed with err.
	evNotStarted
	// evStepsDone: the engine returned; err says why the task failed.
	evStepsDone
	// evCancel: CancelTask; err is the cancelledError with its reason.
	evCancel
	// evTimeout: the task's timeout passed.
	evTimeout
	// evShutdown: the daemon stops and will not wait for the task.
	evShutdown
	// evCreated: the creation's outcome is known; err is its failure.
	evCreated
	// evEnd: end it at once with err: a task restored at start that can
	// no longer run, or one the admission queue refused.
	evEnd
	// evInterrupt: an interrupt or a preemption asks it to pause.
	evInterrupt
	// evPaused: the engine reached a step boundary and waits there.
	evPaused
	// evHandled: the handler (or the preempting task) is over; err is
	// nil to resume, else what ends the task: the handler's failure, or
	// the policy's requeue or cancel (requeuedError, preemptedError).
	evHandled
	// evLent: a preempting task takes its victim's slots instead of
	// waiting for its own (fed under the manager's lock).
	evLent
	// evReturned: the victim ended before it paused: the preempting task
	// it was lent to waits for slots of its own again (fed under the
	// manager's lock).
	evReturned
	// evConcluded: its end is committed and the after hooks ran.
	evConcluded
)

var eventNames = [...]string{"none", "queued", "admitted", "granted", "refused", "claim-failed", "started", "planned", "answered", "not-started",
	"steps-done", "cancel", "timeout", "shutdown", "created", "end", "interrupt", "paused", "handled", "lent", "returned", "concluded"}

func (k eventKind) String() string { return eventNames[k] }

// event is an eventKind with what it carries; a value, so feeding one
// allocates nothing.
type event struct {
	kind eventKind
	// err: see the kinds above.
	err error
	// hooks (evStarted, evPlanned): before_task_run hooks or interceptors
	// are registered now, so the task must be asked before it runs.
	hooks bool
	// claims (evAdmitted): the Ledger must grant slots of shared keys.
	claims bool
	// key (evRefused): the shared key the Ledger has no room for.
	key string
}

func (ev event) String() string {
	if ev.err == nil {
		return ev.kind.String()
	}
	return fmt.Sprintf("%s(%v)", ev.kind, ev.err)
}

// effects is a set of things for the shell to do. It carries them out in
// the order of the constants below: an end is queued for the store before
// the slots go back (so the log shows it before the next holder's start),
// and at most one of the effects that are work (plan, ask, steps, conclude,
// await the creation) is in a set, last: its result is the next event.
type effects uint32

const (
	// effDequeue: it leaves the admission queue and the backlog for good
	// (a claiming task's slots go back with effRelease); the event was fed
	// under the manager's lock, which the queue shares with admission.
	effDequeue effects = 1 << iota
	// effClaim: ask the Ledger for the slots of its shared keys on a
	// goroutine of its own; its answer is evGranted, evRefused or
	// evClaimFailed. Fed under the manager's lock.
	effClaim
	// effWaitAgain: the Ledger refused: put it back among the waiters,
	// parked on the refused key, and start what that admits. Under the
	// manager's lock.
	effWaitAgain
	// effLaunch: hand the admitted task to a goroutine that starts it.
	effLaunch
	// effRequeue: put it back among the waiters of the admission queue
	// and the backlog (a preempting task whose victim ended first). Under
	// the manager's lock.
	effRequeue
	// effStop: cancel its work (or its claim) with output.cause.
	effStop
	// effPause: ask the engine to pause at its next step boundary (and,
	// with abort_step, to abort the running steps); carried out under the
	// run's lock with the event (run.takeInterrupt), so the engine hears
	// of it before it can end.
	effPause
	// effRecordEnd: queue the write of output.end: its terminal status with
	// task.finished and the after_* hook events, or (end.requeue) QUEUED
	// for its next attempt.
	effRecordEnd
	// effRelease: give back its admission slots (and the shared slots the
	// Ledger granted it) and start what that admits.
	effRelease
	// effRecordPlanning: record PLANNING; its failure is evNotStarted.
	effRecordPlanning
	// effPlan: run state planning; yields evPlanned.
	effPlan
	// effAsk: ask the before_task_run hooks and interceptors; yields evAnswered.
	effAsk
	// effRecordRunning: record RUNNING with the before_task_run event; its
	// failure is evNotStarted.
	effRecordRunning
	// effSteps: run the steps; yields evStepsDone.
	effSteps
	// effRecordPaused: record PAUSED with task.paused; the task's timeout
	// stops counting.
	effRecordPaused
	// effHandle: run the interrupt's handler (or the preempting task);
	// yields evHandled.
	effHandle
	// effRecordResumed: record RUNNING with task.resumed; the task's
	// timeout counts again, from where it stopped.
	effRecordResumed
	// effAwaitCreation: nothing changed; wait for the creation's outcome,
	// feed evCreated, then feed the same event again.
	effAwaitCreation
	// effConclude: wait for the end's commit, log it, end the span and (a
	// terminal end) run the after hooks; yields evConcluded.
	effConclude
	// effNotify: release whoever waits for the end (Done).
	effNotify
	// effForget: leave the live registry; count the outcome unless it
	// vanished.
	effForget
	// effSettle: an admitted task's end is over; the drain stops waiting
	// for it.
	effSettle
)

var effectNames = [...]string{"dequeue", "claim", "wait-again", "launch", "requeue", "stop", "pause", "record-end", "release", "record-planning", "plan", "ask",
	"record-running", "steps", "record-paused", "handle", "record-resumed", "await-creation", "conclude", "notify", "forget", "settle"}

func (fx effects) has(e effects) bool { return fx&e != 0 }

func (fx effects) String() string {
	var names []string
	for i, n := range effectNames {
		if fx&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	return "{" + strings.Join(names, " ") + "}"
}

// output is what step returns: the effects and what they need.
type output struct {
	fx    effects
	cause error  // effStop
	end   ending // effRecordEnd, effConclude, effForget
}

// ending is how a task ends, decided once.
type ending struct {
	status aurav1.TaskStatus
	err    *aurav1.TaskError
	// requeue: INTERRUPTED with on_interrupt: requeue: recorded QUEUED for
	// another attempt instead of ending (it is counted as interrupted).
	requeue bool
	// again: requeued by an interrupt's policy while the daemon runs: a
	// fresh run of it joins the admission queue once QUEUED is recorded.
	again bool
	// withBefore: the hooks were asked but RUNNING, which records their
	// before_task_run event, was not: the end's write records it.
	withBefore bool
	// held: it held admission slots (released with the end).
	held bool
	// vanished: its creation never committed: nothing is recorded,
	// nobody is told, nothing counts it.
	vanished bool
}

// lifecycleOf is the lifecycle of a task in stateNew.
func lifecycleOf(task *aurav1.Task, requiresState, onInterrupt string, transition bool) lifecycle {
	return lifecycle{
		transition: transition,
		plans:      requiresState != "" && !task.GetSkipPlanning() && !transition,
		requeue:    onInterrupt == "requeue" && !transition && task.GetParentId() == "",
	}
}

// over reports whether the task is over (waiters may go).
func (l *lifecycle) over() bool { return l.state == stateEnded }

// step moves the lifecycle on by ev and returns what to do. An event a
// state does not expect changes nothing and returns nothing: a stop that
// arrives once the end is decided, a start for a task another goroutine
// already ended.
func (l *lifecycle) step(ev event) output {
	if ev.kind == evCreated && l.created == creationPending {
		l.created = creationCommitted
		if ev.err != nil {
			l.created = creationFailed
		}
	}
	switch l.state {
	case stateNew:
		switch ev.kind {
		case evQueued:
			l.state = stateQueued
		case evStarted:
			if l.transition {
				return l.ask(ev.hooks)
			}
		case evEnd, evCancel:
			return l.finish(ev.err, false)
		case evShutdown:
			return l.finish(errShutdown, false)
		}
	case stateQueued:
		switch ev.kind {
		case evLent:
			l.state, l.borrowed = stateAdmitted, true
			return output{fx: effDequeue}
		case evAdmitted:
			if ev.claims {
				l.state = stateClaiming
				return output{fx: effClaim}
			}
			l.state = stateAdmitted
			return output{fx: effLaunch}
		case evCancel:
			return l.finish(ev.err, false)
		case evCreated:
			if l.created == creationFailed {
				return l.finish(errUnrecorded, false)
			}
		}
		// evShutdown: a queued task stays queued, in the store, for the
		// next start.
	case stateClaiming:
		switch ev.kind {
		case evCancel:
			return l.stop(ev.err)
		case evShutdown:
			return l.stop(errShutdown)
		case evCreated:
			if l.created == creationFailed {
				return l.stop(errUnrecorded)
			}
		case evGranted, evRefused, evClaimFailed:
			return l.claimed(ev)
		}
	case stateAdmitted:
		switch ev.kind {
		case evReturned:
			if l.borrowed {
				l.state, l.borrowed = stateQueued, false
				return output{fx: effRequeue}
			}
		case evStarted:
			if l.plans {
				l.state = statePlanning
				return output{fx: effRecordPlanning | effPlan}
			}
			return l.ask(ev.hooks)
		case evCancel:
			return l.finish(ev.err, false)
		case evTimeout:
			return l.finish(errTimeout, false)
		case evShutdown:
			return l.finish(errShutdown, false)
		case evCreated:
			if l.created == creationFailed {
				return l.finish(errUnrecorded, false)
			}
		}
	case statePlanning, stateAsking, stateRunning, statePaused:
		switch ev.kind {
		case evCancel:
			return l.stop(ev.err)
		case evTimeout:
			return l.stop(errTimeout)
		case evShutdown:
			return l.stop(errShutdown)
		case evCreated:
			if l.created == creationFailed {
				return l.stop(errUnrecorded)
			}
		case evPlanned:
			if l.state == statePlanning {
				l.created = creationCommitted // PLANNING was recorded, after the creation
				if ev.err != nil || l.cause != nil {
					return l.finish(ev.err, false)
				}
				return l.ask(ev.hooks)
			}
		case evAnswered:
			if l.state == stateAsking {
				if ev.err != nil || l.cause != nil {
					return l.finish(ev.err, true)
				}
				return l.run()
			}
		case evNotStarted:
			if l.state == statePlanning || l.state == stateRunning {
				return l.finish(ev.err, l.state == stateRunning)
			}
		case evStepsDone:
			// Running: RUNNING was recorded, after the creation. Paused:
			// the work stopped while paused (a stop, or the policy).
			if l.state == stateRunning || l.state == statePaused {
				l.created = creationCommitted
				return l.finish(ev.err, false)
			}
		case evInterrupt:
			if l.state == stateRunning && !l.pausing && l.cause == nil {
				l.pausing = true
				return output{fx: effPause}
			}
		case evPaused:
			if l.state == stateRunning && l.pausing && l.cause == nil {
				l.state = statePaused
				return output{fx: effRecordPaused | effHandle}
			}
		case evHandled:
			if l.state == statePaused {
				return l.handled(ev)
			}
		}
	case stateEnding:
		if ev.kind == evConcluded {
			l.state = stateEnded
			fx := effNotify | effForget
			if l.end.held {
				fx |= effSettle
			}
			return output{fx: fx, end: l.end}
		}
	}
	return output{}
}

// handled takes the end of a paused task's handler: it resumes, unless
// a stop came first (its cause then ends the task once the engine
// returns) or the handler's end says to stop (a failure, the policy's
// requeue or cancel): the engine then returns with it as the cause.
func (l *lifecycle) handled(ev event) output {
	switch {
	case l.cause != nil:
		return output{}
	case ev.err != nil:
		return l.stop(ev.err)
	}
	l.state, l.pausing = stateRunning, false
	return output{fx: effRecordResumed}
}

// claimed takes the Ledger's answer to the claim. A stop asked meanwhile
// wins over any answer: the drain's puts the task back in the queue (its
// slots go back, and it stays queued in the store for the next start),
// any other ends it.
func (l *lifecycle) claimed(ev event) output {
	switch {
	case errors.Is(l.cause, errShutdown):
		l.state, l.cause = stateQueued, nil
		return output{fx: effRelease}
	case l.cause != nil || ev.kind == evClaimFailed:
		return l.finish(ev.err, false)
	case ev.kind == evRefused:
		l.state = stateQueued
		return output{fx: effWaitAgain}
	}
	l.state = stateAdmitted
	return output{fx: effLaunch}
}

// ask moves a started (or planned) task on to its hooks, or straight to
// its steps when there are none to ask.
func (l *lifecycle) ask(hooks bool) output {
	if l.cause != nil {
		return l.finish(nil, false)
	}
	if !hooks {
		// The RUNNING write queues behind the creation and fails if it
		// did: no need to wait for the creation first.
		return l.run()
	}
	// Hooks and interceptors hear only of tasks that exist.
	switch l.created {
	case creationPending:
		return output{fx: effAwaitCreation}
	case creationFailed:
		return l.finish(errUnrecorded, false)
	}
	l.state = stateAsking
	return output{fx: effAsk}
}

func (l *lifecycle) run() output {
	l.state = stateRunning
	return output{fx: effRecordRunning | effSteps}
}

// stop asks the task's work to stop; the first cause is the one that
// counts.
func (l *lifecycle) stop(cause error) output {
	if l.cause != nil {
		return output{}
	}
	l.cause = cause
	return output{fx: effStop, cause: cause}
}

// finish decides the task's end, whatever ended it: it is the one way a
// task ends. err is what its work returned (nil: success) unless a stop
// was asked, whose cause wins. withBefore says the before_task_run event
// is not recorded yet although the hooks were asked.
func (l *lifecycle) finish(err error, withBefore bool) output {
	if l.cause != nil {
		err = l.cause
	}
	if l.created == creationPending {
		// Whether there is anything to record depends on it.
		return output{fx: effAwaitCreation}
	}
	var fx effects
	if l.state == stateQueued || l.state == stateClaiming {
		fx |= effDequeue
	}
	status, te := outcome(err)
	// From admission to the end of its steps a task holds its slots; a
	// transition holds its parent's. A claiming task holds the slots
	// admission lent it, not yet counted as running (no effSettle).
	e := ending{status: status, err: te, held: !l.transition && !l.borrowed && l.state >= stateAdmitted && l.state <= statePaused}
	if e.held || l.state == stateClaiming {
		fx |= effRelease
	}
	if l.created == creationFailed {
		e.vanished = true
		l.state, l.end = stateEnded, e
		fx |= effNotify | effForget
		if e.held {
			fx |= effSettle
		}
		return output{fx: fx, end: e}
	}
	// on_interrupt: requeue is about the daemon stopping under the task;
	// an interrupt with a kind of its own (lease_lost) ends it.
	e.requeue = l.requeue && status == aurav1.TaskStatus_TASK_STATUS_INTERRUPTED && te.Kind == string(KindInterrupted)
	if _, again := l.cause.(*requeuedError); again { // only ever a stop's cause
		e.requeue, e.again = true, true
	}
	e.withBefore = withBefore
	l.state, l.end = stateEnding, e
	return output{fx: fx | effRecordEnd | effConclude, end: e}
}
