package actions

import (
	"context"
	"errors"
	"fmt"
)

// ErrNoRunTask is returned by run_task when the caller gave no Env.RunTask.
var ErrNoRunTask = errors.New("run_task: running other tasks is not available here")

func runTaskSpec() Spec {
	return Spec{Name: "run_task", Params: []string{"task", "inputs"}, Run: runRunTask, Waits: true}
}

// runRunTask runs another task of the same plan through env.RunTask; its
// returns become this step's output. Errors are passed through wrapped, so a
// caller can still inspect the child's typed error.
func runRunTask(ctx context.Context, env *Env, params map[string]any) (any, error) {
	p, err := newParams("run_task", params, []string{"task", "inputs"})
	if err != nil {
		return nil, err
	}
	task, err := p.requiredStr("task")
	if err != nil {
		return nil, err
	}
	var inputs map[string]any
	if p.has("inputs") {
		m, ok := params["inputs"].(map[string]any)
		if !ok {
			return nil, p.errorf("inputs", "must be a map, got %s", typeName(params["inputs"]))
		}
		inputs = m
	}
	if env == nil || env.RunTask == nil {
		return nil, ErrNoRunTask
	}
	out, err := env.RunTask(ctx, task, inputs)
	if err != nil {
		return out, fmt.Errorf("run_task %q: %w", task, err)
	}
	return out, nil
}
