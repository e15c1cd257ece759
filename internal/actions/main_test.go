package actions

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/types/known/structpb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testPlan is a plan directory plans/foo next to a sibling plans/foo_x that
// shares its name prefix and holds a secret, as an attacker would arrange,
// and the plan's workspace data/work/foo, with its own such sibling.
type testPlan struct {
	dir         string // plans/foo: the plan's source, read only
	sibling     string // plans/foo_x
	work        string // data/work/foo: the workspace
	workSibling string // data/work/foo_x
	env         *Env
}

func newTestPlan(t *testing.T) *testPlan {
	t.Helper()
	base := t.TempDir()
	tp := &testPlan{
		dir:         filepath.Join(base, "plans", "foo"),
		sibling:     filepath.Join(base, "plans", "foo_x"),
		work:        filepath.Join(base, "data", "work", "foo"),
		workSibling: filepath.Join(base, "data", "work", "foo_x"),
	}
	// data/work exists, as aurad makes it at start; data/work/foo is
	// created by the first write.
	for _, d := range []string{tp.dir, tp.sibling, tp.workSibling} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(tp.sibling, "secret.txt"), "sibling secret")
	writeFile(t, filepath.Join(tp.workSibling, "secret.txt"), "sibling secret")
	writeFile(t, filepath.Join(base, "outside.txt"), "outside secret")
	root, err := os.OpenRoot(tp.dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	tp.env = &Env{PlanDir: tp.dir, Root: root, WorkDir: tp.work, TaskID: "t-1"}
	return tp
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// run looks the action up in the builtin registry and runs it, checking that
// whatever it outputs can travel through google.protobuf.Value.
func run(t *testing.T, env *Env, action string, params map[string]any) (any, error) {
	t.Helper()
	return runCtx(t, context.Background(), env, action, params)
}

func runCtx(t *testing.T, ctx context.Context, env *Env, action string, params map[string]any) (any, error) {
	t.Helper()
	reg := Builtin()
	defer reg.Close()
	spec, ok := reg.Lookup(action)
	if !ok {
		t.Fatalf("action %q not registered", action)
	}
	out, err := spec.Run(ctx, env, params)
	if out != nil {
		if _, perr := structpb.NewValue(out); perr != nil {
			t.Fatalf("%s output %#v cannot travel as google.protobuf.Value: %v", action, out, perr)
		}
	}
	return out, err
}

func mustRun(t *testing.T, env *Env, action string, params map[string]any) any {
	t.Helper()
	out, err := run(t, env, action, params)
	if err != nil {
		t.Fatalf("%s %v: unexpected error: %v", action, params, err)
	}
	return out
}

func asParamError(t *testing.T, err error, param string) *ParamError {
	t.Helper()
	var pe *ParamError
	if !errors.As(err, &pe) {
		t.Fatalf("want *ParamError for %q, got %T: %v", param, err, err)
	}
	if pe.Param != param {
		t.Fatalf("ParamError names %q, want %q (%v)", pe.Param, param, err)
	}
	return pe
}
