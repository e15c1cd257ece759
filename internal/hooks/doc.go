// Package hooks is where the task lifecycle meets plugins: the four hook
// points, hooks registered in code, remote interceptors that may deny a task
// before it runs, and the fan-out of the event log to live subscribers.
//
// Hook points are typed interfaces (a hook implements the ones it cares
// about), in the style of Nomad's task runner hooks: each takes a request
// struct built on TaskContext and, at before_task_run, a response to fill
// in, so what hooks are told grows without changing them. A hook that
// errors or panics is logged and never breaks the task; only an explicit
// denial from before_task_run stops one.
//
// Fan-out never slows execution: the store's commit hook puts events in a
// ring of the latest ones and wakes the subscribers, each of which reads at
// its own pace. A subscriber that falls further behind than the ring reaches
// catches up from the durable event log, then goes on from the ring at the
// exact sequence it reached.
package hooks
