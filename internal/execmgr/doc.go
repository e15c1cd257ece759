// Package execmgr is the ExecutionManager: it owns the lifecycle of every
// task from Submit to its terminal status. It validates and records a
// submission durably (one at a time, or a series in order: Sequence),
// admits it through the admission queue (claiming any slots shared beyond
// this process from the Ledger, outside its lock), drives state
// planning, asks hooks and interceptors, runs the steps through the engine
// under one timeout budget, and records the outcome with its events in one
// transaction. Errors are mapped to a TaskError kind here and nowhere else.
package execmgr
