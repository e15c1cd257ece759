// Package engine runs one task's steps: ordering and dependencies, when,
// loops, retries, per-step timeouts and returns. Each action call runs on
// a lane (the io pool or a cpu worker) or inline; the engine schedules
// nothing beyond the one task it is given.
//
// Semantics, in short:
//
//   - A list of steps runs in order in the caller's goroutine. The first
//     step that fails without continue_on_failure ends the task; later
//     steps stay pending.
//   - A map of steps is a graph ordered by depends_on. Steps whose
//     dependencies allow run concurrently. A plain dependency needs the
//     upstream step to succeed; {id: failed} needs it to fail; {id: done}
//     needs it to have run at all. {all: [...]} (the default) needs every
//     condition, {any: [...]} one. A step whose conditions can no longer
//     hold is skipped, so skipping cascades down plain dependencies. After
//     a failure the graph keeps going where depends_on allows (failure
//     handlers run), and the task still fails unless the failed step has
//     continue_on_failure.
//   - when is evaluated just before the step; falsy skips it.
//   - loop runs the action once per item (for_each) or times times, at
//     most parallelism at once; the step's output is the list of iteration
//     outputs. The first failing iteration fails the step and stops new
//     iterations from starting. retry and timeout apply per iteration.
//   - retry re-runs a failed attempt after delay, multiplied by backoff
//     each time and capped by max_delay. timeout bounds one attempt and
//     fails it with *StepTimeoutError, which is not a task timeout.
//   - All templates are evaluated on the goroutine that called Run, so step
//     goroutines never read shared state. Scope: inputs, nodes.<id>.{output,
//     status, error, attempts}, loop.{item, index}, plan.{name, dir},
//     task.{id, name}.
package engine
