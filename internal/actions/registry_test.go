package actions

import (
	"context"
	"errors"
	"slices"
	"testing"
)

func TestBuiltinNamesAndPortability(t *testing.T) {
	reg := Builtin()
	defer reg.Close()
	want := []string{
		"assert", "exec", "fail", "file.delete", "file.exists", "file.list", "file.read",
		"file.write", "hash", "http.request", "log", "noop", "run_task", "set", "sleep",
	}
	if got := reg.Names(); !slices.Equal(got, want) {
		t.Fatalf("Names() = %v, want %v", got, want)
	}
	portable := []string{"assert", "exec", "fail", "file.delete", "file.exists", "file.list", "file.read", "file.write", "hash", "noop"}
	for _, name := range want {
		spec, ok := reg.Lookup(name)
		if !ok || spec.Name != name || spec.Run == nil {
			t.Fatalf("Lookup(%q) = %+v, %v", name, spec, ok)
		}
		if spec.Portable != slices.Contains(portable, name) {
			t.Errorf("%s: Portable = %v", name, spec.Portable)
		}
	}
	if _, ok := reg.Lookup("shell"); ok {
		t.Fatal("Lookup of an unknown action succeeded")
	}
}

// Every action refuses a parameter it does not know, naming it, and accepts
// (does not call unknown) every name its Spec.Params advertises, so a plan
// loader can rely on Params.
func TestSpecParamsMatchWhatActionsAccept(t *testing.T) {
	reg := Builtin()
	defer reg.Close()
	tp := newTestPlan(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // nothing should actually run long
	for _, name := range reg.Names() {
		spec, _ := reg.Lookup(name)
		if spec.AnyParams {
			continue
		}
		_, err := spec.Run(ctx, tp.env, map[string]any{"bogus_param": true})
		pe := asParamError(t, err, "bogus_param")
		if pe.Action != name || pe.Msg != "unknown parameter" {
			t.Errorf("%s: %v", name, err)
		}
		for _, param := range spec.Params {
			_, err := spec.Run(ctx, tp.env, map[string]any{param: []any{}})
			var pe *ParamError
			if errors.As(err, &pe) && pe.Msg == "unknown parameter" {
				t.Errorf("%s: advertised param %q is refused as unknown", name, param)
			}
		}
	}
}

func BenchmarkLookupAndRunNoop(b *testing.B) {
	reg := Builtin()
	defer reg.Close()
	env := &Env{}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		spec, _ := reg.Lookup("noop")
		if _, err := spec.Run(ctx, env, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func TestRegister(t *testing.T) {
	reg := Builtin()
	defer reg.Close()
	if err := reg.Register(Spec{Name: "noop", Run: runNoop}); err == nil {
		t.Fatal("registering a duplicate name succeeded")
	}
	if err := reg.Register(Spec{Name: "custom"}); err == nil {
		t.Fatal("registering a spec without Run succeeded")
	}
	if err := reg.Register(Spec{Name: "custom", Run: runNoop}); err != nil {
		t.Fatal(err)
	}
	if _, ok := reg.Lookup("custom"); !ok {
		t.Fatal("registered action not found")
	}
}

func TestPanicsBecomeErrors(t *testing.T) {
	reg := Builtin()
	defer reg.Close()
	if err := reg.Register(Spec{Name: "broken", Run: func(context.Context, *Env, map[string]any) (any, error) {
		panic("deliberate panic in an action")
	}}); err != nil {
		t.Fatal(err)
	}
	spec, _ := reg.Lookup("broken")
	_, err := spec.Run(context.Background(), nil, nil)
	var pe *PanicError
	if !errors.As(err, &pe) || pe.Action != "broken" || len(pe.Stack) == 0 {
		t.Fatalf("err = %v", err)
	}
}

// Actions that need nothing from the Env accept a nil one.
func TestNilEnv(t *testing.T) {
	for action, params := range map[string]map[string]any{
		"noop": nil, "log": {"message": "x"}, "set": {"a": int64(1)}, "assert": {"that": true},
	} {
		if _, err := run(t, nil, action, params); err != nil {
			t.Errorf("%s with nil Env: %v", action, err)
		}
	}
	for action, params := range map[string]map[string]any{
		"file.read": {"path": "a"}, "exec": {"argv": []any{"true"}}, "run_task": {"task": "t"},
	} {
		_, err := run(t, nil, action, params)
		var pe *ParamError
		if err == nil || errors.As(err, &pe) {
			t.Errorf("%s with nil Env: err = %v, want a missing-environment error", action, err)
		}
	}
}

func TestParamErrorMessage(t *testing.T) {
	_, err := run(t, &Env{}, "exec", map[string]any{"argv": []any{}})
	if got, want := err.Error(), `exec: param "argv": must be a non-empty list of strings`; got != want {
		t.Fatalf("error = %q, want %q", got, want)
	}
}
