package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// uiChildPlan writes the plan "uichild", whose task use needs the state
// warm: reaching it runs the transition warm_up as a child task. The
// planner's check of the state cold waits for the file open, and warm_up
// for the file go, both in the returned directory: the test decides when
// the child appears and when it ends.
func uiChildPlan(t *testing.T) (planDir, gates string) {
	t.Helper()
	planDir = filepath.Join(t.TempDir(), "uichild")
	gates = t.TempDir()
	open, goFile, warm := filepath.Join(gates, "open"), filepath.Join(gates, "go"), filepath.Join(gates, "warm")
	files := map[string]string{
		"plan.yaml": "title: A task whose state transition the web UI tests hold\n",
		"states_map.yaml": `states:
  cold: {check: checks/cold}
  warm: {check: checks/warm}
transitions:
  - {from: cold, to: warm, task: warm_up, cost: 1}
`,
		"tasks/checks/cold.yaml": fmt.Sprintf(`meta: {title: Cold until warmed, timeout: 5m}
steps:
  - id: probe
    action: exec
    params:
      argv: [sh, -c, 'while [ ! -e "$1" ]; do sleep 0.05; done; test -f "$2"', sh, %q, %q]
      ok_codes: [0, 1]
returns: "{{ nodes.probe.output.exit_code == 1 }}"
`, open, warm),
		"tasks/checks/warm.yaml": fmt.Sprintf(`meta: {title: Warm once warmed, timeout: 1m}
steps:
  - id: probe
    action: exec
    params:
      argv: [test, -f, %q]
      ok_codes: [0, 1]
returns: "{{ nodes.probe.output.exit_code == 0 }}"
`, warm),
		"tasks/warm_up.yaml": fmt.Sprintf(`meta: {title: Warm up, timeout: 5m}
steps:
  - id: wait
    action: exec
    params:
      argv: [sh, -c, 'while [ ! -e "$1" ]; do sleep 0.05; done; touch "$2"', sh, %q, %q]
`, goFile, warm),
		"tasks/use.yaml": "meta: {title: Use it warm, requires_initial_state: warm, timeout: 5m}\nsteps:\n  - action: noop\n",
	}
	for name, body := range files {
		path := filepath.Join(planDir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return planDir, gates
}

// testUIChildTasks opens the page of a task before its state transition
// starts; the transition's child task appears in the page's list of child
// tasks, running, and then shows its end, without a reload. With blocked,
// the page's event stream is refused and the list follows by polling.
func testUIChildTasks(t *testing.T, ctx context.Context, b *browser, d *daemon, base, gates string, blocked bool) {
	open, goFile, warm := filepath.Join(gates, "open"), filepath.Join(gates, "go"), filepath.Join(gates, "warm")
	// The plan starts cold again, its gates shut.
	for _, p := range []string{open, goFile, warm} {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	release := func(path string) {
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Whatever happens, nothing is left waiting for aurad's drain.
	t.Cleanup(func() { _ = os.WriteFile(open, nil, 0o644); _ = os.WriteFile(goFile, nil, 0o644) })
	if blocked {
		b = blockedStreamTab(t, b, base)
	}

	b.consoleErrors() // what earlier subtests left
	id := d.submit(ctx, &aurav1.SubmitRequest{Task: "uichild/use"})
	b.run("opening the task", chromedp.Navigate(base+"/tasks/"+id), chromedp.WaitVisible(chromedp.CSS("#no-children")))
	evalT[bool](b, `window.__notReloaded = true`)
	if blocked {
		b.waitClass("#live", "live polling")
	}
	release(open)

	const row = `#children-list tr[data-id]`
	b.run("waiting for the child's row", chromedp.WaitVisible(chromedp.CSS(row)))
	b.waitText(row+" .badge", "RUNNING")
	child := b.text(row + " a")
	tk, err := d.client.Get(ctx, child)
	if err != nil || tk.GetParentId() != id || tk.GetTask() != "uichild/warm_up" {
		t.Fatalf("the row's child %q is %v (%v), want uichild/warm_up with parent %s", child, tk, err, id)
	}
	if got := b.text(row); !strings.Contains(got, "uichild/warm_up") {
		t.Errorf("the child's row reads %q, want it to name uichild/warm_up", got)
	}
	if b.count("#no-children") != 0 {
		t.Error(`"None" still shows beside the child's row`)
	}

	release(goFile)
	b.waitText("#task-status", "SUCCEEDED")
	b.waitText(row+" .badge", "SUCCEEDED")
	if n := b.count(row); n != 1 {
		t.Errorf("the list has %d rows, want the one child", n)
	}
	if !evalT[bool](b, `window.__notReloaded === true`) {
		t.Error("the task page reloaded instead of updating its list of child tasks in place")
	}
	// A blocked stream is the browser's own error; nothing else may be.
	for _, e := range b.consoleErrors() {
		if !blocked || (!strings.Contains(e, "/events?") && !strings.Contains(e, "ERR_BLOCKED_BY_CLIENT")) {
			t.Errorf("console error: %s", e)
		}
	}
}
