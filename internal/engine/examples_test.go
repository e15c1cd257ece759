package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/aura-dev/aura/internal/actions"
	"github.com/aura-dev/aura/internal/plan"
)

// builtinSet runs the real builtin actions (as cmd/aurad wires them, minus
// the lanes) so the example plans are exercised end to end. Plans write in
// work/<plan>, as aurad's do in <data>/work/<plan>.
type builtinSet struct {
	reg  *actions.Registry
	work string
}

type builtinAction struct {
	spec actions.Spec
	work string
}

func (b builtinSet) Lookup(name string) (Action, bool) {
	s, ok := b.reg.Lookup(name)
	return builtinAction{s, b.work}, ok
}

func (a builtinAction) Portable() bool { return a.spec.Portable }
func (a builtinAction) Waits() bool    { return a.spec.Waits }

func (a builtinAction) Run(ctx context.Context, env *ActionEnv, p map[string]any) (any, error) {
	return a.spec.Run(ctx, &actions.Env{PlanDir: env.Plan.Dir, WorkDir: filepath.Join(a.work, env.Plan.Name),
		RunTask: env.RunTask, TaskID: env.TaskID, HTTPAllowHosts: env.Plan.HTTP.AllowHosts}, p)
}

// TestExamplePlansRun loads a copy of examples/plans with the builtin
// actions' names and params, then runs the tasks a new user would try,
// in order (the stateful plan walks logged_out -> logged_in -> lobby and
// back through its check tasks and transitions). Whatever the tasks write
// goes to their workspaces: the plans' copy is left exactly as it was.
func TestExamplePlansRun(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("../../examples/plans")); err != nil {
		t.Fatal(err)
	}
	before := treeOf(t, dir)
	// The web plan fetches a test server on loopback, which http.request
	// refuses unless allowed: allowed here for every plan, as
	// aurad --http-allow-hosts 127.0.0.1 would.
	reg, err := actions.BuiltinWith(actions.Options{HTTPAllowHosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	set, err := plan.Load(dir, plan.Options{
		ActionKnown: func(n string) bool { _, ok := reg.Lookup(n); return ok },
		ActionParams: func(n string) ([]string, bool) {
			s, ok := reg.Lookup(n)
			if !ok || s.AnyParams {
				return nil, false
			}
			return s.Params, true
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/down" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		w.Write([]byte("hello aura"))
	}))
	defer srv.Close()

	r := New(Config{Actions: builtinSet{reg: reg, work: t.TempDir()}})
	var runTask func(ctx context.Context, id string, in map[string]any) (any, error)
	runTask = func(ctx context.Context, id string, in map[string]any) (any, error) {
		tk, err := set.Task(id)
		if err != nil {
			return nil, err
		}
		if in, err = tk.ResolveInputs(in); err != nil {
			return nil, err
		}
		res := r.Run(ctx, Request{Task: tk, Inputs: in, RunTask: runTask})
		return res.Returns, res.Err
	}
	tests := []struct {
		task    string
		inputs  map[string]any
		want    any    // compared when wantErr is ""
		wantErr string // substring of the error
	}{
		{"web/check", map[string]any{"url": srv.URL, "must_contain": "aura"},
			map[string]any{"url": srv.URL, "status": int64(200), "bytes": int64(10), "checked_body": true}, ""},
		{"web/check", map[string]any{"url": srv.URL + "/down", "expect_status": 503.0},
			map[string]any{"url": srv.URL + "/down", "status": int64(503), "bytes": int64(10), "checked_body": false}, ""},
		{"web/check", map[string]any{"url": srv.URL, "must_contain": "nope"}, nil, `step "body_ok"`},
		{"web/check_many", map[string]any{"urls": []any{srv.URL, srv.URL + "/a"}},
			map[string]any{"statuses": []any{int64(200), int64(200)}}, ""},
		{"files/cleanup", nil, map[string]any{"deleted": false}, ""},
		{"files/write_and_hash", nil, map[string]any{
			"path": "out/hello.txt", "files": []any{"hello.txt"},
			"sha256": sha256Hex("Hello from Aura\n"),
		}, ""},
		{"files/cleanup", nil, map[string]any{"deleted": true}, ""},
		{"files/batch", map[string]any{"count": 2.0}, map[string]any{
			"written": []any{"out/batch/part-0.txt", "out/batch/part-1.txt"},
			"sha256":  []any{sha256Hex("part 0 of 2\n"), sha256Hex("part 1 of 2\n")},
		}, ""},
		{"stateful/checks/logged_out", nil, true, ""},
		{"stateful/checks/logged_in", nil, false, ""},
		{"stateful/login", nil, nil, ""},
		{"stateful/checks/logged_out", nil, false, ""},
		{"stateful/checks/logged_in", nil, true, ""},
		{"stateful/enter_lobby", nil, nil, ""},
		{"stateful/checks/in_lobby", nil, true, ""},
		{"stateful/checks/logged_in", nil, false, ""},
		{"stateful/play", map[string]any{"rounds": 2.0}, map[string]any{"rounds_played": int64(2), "log": "round 1\nround 2\n"}, ""},
		{"stateful/logout", nil, nil, ""},
		{"stateful/checks/in_lobby", nil, false, ""},
		{"stateful/checks/logged_out", nil, true, ""},
	}
	for i, tc := range tests {
		got, err := runTask(context.Background(), tc.task, tc.inputs)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("#%d %s: err = %v, want %q", i, tc.task, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("#%d %s: %v", i, tc.task, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("#%d %s: returns %#v\nwant %#v", i, tc.task, got, tc.want)
		}
	}
	if after := treeOf(t, dir); !reflect.DeepEqual(after, before) {
		for name := range after {
			if _, ok := before[name]; !ok {
				t.Errorf("running the examples left %s in the plans", name)
			}
		}
		t.Errorf("running the examples changed the plans: %d files before, %d after", len(before), len(after))
	}
}

// treeOf maps every path under dir to its content ("" for directories).
func treeOf(t *testing.T, dir string) map[string]string {
	t.Helper()
	tree := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			tree[rel+"/"] = ""
			return nil
		}
		b, err := os.ReadFile(p)
		tree[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
