// Package daemon assembles aurad from its parts: it opens the store, loads
// the plans, starts the worker pools, builds the ExecutionManager, recovers
// what an earlier run left behind and serves gRPC. cmd/aurad turns flags
// into a Config; tests and benchmarks build the same daemon in-process.
package daemon
