package plan

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const scheduledTask = "inputs:\n  - {name: n, type: int, required: true}\n  - {name: s, type: string, default: x}\nsteps:\n  - action: noop\n"

func TestSchedulesLoad(t *testing.T) {
	root := t.TempDir()
	writeTree(t, filepath.Join(root, "p"), map[string]string{
		"tasks/a.yaml": scheduledTask,
		"tasks/b.yaml": "steps:\n  - action: noop\n",
		"schedules.yaml": `schedules:
  nightly:
    task: p/a
    cron: "30 2 * * *"
    timezone: Europe/Berlin
    jitter: 30s
    inputs: {n: 3}
    overlap: buffer_one
    catch_up: 1h
  often:
    task: p/a
    every: 15m
    inputs: {n: 1}
    paused: true
  then:
    task: p/a
    after: {task: p/b, status: [succeeded, failed]}
    inputs: {n: 2, s: "{{ trigger.task.status }}"}
`,
	})
	set, err := Load(root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	n, ok := set.Schedule("p/nightly")
	if !ok || n.Cron != "30 2 * * *" || n.Location.String() != "Europe/Berlin" || n.Jitter != 30*time.Second ||
		n.Overlap != OverlapBufferOne || n.CatchUp != time.Hour || n.Line != 2 {
		t.Errorf("nightly = %+v", n)
	}
	o, _ := set.Schedule("p/often")
	if o.Every != 15*time.Minute || !o.Paused || o.Overlap != OverlapSkip {
		t.Errorf("often = %+v", o)
	}
	th, _ := set.Schedule("p/then")
	if th.After == nil || th.After.Task != "p/b" || strings.Join(th.After.Statuses, ",") != "succeeded,failed" {
		t.Errorf("then.after = %+v", th.After)
	}
	v, err := th.Inputs.Eval(map[string]any{"trigger": map[string]any{"task": map[string]any{"status": "failed"}}})
	if err != nil || v.(map[string]any)["s"] != "failed" {
		t.Errorf("then inputs = %v, %v", v, err)
	}
	if got := len(set.Schedules()); got != 3 {
		t.Errorf("%d schedules", got)
	}
}

// Every mistake is reported at its file:line, and the plan is unavailable.
func TestSchedulesProblems(t *testing.T) {
	root := t.TempDir()
	writeTree(t, filepath.Join(root, "p"), map[string]string{
		"tasks/a.yaml": scheduledTask,
		"tasks/b.yaml": "steps:\n  - action: noop\n",
		"schedules.yaml": `schedules:
  bad_cron:
    task: p/a
    cron: "61 * * * *"
    inputs: {n: 1}
  bad_zone:
    task: p/a
    cron: "0 8 * * *"
    timezone: Mars/Olympus
    inputs: {n: 1}
  no_task:
    task: p/missing
    every: 1m
  bad_input:
    task: p/a
    every: 1m
    inputs: {n: "three"}
  missing_input:
    task: p/a
    every: 1m
  both:
    task: p/a
    every: 1m
    cron: "* * * * *"
    inputs: {n: 1}
  bad_overlap:
    task: p/a
    every: 1m
    overlap: sometimes
    inputs: {n: 1}
  timed_trigger:
    task: p/a
    every: 1m
    inputs: {n: "{{ trigger.task.result }}"}
  bad_status:
    task: p/a
    after: {task: p/b, status: done}
    inputs: {n: 1}
`,
	})
	probs := Check(root)
	want := []string{
		"schedules.yaml:4:11: cron \"61 * * * *\"",
		"schedules.yaml:9:15: timezone \"Mars/Olympus\"",
		"schedules.yaml:11:1: schedule no_task: task: unknown task \"p/missing\"",
		"schedules.yaml:14:1: schedule bad_input: inputs: input \"n\": want int",
		"schedules.yaml:18:1: schedule missing_input: inputs: input \"n\": required input is missing",
		"schedules.yaml:21:3: schedule both: give only one of cron, every and after",
		"schedules.yaml:29:14: overlap \"sometimes\"",
		"schedules.yaml:34:17: trigger.task is only set for an after trigger",
		"schedules.yaml:37:32: after.status \"done\"",
	}
	var got []string
	for _, p := range probs {
		got = append(got, strings.TrimPrefix(p.String(), filepath.Join(root, "p")+"/"))
	}
	if len(got) != len(want) {
		t.Fatalf("problems:\n%s\nwant %d", strings.Join(got, "\n"), len(want))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %d = %q, want it to start %q", i, got[i], want[i])
		}
	}
}

// A task file may not read trigger: only a schedule's inputs have it.
func TestTaskTemplateMayNotReadTrigger(t *testing.T) {
	root := t.TempDir()
	writeTree(t, filepath.Join(root, "p"), map[string]string{
		"tasks/a.yaml": "steps:\n  - action: log\n    params: {message: \"{{ trigger.task.id }}\"}\n",
	})
	probs := Check(root)
	if len(probs) != 1 || !strings.Contains(probs[0].Msg, "trigger.task is only set in a schedules.yaml") {
		t.Fatalf("problems = %v", probs)
	}
}

// After triggers that would fire each other for ever are refused.
func TestAfterTriggerLoopIsAProblem(t *testing.T) {
	root := t.TempDir()
	writeTree(t, filepath.Join(root, "p"), map[string]string{
		"tasks/a.yaml": "steps:\n  - action: noop\n",
		"tasks/b.yaml": "steps:\n  - action: noop\n",
		"schedules.yaml": "schedules:\n" +
			"  a_then_b:\n    task: p/b\n    after: {task: p/a}\n" +
			"  b_then_a:\n    task: p/a\n    after: {task: p/b}\n",
	})
	probs := Check(root)
	if len(probs) != 2 || !strings.Contains(probs[0].Msg, "p/a -> p/b -> p/a") || probs[0].Line != 2 {
		t.Fatalf("problems = %v", probs)
	}
}
