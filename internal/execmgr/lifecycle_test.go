package execmgr

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/aura-dev/aura/internal/admission"
	"github.com/aura-dev/aura/internal/engine"
	"github.com/aura-dev/aura/internal/hooks"
	"github.com/aura-dev/aura/internal/store"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// The lifecycle's rules, one row each: a task in a state meets an event;
// where it goes, what the shell must do, and how it ends when that is
// decided. No goroutine, no store, no clock.

var (
	stepFailed      = &engine.StepError{Step: "wait", Err: errors.New("exit status 3")}
	denial          = &hooks.DeniedError{By: "freeze", Reason: "change freeze"}
	byOperator      = &cancelledError{reason: "enough"}
	errDisk         = errors.New("recording status RUNNING: disk I/O error")
	errRefusedWrite = errors.New("disk full")
	lost            = &planningError{errors.New(`planning to "lobby": stuck`)}
	byRequeue       = &requeuedError{by: `interrupt "reset"`}
	byCancel        = &preemptedError{by: `interrupt "reset"`}
	handlerFailed   = &handlerError{by: `interrupt "popup"`, handler: "p/fix", status: aurav1.TaskStatus_TASK_STATUS_FAILED, msg: "boom"}
	handlerTimedOut = &handlerError{by: `interrupt "popup"`, handler: "p/fix", status: aurav1.TaskStatus_TASK_STATUS_TIMED_OUT, msg: "timed out"}
	ledgerDown      = &LedgerError{Keys: []string{"site-db"}, Attempts: ledgerAttempts, Err: errors.New("ledger unreachable")}
)

const (
	succeeded   = aurav1.TaskStatus_TASK_STATUS_SUCCEEDED
	failed      = aurav1.TaskStatus_TASK_STATUS_FAILED
	timedOut    = aurav1.TaskStatus_TASK_STATUS_TIMED_OUT
	cancelled   = aurav1.TaskStatus_TASK_STATUS_CANCELLED
	interrupted = aurav1.TaskStatus_TASK_STATUS_INTERRUPTED
	planFailed  = aurav1.TaskStatus_TASK_STATUS_PLANNING_FAILED
)

// wantEnd is the part of an ending a row checks.
type wantEnd struct {
	status                              aurav1.TaskStatus
	kind                                ErrorKind // "" for none
	requeue, withBefore, held, vanished bool
	again                               bool
}

type lifecycleRow struct {
	name string
	from lifecycle
	ev   event
	to   state
	fx   effects
	end  *wantEnd // the end decided by this step, if one is
}

func ev(k eventKind) event                    { return event{kind: k} }
func evErr(k eventKind, err error) event      { return event{kind: k, err: err} }
func evHooks(k eventKind, err error) event    { return event{kind: k, err: err, hooks: true} }
func at(s state) lifecycle                    { return lifecycle{state: s} }
func pausing(s state) lifecycle               { return lifecycle{state: s, pausing: true} }
func pending(s state) lifecycle               { return lifecycle{state: s, created: creationPending} }
func stopping(s state, cause error) lifecycle { return lifecycle{state: s, cause: cause} }
func withClaims() event                       { return event{kind: evAdmitted, claims: true} }
func transitionAt(s state) lifecycle          { return lifecycle{state: s, transition: true} }
func requeueing(s state, cause error) lifecycle {
	return lifecycle{state: s, requeue: true, cause: cause}
}

const (
	ended   = effRecordEnd | effConclude              // an end of a task without slots
	endHeld = effRecordEnd | effRelease | effConclude // an end of an admitted task
	work    = effRecordRunning | effSteps
)

