// Package schedule fires tasks by themselves: on cron or interval ticks
// (schedules.yaml's cron and every) and when other tasks end (after
// triggers).
//
// The rules are plain data structures with no goroutines and no I/O, so
// they are tested with a fake clock: Timing computes the next tick in a
// time zone with its DST rules, and Book decides, for a moment in time,
// which ticks fire, which are skipped and why (overlap policies, catch-up
// after downtime, pause). Runner is the thin component around them: it
// sleeps until the next tick, submits each fire through the
// ExecutionManager, keeps what must outlive a restart in the store, and
// follows the event log for after triggers and for the ends of the tasks
// it fired.
package schedule
