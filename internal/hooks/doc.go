// Package hooks is where the task lifecycle meets plugins: the four hook
// points, hooks registered in code, remote interceptors that may deny a task
// before it runs, and the fan-out of the event log to live subscribers.
//
// Hook points are typed interfaces (a hook implements the ones it cares
// about), in the style of Nomad's task runner hooks. A hook that errors or
// panics is logged and never breaks the task; only an explicit denial from
// before_task_run stops one.
//
// Fan-out never slows execution: every subscriber has a bounded buffer, and a
// subscriber that falls behind is switched to catching up from the durable
// event log, then rejoins the live feed at the exact sequence it reached.
package hooks
