package actions

import (
	"context"
	"errors"
	"reflect"
	"testing"
)

func TestRunTaskCallsRunTask(t *testing.T) {
	var gotTask string
	var gotInputs map[string]any
	env := &Env{RunTask: func(_ context.Context, task string, inputs map[string]any) (any, error) {
		gotTask, gotInputs = task, inputs
		return map[string]any{"ok": true}, nil
	}}
	out := mustRun(t, env, "run_task", map[string]any{"task": "login", "inputs": map[string]any{"user": "bob"}})
	if !reflect.DeepEqual(out, map[string]any{"ok": true}) {
		t.Fatalf("output = %#v", out)
	}
	if gotTask != "login" || !reflect.DeepEqual(gotInputs, map[string]any{"user": "bob"}) {
		t.Fatalf("RunTask got %q %v", gotTask, gotInputs)
	}
}

func TestRunTaskPassesChildErrorsThrough(t *testing.T) {
	childErr := errors.New("child exploded")
	env := &Env{RunTask: func(context.Context, string, map[string]any) (any, error) { return nil, childErr }}
	_, err := run(t, env, "run_task", map[string]any{"task": "x"})
	if !errors.Is(err, childErr) {
		t.Fatalf("err = %v, want it to wrap the child's error", err)
	}
}

func TestRunTaskErrors(t *testing.T) {
	_, err := run(t, &Env{}, "run_task", map[string]any{"task": "x"})
	if !errors.Is(err, ErrNoRunTask) {
		t.Fatalf("without RunTask: %v", err)
	}
	_, err = run(t, &Env{}, "run_task", map[string]any{})
	asParamError(t, err, "task")
	_, err = run(t, &Env{}, "run_task", map[string]any{"task": "x", "inputs": []any{}})
	asParamError(t, err, "inputs")
}
