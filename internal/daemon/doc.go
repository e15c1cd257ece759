// Package daemon assembles aurad from its parts: New opens the store,
// loads the plans, starts the worker pools, builds the ExecutionManager,
// recovers what an earlier run left behind and builds the gRPC server, one
// named step per part; Shutdown stops the parts in the reverse order.
// cmd/aurad turns flags into a Config; tests and benchmarks build the same
// daemon in-process.
package daemon