var lifecycleTable = []lifecycleRow{
	// New: a submission about to be queued, a transition about to start,
	// a task restored at start to be ended.
	{name: "a submission is queued", from: at(stateNew), ev: ev(evQueued), to: stateQueued},
	{name: "a transition with hooks to ask starts by asking", from: transitionAt(stateNew), ev: evHooks(evStarted, nil), to: stateAsking, fx: effAsk},
	{name: "a transition without hooks runs its steps", from: transitionAt(stateNew), ev: ev(evStarted), to: stateRunning, fx: work},
	{name: "a submission is admitted before it starts", from: at(stateNew), ev: ev(evStarted), to: stateNew},
	{name: "a task found running at start ends interrupted", from: at(stateNew), ev: evErr(evEnd, errShutdown), to: stateEnding, fx: ended,
		end: &wantEnd{status: interrupted, kind: KindInterrupted}},
	{name: "... or goes back to the queue (on_interrupt: requeue)", from: lifecycle{requeue: true}, ev: evErr(evEnd, errShutdown), to: stateEnding, fx: ended,
		end: &wantEnd{status: interrupted, kind: KindInterrupted, requeue: true}},
	{name: "a restored task that can no longer run fails", from: at(stateNew), ev: evErr(evEnd, errors.New(`task "p/gone": unknown task`)), to: stateEnding, fx: ended,
		end: &wantEnd{status: failed, kind: KindInternal}},
	{name: "a transition cancelled before it started", from: transitionAt(stateNew), ev: evErr(evCancel, byOperator), to: stateEnding, fx: ended,
		end: &wantEnd{status: cancelled, kind: KindCancelled}},
	{name: "a transition interrupted before it started", from: transitionAt(stateNew), ev: ev(evShutdown), to: stateEnding, fx: ended,
		end: &wantEnd{status: interrupted, kind: KindInterrupted}},
	{name: "an end waits to know whether the task exists", from: pending(stateNew), ev: evErr(evEnd, errShutdown), to: stateNew, fx: effAwaitCreation},
	{name: "a task that never existed vanishes", from: lifecycle{created: creationFailed}, ev: evErr(evEnd, errUnrecorded), to: stateEnded, fx: effNotify | effForget,
		end: &wantEnd{status: failed, kind: KindInternal, vanished: true}},

	// Queued.
	{name: "admission launches it", from: at(stateQueued), ev: ev(evAdmitted), to: stateAdmitted, fx: effLaunch},
	{name: "admission does not wait for the creation", from: pending(stateQueued), ev: ev(evAdmitted), to: stateAdmitted, fx: effLaunch},
	{name: "cancel while queued ends it, out of the queue", from: at(stateQueued), ev: evErr(evCancel, byOperator), to: stateEnding, fx: effDequeue | ended,
		end: &wantEnd{status: cancelled, kind: KindCancelled}},
	{name: "cancel while queued waits to know whether the task exists", from: pending(stateQueued), ev: evErr(evCancel, byOperator), to: stateQueued, fx: effAwaitCreation},
	{name: "a queued task whose creation failed vanishes", from: pending(stateQueued), ev: evErr(evCreated, errRefusedWrite), to: stateEnded, fx: effDequeue | effNotify | effForget,
		end: &wantEnd{status: failed, kind: KindInternal, vanished: true}},
	{name: "a committed creation changes nothing else", from: pending(stateQueued), ev: ev(evCreated), to: stateQueued},
	{name: "the drain leaves queued tasks queued", from: at(stateQueued), ev: ev(evShutdown), to: stateQueued},
	{name: "admission of shared keys asks the Ledger first", from: at(stateQueued), ev: withClaims(), to: stateClaiming, fx: effClaim},

	// Claiming: holds its slots here; the Ledger is asked for the shared
	// ones. The claim is its work: stops stop it, its answer decides.
	{name: "granted: launched", from: at(stateClaiming), ev: ev(evGranted), to: stateAdmitted, fx: effLaunch},
	{name: "granted: launched without waiting for the creation", from: pending(stateClaiming), ev: ev(evGranted), to: stateAdmitted, fx: effLaunch},
	{name: "refused: waits in the queue again", from: at(stateClaiming), ev: ev(evRefused), to: stateQueued, fx: effWaitAgain},
	{name: "the claim failed: it ends saying why, its slots go back", from: at(stateClaiming), ev: evErr(evClaimFailed, ledgerDown), to: stateEnding,
		fx: effDequeue | effRelease | ended, end: &wantEnd{status: failed, kind: KindInternal}},
	{name: "... once it is known to exist", from: pending(stateClaiming), ev: evErr(evClaimFailed, ledgerDown), to: stateClaiming, fx: effAwaitCreation},
	{name: "cancel stops the claim", from: at(stateClaiming), ev: evErr(evCancel, byOperator), to: stateClaiming, fx: effStop},
	{name: "the cancel wins over a late grant", from: stopping(stateClaiming, byOperator), ev: ev(evGranted), to: stateEnding,
		fx: effDequeue | effRelease | ended, end: &wantEnd{status: cancelled, kind: KindCancelled}},
	{name: "the cancel wins over the claim error it caused", from: stopping(stateClaiming, byOperator), ev: evErr(evClaimFailed, byOperator), to: stateEnding,
		fx: effDequeue | effRelease | ended, end: &wantEnd{status: cancelled, kind: KindCancelled}},
	{name: "the drain stops the claim", from: at(stateClaiming), ev: ev(evShutdown), to: stateClaiming, fx: effStop},
	{name: "stopped by the drain, it stays queued", from: stopping(stateClaiming, errShutdown), ev: evErr(evClaimFailed, errShutdown), to: stateQueued, fx: effRelease},
	{name: "... even if the Ledger granted it meanwhile", from: stopping(stateClaiming, errShutdown), ev: ev(evGranted), to: stateQueued, fx: effRelease},
	{name: "a failed creation stops the claim", from: pending(stateClaiming), ev: evErr(evCreated, errRefusedWrite), to: stateClaiming, fx: effStop},
	{name: "then the claim's end: it vanishes", from: lifecycle{state: stateClaiming, created: creationFailed, cause: errUnrecorded}, ev: evErr(evClaimFailed, errUnrecorded),
		to: stateEnded, fx: effDequeue | effRelease | effNotify | effForget, end: &wantEnd{status: failed, kind: KindInternal, vanished: true}},

	// Admitted: holds its slots; its goroutine has not started it.
	{name: "started: planning first", from: lifecycle{state: stateAdmitted, plans: true}, ev: evHooks(evStarted, nil), to: statePlanning, fx: effRecordPlanning | effPlan},
	{name: "started: the hooks first", from: at(stateAdmitted), ev: evHooks(evStarted, nil), to: stateAsking, fx: effAsk},
	{name: "started: no hooks, the steps", from: at(stateAdmitted), ev: ev(evStarted), to: stateRunning, fx: work},
	{name: "hooks hear only of tasks known to exist", from: pending(stateAdmitted), ev: evHooks(evStarted, nil), to: stateAdmitted, fx: effAwaitCreation},
	{name: "without hooks RUNNING queues behind the creation", from: pending(stateAdmitted), ev: ev(evStarted), to: stateRunning, fx: work},
	{name: "a task that never existed is not asked about", from: lifecycle{state: stateAdmitted, created: creationFailed}, ev: evHooks(evStarted, nil), to: stateEnded,
		fx: effRelease | effNotify | effForget | effSettle, end: &wantEnd{status: failed, kind: KindInternal, held: true, vanished: true}},
	{name: "cancel before it started ends it at once", from: at(stateAdmitted), ev: evErr(evCancel, byOperator), to: stateEnding, fx: endHeld,
		end: &wantEnd{status: cancelled, kind: KindCancelled, held: true}},
	{name: "a timeout before it started ends it at once", from: at(stateAdmitted), ev: ev(evTimeout), to: stateEnding, fx: endHeld,
		end: &wantEnd{status: timedOut, kind: KindTimeout, held: true}},
	{name: "the drain's end before it started", from: lifecycle{state: stateAdmitted, requeue: true}, ev: ev(evShutdown), to: stateEnding, fx: endHeld,
		end: &wantEnd{status: interrupted, kind: KindInterrupted, held: true, requeue: true}},
	{name: "an admitted task whose creation failed vanishes", from: pending(stateAdmitted), ev: evErr(evCreated, errRefusedWrite), to: stateEnded,
		fx: effRelease | effNotify | effForget | effSettle, end: &wantEnd{status: failed, kind: KindInternal, held: true, vanished: true}},

	// Planning.
	{name: "the state is reached: the hooks", from: at(statePlanning), ev: evHooks(evPlanned, nil), to: stateAsking, fx: effAsk},
	{name: "the state is reached: no hooks, the steps", from: at(statePlanning), ev: ev(evPlanned), to: stateRunning, fx: work},
	{name: "PLANNING was recorded, so the task exists", from: pending(statePlanning), ev: evHooks(evPlanned, nil), to: stateAsking, fx: effAsk},
	{name: "planning failed", from: at(statePlanning), ev: evErr(evPlanned, lost), to: stateEnding, fx: endHeld,
		end: &wantEnd{status: planFailed, kind: KindPlanningFailed, held: true}},
	{name: "cancel stops the planning", from: at(statePlanning), ev: evErr(evCancel, byOperator), to: statePlanning, fx: effStop},
	{name: "the timeout stops the planning", from: at(statePlanning), ev: ev(evTimeout), to: statePlanning, fx: effStop},
	{name: "the drain stops the planning", from: at(statePlanning), ev: ev(evShutdown), to: statePlanning, fx: effStop},
	{name: "a failed creation stops the planning", from: pending(statePlanning), ev: evErr(evCreated, errRefusedWrite), to: statePlanning, fx: effStop},
	{name: "the cancel wins over a reached state", from: stopping(statePlanning, byOperator), ev: evHooks(evPlanned, nil), to: stateEnding, fx: endHeld,
		end: &wantEnd{status: cancelled, kind: KindCancelled, held: true}},
	{name: "the timeout wins over the planning error it caused", from: stopping(statePlanning, errTimeout), ev: evErr(evPlanned, lost), to: stateEnding, fx: endHeld,
		end: &wantEnd{status: timedOut, kind: KindTimeout, held: true}},
	{name: "PLANNING could not be recorded", from: at(statePlanning), ev: evErr(evNotStarted, errDisk), to: stateEnding, fx: endHeld,
		end: &wantEnd{status: failed, kind: KindInternal, held: true}},
	{name: "... because the task never existed?", from: pending(statePlanning), ev: evErr(evNotStarted, errDisk), to: statePlanning, fx: effAwaitCreation},

	// Asking.
	{name: "allowed: the steps", from: at(stateAsking), ev: ev(evAnswered), to: stateRunning, fx: work},
	{name: "denied", from: at(stateAsking), ev: evErr(evAnswered, denial), to: stateEnding, fx: endHeld,
		end: &wantEnd{status: failed, kind: KindDenied, held: true, withBefore: true}},
	{name: "cancel stops the asking", from: at(stateAsking), ev: evErr(evCancel, byOperator), to: stateAsking, fx: effStop},
	{name: "the timeout stops the asking", from: at(stateAsking), ev: ev(evTimeout), to: stateAsking, fx: effStop},
	{name: "the drain stops the asking", from: at(stateAsking), ev: ev(evShutdown), to: stateAsking, fx: effStop},
	{name: "a failed creation stops the asking", from: pending(stateAsking), ev: evErr(evCreated, errRefusedWrite), to: stateAsking, fx: effStop},
	{name: "the timeout wins over a late allow", from: stopping(stateAsking, errTimeout), ev: ev(evAnswered), to: stateEnding, fx: endHeld,
		end: &wantEnd{status: timedOut, kind: KindTimeout, held: true, withBefore: true}},
	{name: "a transition's hooks deny it", from: lifecycle{state: stateAsking, transition: true}, ev: evErr(evAnswered, denial), to: stateEnding, fx: ended,
		end: &wantEnd{status: failed, kind: KindDenied, withBefore: true}},

	// Running.
	{name: "the steps succeeded", from: at(stateRunning), ev: ev(evStepsDone), to: stateEnding, fx: endHeld,
		end: &wantEnd{status: succeeded, held: true}},
	{name: "a step failed", from: at(stateRunning), ev: evErr(evStepsDone, stepFailed), to: stateEnding, fx: endHeld,
		end: &wantEnd{status: failed, kind: KindFailed, held: true}},
	{name: "RUNNING was recorded, so the task exists", from: pending(stateRunning), ev: ev(evStepsDone), to: stateEnding, fx: endHeld,
		end: &wantEnd{status: succeeded, held: true}},
	{name: "cancel stops the steps", from: at(stateRunning), ev: evErr(evCancel, byOperator), to: stateRunning, fx: effStop},
	{name: "a second stop changes nothing", from: stopping(stateRunning, byOperator), ev: ev(evTimeout), to: stateRunning},
	{name: "the timeout stops the steps", from: at(stateRunning), ev: ev(evTimeout), to: stateRunning, fx: effStop},
	{name: "the drain stops the steps", from: at(stateRunning), ev: ev(evShutdown), to: stateRunning, fx: effStop},
	{name: "the cancel wins over a late success", from: stopping(stateRunning, byOperator), ev: ev(evStepsDone), to: stateEnding, fx: endHeld,
		end: &wantEnd{status: cancelled, kind: KindCancelled, held: true}},
	{name: "the timeout wins over the step error it caused", from: stopping(stateRunning, errTimeout), ev: evErr(evStepsDone, stepFailed), to: stateEnding, fx: endHeld,
		end: &wantEnd{status: timedOut, kind: KindTimeout, held: true}},
	{name: "interrupted", from: stopping(stateRunning, errShutdown), ev: evErr(evStepsDone, stepFailed), to: stateEnding, fx: endHeld,
		end: &wantEnd{status: interrupted, kind: KindInterrupted, held: true}},
	{name: "interrupted, on_interrupt: requeue", from: requeueing(stateRunning, errShutdown), ev: ev(evStepsDone), to: stateEnding, fx: endHeld,
		end: &wantEnd{status: interrupted, kind: KindInterrupted, held: true, requeue: true}},
	{name: "a transition is never requeued and holds no slots", from: lifecycle{state: stateRunning, transition: true, cause: errShutdown}, ev: ev(evStepsDone), to: stateEnding, fx: ended,
		end: &wantEnd{status: interrupted, kind: KindInterrupted}},
	{name: "RUNNING could not be recorded: the end records the hooks' event", from: at(stateRunning), ev: evErr(evNotStarted, errDisk), to: stateEnding, fx: endHeld,
		end: &wantEnd{status: failed, kind: KindInternal, held: true, withBefore: true}},
	{name: "RUNNING failed because the task never existed", from: lifecycle{state: stateRunning, created: creationFailed}, ev: evErr(evNotStarted, errDisk), to: stateEnded,
		fx: effRelease | effNotify | effForget | effSettle, end: &wantEnd{status: failed, kind: KindInternal, held: true, vanished: true}},
	{name: "a failed creation stops a running task", from: pending(stateRunning), ev: evErr(evCreated, errRefusedWrite), to: stateRunning, fx: effStop},
	{name: "an interrupt asks the engine to pause", from: at(stateRunning), ev: ev(evInterrupt), to: stateRunning, fx: effPause},
	{name: "a second interrupt waits for the first to be over", from: pausing(stateRunning), ev: ev(evInterrupt), to: stateRunning},
	{name: "no interrupt once a stop is asked", from: stopping(stateRunning, byOperator), ev: ev(evInterrupt), to: stateRunning},
	{name: "the engine paused: PAUSED, then the handler", from: pausing(stateRunning), ev: ev(evPaused), to: statePaused, fx: effRecordPaused | effHandle},
	{name: "a stop came before the boundary: no pause", from: lifecycle{state: stateRunning, pausing: true, cause: byOperator}, ev: ev(evPaused), to: stateRunning},
	{name: "a preempting task runs under its victim's slots: it gives none back", from: lifecycle{state: stateRunning, borrowed: true}, ev: ev(evStepsDone), to: stateEnding, fx: ended,
		end: &wantEnd{status: succeeded}},

	// Paused: the engine waits at a step boundary while the handler runs.
	{name: "the handler succeeded, policy resume: RUNNING again", from: pausing(statePaused), ev: ev(evHandled), to: stateRunning, fx: effRecordResumed},
	{name: "policy requeue stops the steps", from: pausing(statePaused), ev: evErr(evHandled, byRequeue), to: statePaused, fx: effStop},
	{name: "policy cancel stops the steps", from: pausing(statePaused), ev: evErr(evHandled, byCancel), to: statePaused, fx: effStop},
	{name: "a failed handler stops the steps", from: pausing(statePaused), ev: evErr(evHandled, handlerFailed), to: statePaused, fx: effStop},
	{name: "a stop during the handler wins over its end", from: stopping(statePaused, byOperator), ev: ev(evHandled), to: statePaused},
	{name: "cancel stops a paused task", from: pausing(statePaused), ev: evErr(evCancel, byOperator), to: statePaused, fx: effStop},
	{name: "the timeout stops a paused task", from: pausing(statePaused), ev: ev(evTimeout), to: statePaused, fx: effStop},
	{name: "the drain stops a paused task", from: pausing(statePaused), ev: ev(evShutdown), to: statePaused, fx: effStop},
	{name: "a failed creation stops a paused task", from: lifecycle{state: statePaused, created: creationPending}, ev: evErr(evCreated, errRefusedWrite), to: statePaused, fx: effStop},
	{name: "requeued: QUEUED again, in this process", from: stopping(statePaused, byRequeue), ev: ev(evStepsDone), to: stateEnding, fx: endHeld,
		end: &wantEnd{status: interrupted, kind: KindInterrupted, held: true, requeue: true, again: true}},
	{name: "cancelled by the policy: kind preempted", from: stopping(statePaused, byCancel), ev: ev(evStepsDone), to: stateEnding, fx: endHeld,
		end: &wantEnd{status: cancelled, kind: KindPreempted, held: true}},
	{name: "the handler failed: FAILED", from: stopping(statePaused, handlerFailed), ev: ev(evStepsDone), to: stateEnding, fx: endHeld,
		end: &wantEnd{status: failed, kind: KindFailed, held: true}},
	{name: "the handler timed out: TIMED_OUT", from: stopping(statePaused, handlerTimedOut), ev: ev(evStepsDone), to: stateEnding, fx: endHeld,
		end: &wantEnd{status: timedOut, kind: KindTimeout, held: true}},
	{name: "the drain during a pause: interrupted", from: requeueing(statePaused, errShutdown), ev: ev(evStepsDone), to: stateEnding, fx: endHeld,
		end: &wantEnd{status: interrupted, kind: KindInterrupted, held: true, requeue: true}},

	// Queued: a preempting task is lent its victim's slots.
	{name: "lent: admitted under its victim's slots", from: at(stateQueued), ev: ev(evLent), to: stateAdmitted, fx: effDequeue},
	{name: "its victim ended first: it waits for slots of its own again", from: lifecycle{state: stateAdmitted, borrowed: true}, ev: ev(evReturned), to: stateQueued, fx: effRequeue},
	{name: "only a lent task goes back", from: at(stateAdmitted), ev: ev(evReturned), to: stateAdmitted},
	{name: "a lent task cancelled before it starts gives nothing back", from: lifecycle{state: stateAdmitted, borrowed: true}, ev: evErr(evCancel, byOperator), to: stateEnding, fx: ended,
		end: &wantEnd{status: cancelled, kind: KindCancelled}},

	// Ending: the end is queued for the store.
	{name: "concluded: waiters go, the drain stops waiting", from: lifecycle{state: stateEnding, end: ending{held: true}}, ev: ev(evConcluded), to: stateEnded, fx: effNotify | effForget | effSettle},
	{name: "concluded, without slots", from: at(stateEnding), ev: ev(evConcluded), to: stateEnded, fx: effNotify | effForget},
	{name: "a cancel after the end is decided changes nothing", from: at(stateEnding), ev: evErr(evCancel, byOperator), to: stateEnding},
	{name: "a start after another goroutine ended it changes nothing", from: at(stateEnding), ev: ev(evStarted), to: stateEnding},
}

