package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aura-dev/aura/internal/plan"
)

func sampleMap() *plan.StateMap {
	return &plan.StateMap{
		States: map[string]*plan.State{
			"logged_out": {Name: "logged_out", Check: "checks/logged_out", Priority: 10},
			"logged_in":  {Name: "logged_in", Check: "checks/logged_in"},
			"lobby":      {Name: "lobby", Check: "checks/in_lobby", Sequential: true},
		},
		Transitions: []*plan.Transition{
			{From: "logged_out", To: "logged_in", Task: "login", Cost: 1},
			{From: "logged_in", To: "lobby", Task: "enter_lobby", Cost: 2.5},
		},
	}
}

func TestRenderers(t *testing.T) {
	quoted := &plan.StateMap{
		States: map[string]*plan.State{
			`a"b`: {Name: `a"b`, Check: `chk\x`},
			"c<d": {Name: "c<d", Check: "checks/c"},
		},
		Transitions: []*plan.Transition{{From: `a"b`, To: "c<d", Task: "go", Cost: 0}},
	}
	tests := []struct {
		name, format string
		sm           *plan.StateMap
		want         []string // lines (trimmed) that must appear
		wantNot      []string
	}{
		{
			name: "dot states carry their check and settings", format: "dot", sm: sampleMap(),
			want: []string{
				`digraph "stateful" {`,
				`"logged_out" [label="logged_out\ncheck: checks/logged_out\npriority 10"];`,
				`"logged_in" [label="logged_in\ncheck: checks/logged_in"];`,
				`"lobby" [label="lobby\ncheck: checks/in_lobby\nsequential"];`,
			},
		},
		{
			name: "dot transitions carry task and cost", format: "dot", sm: sampleMap(),
			want: []string{
				`"logged_out" -> "logged_in" [label="login (cost 1)"];`,
				`"logged_in" -> "lobby" [label="enter_lobby (cost 2.5)"];`,
			},
		},
		{
			name: "dot escapes quotes and backslashes", format: "dot", sm: quoted,
			want: []string{
				`"a\"b" [label="a\"b\ncheck: chk\\x"];`,
				`"a\"b" -> "c<d" [label="go (cost 0)"];`,
			},
		},
		{
			name: "mermaid nodes in name order with notes", format: "mermaid", sm: sampleMap(),
			want: []string{
				"flowchart LR",
				`s0(["<b>lobby</b><br/>check: checks/in_lobby<br/>sequential"])`,
				`s1(["<b>logged_in</b><br/>check: checks/logged_in"])`,
				`s2(["<b>logged_out</b><br/>check: checks/logged_out<br/>priority 10"])`,
			},
		},
		{
			name: "mermaid edges carry task and cost", format: "mermaid", sm: sampleMap(),
			want: []string{
				`s2 -->|"login (cost 1)"| s1`,
				`s1 -->|"enter_lobby (cost 2.5)"| s0`,
			},
		},
		{
			name: "mermaid escapes quotes and angle brackets", format: "mermaid", sm: quoted,
			want:    []string{`s0(["<b>a#quot;b</b><br/>check: chk\x"])`, `s1(["<b>c#lt;d</b><br/>check: checks/c"])`, `s0 -->|"go (cost 0)"| s1`},
			wantNot: []string{`a"b`, "c<d"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := graphRenderers[tc.format](&b, "stateful", tc.sm); err != nil {
				t.Fatal(err)
			}
			lines := map[string]bool{}
			for _, l := range strings.Split(b.String(), "\n") {
				lines[strings.TrimSpace(l)] = true
			}
			for _, w := range tc.want {
				if !lines[w] {
					t.Errorf("missing line %s\n--- got:\n%s", w, b.String())
				}
			}
			for _, w := range tc.wantNot {
				if strings.Contains(b.String(), w) {
					t.Errorf("output contains unescaped %q:\n%s", w, b.String())
				}
			}
		})
	}
}

func TestRenderIsDeterministic(t *testing.T) {
	for format, render := range graphRenderers {
		var first bytes.Buffer
		if err := render(&first, "p", sampleMap()); err != nil {
			t.Fatal(err)
		}
		for range 20 {
			var again bytes.Buffer
			_ = render(&again, "p", sampleMap())
			if again.String() != first.String() {
				t.Fatalf("%s output differs between runs:\n%s\n---\n%s", format, first.String(), again.String())
			}
		}
	}
}

func runAurad(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestPlanGraphCommand(t *testing.T) {
	// By name under --plans, and by directory path: the same graph.
	byName, err := runAurad(t, "plan", "graph", "stateful", "--plans", "../../examples/plans", "--format", "mermaid")
	if err != nil {
		t.Fatal(err)
	}
	byPath, err := runAurad(t, "plan", "graph", "../../examples/plans/stateful", "--format", "mermaid")
	if err != nil {
		t.Fatal(err)
	}
	if byName != byPath {
		t.Fatalf("by name and by path differ:\n%s\n---\n%s", byName, byPath)
	}
	for _, want := range []string{`-->|"login (cost 1)"|`, `-->|"logout (cost 2)"|`, "check: checks/logged_out"} {
		if !strings.Contains(byName, want) {
			t.Errorf("stateful graph lacks %q:\n%s", want, byName)
		}
	}
	dot, err := runAurad(t, "plan", "graph", "../../examples/plans/stateful")
	if err != nil || !strings.HasPrefix(dot, `digraph "stateful" {`) {
		t.Fatalf("default format is not DOT (err %v):\n%s", err, dot)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"demo", "--plans", "../../examples/plans"}, "has no states_map.yaml"},
		{[]string{"nosuch", "--plans", "../../examples/plans"}, `no plan "nosuch"`},
		{[]string{"stateful", "--plans", "../../examples/plans", "--format", "svg"}, "want dot or mermaid"},
	} {
		_, err := runAurad(t, append([]string{"plan", "graph"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("plan graph %v: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}

func TestPlanGraphReportsABrokenPlan(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "broken")
	if err := os.MkdirAll(filepath.Join(p, "tasks"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(p, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("tasks/probe.yaml", "steps:\n  - action: noop\n")
	write("states_map.yaml", "states:\n  up: {check: probe}\ntransitions:\n  - {from: up, to: down, task: nosuch}\n")
	_, err := runAurad(t, "plan", "graph", "broken", "--plans", dir)
	if err == nil || !strings.Contains(err.Error(), "has problems") || !strings.Contains(err.Error(), `unknown state "down"`) {
		t.Fatalf("error %v, want the plan's problems listed", err)
	}
}
