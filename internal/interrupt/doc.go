// Package interrupt polls the interrupt rules of the plans'
// interrupts.yaml and interrupts the tasks they watch when a rule's check
// fires.
//
// A rule watches what the plan's running tasks hold: each instance of a
// pool (scope: <pool>), the plan (scope: plan) or everything (scope:
// global). Board is the rules' state as plain data, told the time and the
// running tasks, with no goroutines and no I/O, so cooldowns, scopes and
// "poll only while held" are tested with a fake clock: it says which
// checks are due and whether a check's result fires. Runner is the thin
// component around it: it asks the ExecutionManager which tasks hold what,
// runs the due checks under a holder's resources, and asks the manager to
// interrupt the holders of an instance whose check fired.
package interrupt