func TestLifecycle(t *testing.T) {
	for _, row := range lifecycleTable {
		t.Run(row.from.state.String()+"/"+row.ev.kind.String()+"/"+row.name, func(t *testing.T) {
			l := row.from
			out := l.step(row.ev)
			if l.state != row.to || out.fx != row.fx {
				t.Fatalf("%s + %s: went to %s with %s, want %s with %s", row.from.state, row.ev, l.state, out.fx, row.to, row.fx)
			}
			if row.fx.has(effStop) && out.cause == nil {
				t.Errorf("stop without a cause")
			}
			// The shell feeds in what the one piece of work yields.
			if n := bitsSet(out.fx & (effPlan | effAsk | effSteps | effAwaitCreation | effConclude)); n > 1 {
				t.Errorf("%s: %d effects that yield an event", out.fx, n)
			}
			if out.fx.has(effAwaitCreation) && (out.fx != effAwaitCreation || l != row.from) {
				t.Errorf("await-creation must come alone and change nothing: %s, %+v", out.fx, l)
			}
			decided := row.fx.has(effRecordEnd) || row.end != nil && row.end.vanished
			if (row.end != nil) != decided {
				t.Fatalf("row says end %v but effects %s", row.end, row.fx)
			}
			if row.end == nil {
				return
			}
			got := wantEnd{status: out.end.status, kind: ErrorKind(out.end.err.GetKind()), requeue: out.end.requeue,
				withBefore: out.end.withBefore, held: out.end.held, vanished: out.end.vanished, again: out.end.again}
			if got != *row.end {
				t.Errorf("ended %+v, want %+v", got, *row.end)
			}
			if l.end != out.end {
				t.Errorf("the lifecycle keeps %+v, the shell was told %+v", l.end, out.end)
			}
		})
	}
}

