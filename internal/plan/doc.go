// Package plan loads and validates plans from disk: plan.yaml, states_map.yaml
// and the task files under tasks/, reporting every problem with file:line:col.
package plan
