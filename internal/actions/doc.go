// Package actions implements Aura's builtin step actions (exec, http.request,
// file.*, hash, noop, log, sleep, fail, set, assert, run_task) behind a
// Registry, and confines every file path an action touches to the plan
// directory through an os.Root.
//
// Actions take already-evaluated, JSON-like parameters (nil, bool, int64,
// float64, string, []any, map[string]any) and return JSON-like outputs, so a
// result can travel through google.protobuf.Value unchanged.
package actions