// Every state meets every event: a pair the table does not list changes
// nothing and asks for nothing. So no pair is left to chance, and a new
// state or event without rows shows here.
func TestLifecycleIgnoresWhatAStateDoesNotExpect(t *testing.T) {
	listed := map[[2]uint8]bool{}
	for _, row := range lifecycleTable {
		listed[[2]uint8{uint8(row.from.state), uint8(row.ev.kind)}] = true
	}
	sample := map[eventKind]event{
		evPlanned: evErr(evPlanned, lost), evAnswered: evErr(evAnswered, denial), evNotStarted: evErr(evNotStarted, errDisk),
		evStepsDone: evErr(evStepsDone, stepFailed), evCancel: evErr(evCancel, byOperator), evCreated: evErr(evCreated, errRefusedWrite),
		evEnd: evErr(evEnd, errShutdown),
	}
	ignored := 0
	for s := stateNew; s <= stateEnded; s++ {
		for k := evQueued; k <= evConcluded; k++ {
			if listed[[2]uint8{uint8(s), uint8(k)}] {
				continue
			}
			e, ok := sample[k]
			if !ok {
				e = ev(k)
			}
			for _, from := range []lifecycle{at(s), pending(s), stopping(s, errTimeout), transitionAt(s)} {
				l := from
				if out := l.step(e); out.fx != 0 || l.state != s {
					t.Errorf("%s + %s (not in the table): went to %s with %s; give it a row", s, e, l.state, out.fx)
				}
			}
			ignored++
		}
	}
	t.Logf("%d of %d pairs are ignored", ignored, int(stateEnded+1)*int(evConcluded))
}

