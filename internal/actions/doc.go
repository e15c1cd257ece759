// Package actions implements Aura's builtin step actions (exec, http.request,
// file.*, hash, noop, log, sleep, fail, set, assert, run_task) behind a
// Registry. Every file path an action touches is confined with os.Root to
// the plan's two directories: its source (read only: plans are loaded from
// there) and its workspace under the data directory, where all writes go
// and exec runs.
//
// Actions take already-evaluated, JSON-like parameters (nil, bool, int64,
// float64, string, []any, map[string]any) and return JSON-like outputs, so a
// result can travel through google.protobuf.Value unchanged.
package actions
