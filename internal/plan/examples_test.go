package plan

import (
	"slices"
	"testing"
)

// builtinActions are the builtin actions docs/writing-plans.md documents:
// the examples may use only these.
var builtinActions = []string{
	"noop", "log", "sleep", "fail", "set", "assert", "exec", "http.request",
	"file.read", "file.write", "file.exists", "file.list", "file.delete", "hash", "run_task",
}

func builtinKnown(name string) bool { return slices.Contains(builtinActions, name) }

// testParams knows the params of a few actions (the real list comes from
// internal/actions through Options.ActionParams).
func testParams(action string) ([]string, bool) {
	switch action {
	case "noop":
		return nil, true
	case "log":
		return []string{"message", "level"}, true
	}
	return nil, false
}

func TestExamplesLoadCleanly(t *testing.T) {
	set, err := Load("../../examples/plans", Options{ActionKnown: builtinKnown})
	if err != nil {
		t.Fatalf("examples do not load:\n%v", err)
	}
	for _, name := range []string{"web", "files", "stateful"} {
		p, ok := set.Plan(name)
		if !ok {
			t.Fatalf("plan %q missing", name)
		}
		if len(p.Tasks) == 0 {
			t.Errorf("plan %q has no tasks", name)
		}
	}
	sp, _ := set.Plan("stateful")
	if sp.StateMap == nil || len(sp.StateMap.States) != 3 || len(sp.StateMap.Transitions) == 0 {
		t.Fatalf("stateful plan state map = %+v", sp.StateMap)
	}
	play, err := set.Task("stateful/play")
	if err != nil {
		t.Fatal(err)
	}
	if play.Meta.RequiresInitialState != "lobby" {
		t.Errorf("play requires %q", play.Meta.RequiresInitialState)
	}
}

// BenchmarkSetTask resolves a submitted task name, as every Submit does.
func BenchmarkSetTask(b *testing.B) {
	set, err := Load("../../examples/plans", Options{ActionKnown: builtinKnown})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := set.Task("demo/hello"); err != nil {
			b.Fatal(err)
		}
	}
}