// Only admission, a cancel, a failed creation and the Ledger's answers
// take a task out of the queue or out of Claiming (where admission lent
// it its slots): the shell feeds those under the manager's lock
// (run.apply, lockedEvent; admission feeds evAdmitted under it), so the
// admission queue and the lifecycle always agree.
func TestOnlyLockedEventsLeaveTheQueue(t *testing.T) {
	for k := evQueued; k <= evConcluded; k++ {
		for _, err := range []error{nil, errRefusedWrite} {
			e := evErr(k, err)
			locked := k == evAdmitted || lockedEvent(e)
			for _, from := range []lifecycle{at(stateQueued), pending(stateQueued), at(stateClaiming), pending(stateClaiming),
				stopping(stateClaiming, errShutdown), stopping(stateClaiming, byOperator)} {
				l := from
				l.step(e)
				if l.state != from.state && !locked {
					t.Errorf("%s took a %s task to %s without the manager's lock", e, from.state, l.state)
				}
			}
		}
	}
}

// An end is decided once: whatever comes after it, from any state,
// changes neither the end nor the state but by concluded.
func TestEndIsDecidedOnce(t *testing.T) {
	for s := stateNew; s < stateEnding; s++ {
		l := lifecycle{state: s, transition: s == stateNew}
		first := l.step(evErr(evCancel, byOperator))
		if l.state == s { // a stop of running work (or a claim): its end decides
			first = l.step(ev(evGranted))
			if l.state == s {
				first = l.step(ev(evStepsDone))
			}
			if l.state == s {
				first = l.step(ev(evAnswered))
			}
			if l.state == s {
				first = l.step(ev(evPlanned))
			}
		}
		if l.state != stateEnding {
			t.Fatalf("from %s a cancel did not lead to an end (at %s)", s, l.state)
		}
		end := l.end
		if end.status != cancelled || first.end != end {
			t.Fatalf("from %s: ended %s, want CANCELLED", s, end.status)
		}
		for k := evQueued; k <= evEnd; k++ {
			if out := l.step(evErr(k, errShutdown)); out.fx != 0 || l.state != stateEnding || l.end != end {
				t.Errorf("from %s, after the end: %s led to %s with %s", s, k, l.state, out.fx)
			}
		}
	}
}

func TestEffectsAndEventsHaveNames(t *testing.T) {
	if got, want := (effDequeue | effSettle).String(), "{dequeue settle}"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
	if n := len(effectNames); effects(1)<<n != effSettle<<1 {
		t.Errorf("%d effect names for %d effects", n, bitsUpTo(effSettle))
	}
	if len(eventNames) != int(evConcluded)+1 || len(stateNames) != int(stateEnded)+1 {
		t.Errorf("%d event names, %d state names", len(eventNames), len(stateNames))
	}
}

func bitsSet(e effects) int {
	n := 0
	for ; e != 0; e &= e - 1 {
		n++
	}
	return n
}

func bitsUpTo(e effects) int {
	n := 0
	for ; e != 0; e >>= 1 {
		n++
	}
	return n
}

// The shell: how each way a task can end is recorded, and what its
// watchers see.

// recordedRun builds a run of task, records its creation and has it
// admitted, as Submit does, but starts no goroutine for it: the test
// drives it by hand.
func recordedRun(t *testing.T, m *Manager, task string) *run {
	t.Helper()
	r, err := m.prepare(&aurav1.SubmitRequest{Task: task})
	if err != nil {
		t.Fatal(err)
	}
	row, queued := r.record("")
	if err := m.store.Write(context.Background(), store.Batch{Create: row, Events: []store.Event{queued}}).Wait(); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.live[r.id] = r
	if _, err := m.queue.Push(admission.Request{ID: r.id, Owner: r.principal, Priority: r.snap.Priority, Tags: r.tags}); err != nil {
		t.Fatal(err)
	}
	m.backlog.add(r.principal)
	r.step(ev(evQueued))
	if admitted := m.admitLocked(); len(admitted) != 1 || admitted[0] != r {
		t.Fatalf("admitted %v", admitted)
	}
	return r
}

// startedStep moves r to RUNNING with its only step running, as its
// goroutine leaves it when the task is stopped mid-step.
func startedStep(t *testing.T, r *run, step string) {
	t.Helper()
	r.mu.Lock()
	r.lc.state = stateRunning
	r.mu.Unlock()
	if err := r.recordStatus(aurav1.TaskStatus_TASK_STATUS_RUNNING, "task.running", ""); err != nil {
		t.Fatal(err)
	}
	r.StepStarted(step, 1)
}

// eventTypes lists the types of a task's recorded events, in log order.
func eventTypes(t *testing.T, m *Manager, id string) []string {
	t.Helper()
	evs, err := m.store.Events(context.Background(), 0, store.EventFilter{TaskID: id}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

func stored(t *testing.T, m *Manager, id string) *aurav1.Task {
	t.Helper()
	row, err := m.store.GetTask(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	task, err := decodeTask(row)
	if err != nil {
		t.Fatal(err)
	}
	return task
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// A task's end is recorded once, with its hook events in the same write;
// the step it stopped in ends failed, or cancelled when the task was
// stopped from outside; watchers are released, the slots go back and the
// task is counted. A second end (a cancel racing the task's own end)
// changes nothing.
func TestTaskEndIsRecordedOnce(t *testing.T) {
	for _, tc := range []struct {
		name      string
		stop      event // from outside, before the steps return; evNone: none
		steps     error
		status    aurav1.TaskStatus
		step      aurav1.StepStatus
		afterHook string
	}{
		{"failed", event{}, stepFailed, aurav1.TaskStatus_TASK_STATUS_FAILED, aurav1.StepStatus_STEP_STATUS_FAILED, hooks.AfterTaskFailure},
		{"cancelled", evErr(evCancel, byOperator), nil, aurav1.TaskStatus_TASK_STATUS_CANCELLED, aurav1.StepStatus_STEP_STATUS_CANCELLED, hooks.AfterTaskFailure},
		{"timed out", ev(evTimeout), stepFailed, aurav1.TaskStatus_TASK_STATUS_TIMED_OUT, aurav1.StepStatus_STEP_STATUS_CANCELLED, hooks.AfterTaskFailure},
		{"interrupted", ev(evShutdown), nil, aurav1.TaskStatus_TASK_STATUS_INTERRUPTED, aurav1.StepStatus_STEP_STATUS_CANCELLED, hooks.AfterTaskFailure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := newManager(t, 1)
			r := recordedRun(t, m, "lifecycle/once")
			done := r.Done()
			startedStep(t, r, "wait")
			if tc.stop.kind != evNone {
				r.feed(nil, tc.stop)
			}
			r.feed(nil, evErr(evStepsDone, tc.steps))
			r.feed(nil, evErr(evCancel, &cancelledError{reason: "too late"}))

			task := stored(t, m, r.id)
			if task.Status != tc.status || task.FinishedAt == nil || task.AdmittedAt == nil {
				t.Fatalf("stored status %s (admitted %v, finished %v), want %s", task.Status, task.AdmittedAt, task.FinishedAt, tc.status)
			}
			if len(task.Steps) != 1 || task.Steps[0].Status != tc.step || task.Steps[0].Error != task.Error.GetMessage() {
				t.Errorf("step %v, want %s with the task's error %q", task.Steps, tc.step, task.Error.GetMessage())
			}
			want := []string{"task.queued", hooks.BeforeTaskRun, "task.running", "step.started", "task.finished", tc.afterHook, hooks.AfterTaskRun}
			if got := eventTypes(t, m, r.id); !slices.Equal(got, want) {
				t.Errorf("events %v, want %v", got, want)
			}
			if !isClosed(done) {
				t.Error("Done not closed after the end was recorded")
			}
			st, counts := m.Stats()
			if counts[tc.status.String()] != 1 || len(counts) != 1 {
				t.Errorf("counts %v, want one %s", counts, tc.status)
			}
			if st.InUse != 0 {
				t.Errorf("%d slots still in use", st.InUse)
			}
			if got, _ := m.Get(context.Background(), r.id); got.GetStatus() != tc.status {
				t.Errorf("Get says %s, want %s", got.GetStatus(), tc.status)
			}
		})
	}
}

// denyAll is a before_task_run hook that refuses every task.
type denyAll struct{}

func (denyAll) Name() string { return "freeze" }
func (denyAll) BeforeTaskRun(_ context.Context, _ *hooks.BeforeRunRequest, resp *hooks.BeforeRunResponse) error {
	resp.Deny("change freeze")
	return nil
}

// A denied task never runs, and the log says why: the before_task_run
// event that was answered with no is recorded with the task's end, in the
// same write, in the order it happened.
func TestDeniedTaskRecordsItsBeforeHookWithItsEnd(t *testing.T) {
	m, fc := newManager(t, 1)
	m.hooks.Register(denyAll{})
	resp, err := m.Submit(context.Background(), &aurav1.SubmitRequest{Task: "bench/noop"})
	if err != nil {
		t.Fatal(err)
	}
	<-fc.watch(resp.TaskId)
	task := stored(t, m, resp.TaskId)
	if task.Status != aurav1.TaskStatus_TASK_STATUS_FAILED || task.Error.GetKind() != string(KindDenied) || task.StartedAt != nil {
		t.Fatalf("stored %s, error %v, started %v; want FAILED, denied, never started", task.Status, task.Error, task.StartedAt)
	}
	want := []string{"task.queued", hooks.BeforeTaskRun, "task.finished", hooks.AfterTaskFailure, hooks.AfterTaskRun}
	if got := eventTypes(t, m, resp.TaskId); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
}

// A task with on_interrupt: requeue that the daemon stops under goes back
// to the queue instead of ending: stored QUEUED for its next attempt, with
// no trace of the run that was cut short and no task.finished. A
// transition (a child task) is never requeued on its own: it ends
// INTERRUPTED like any other task.
func TestInterruptedTaskRequeues(t *testing.T) {
	m, _ := newManager(t, 1)
	r := recordedRun(t, m, "lifecycle/requeue")
	done := r.Done()
	startedStep(t, r, "wait")
	r.feed(nil, ev(evShutdown))
	r.feed(nil, ev(evStepsDone))

	task := stored(t, m, r.id)
	if task.Status != aurav1.TaskStatus_TASK_STATUS_QUEUED || task.Attempt != 2 || task.StartedAt != nil || len(task.Steps) != 0 || task.Error != nil {
		t.Fatalf("stored %s attempt %d started %v steps %v error %v; want QUEUED, attempt 2, nothing of the cut run",
			task.Status, task.Attempt, task.StartedAt, task.Steps, task.Error)
	}
	want := []string{"task.queued", hooks.BeforeTaskRun, "task.running", "step.started", "task.queued"}
	if got := eventTypes(t, m, r.id); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	if !isClosed(done) {
		t.Error("Done not closed once the requeue was recorded")
	}

	// A task restored at start with a parent: a transition whose parent
	// was interrupted.
	child := recordedRun(t, m, "lifecycle/requeue")
	child.snap.ParentId = r.id
	child.lc = lifecycleOf(child.snap, "", child.def.Meta.OnInterrupt, false)
	startedStep(t, child, "wait")
	child.feed(nil, ev(evShutdown))
	child.feed(nil, ev(evStepsDone))
	if task := stored(t, m, child.id); task.Status != aurav1.TaskStatus_TASK_STATUS_INTERRUPTED || task.Error.GetKind() != string(KindInterrupted) {
		t.Fatalf("child stored %s %v, want INTERRUPTED, kind interrupted", task.Status, task.Error)
	}
}

// A task whose creation never committed ends without a trace: no record,
// no event, not counted, gone from the registry, its watchers released.
func TestUnrecordedTaskEndsWithoutATrace(t *testing.T) {
	m, _ := newManager(t, 1)
	r, err := m.prepare(&aurav1.SubmitRequest{Task: "bench/noop"})
	if err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	m.live[r.id] = r
	m.mu.Unlock()
	r.created, r.lc.created = store.Finished(errRefusedWrite), creationPending
	done := r.Done()
	r.feed(nil, evErr(evEnd, fmt.Errorf("whatever it was: %w", errUnrecorded)))
	if evs := eventTypes(t, m, r.id); len(evs) != 0 {
		t.Errorf("events %v recorded for a task that never existed", evs)
	}
	if _, err := m.Get(context.Background(), r.id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get: %v, want not found", err)
	}
	if _, counts := m.Stats(); len(counts) != 0 {
		t.Errorf("counted: %v", counts)
	}
	if !isClosed(done) {
		t.Error("Done not closed")
	}
}
