package plan

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const interruptTasks = "steps:\n  - action: noop\n"

// onlyDevicePool is a daemon that declares the pool device.
func onlyDevicePool(tag string) error {
	if strings.HasPrefix(tag, "device:") {
		return nil
	}
	return errors.New("no pool " + strings.TrimSuffix(tag, ":*") + " (pools: device)")
}

func TestInterruptsLoad(t *testing.T) {
	root := t.TempDir()
	writeTree(t, filepath.Join(root, "p"), map[string]string{
		"tasks/work.yaml":           interruptTasks,
		"tasks/checks/popup.yaml":   interruptTasks,
		"tasks/handlers/close.yaml": "inputs:\n  - {name: how, type: string, required: true}\nsteps:\n  - action: noop\n",
		"interrupts.yaml": `interrupts:
  popup:
    check: checks/popup
    every: 5s
    scope: device
    handler: handlers/close
    cooldown: 1m
    preempted: requeue
    abort_step: true
    inputs: {how: back}
  reset:
    check: checks/popup
    every: 1h
    scope: global
    handler: handlers/close
    inputs: {how: home}
`,
	})
	set, err := Load(root, Options{ResourceTagValid: onlyDevicePool})
	if err != nil {
		t.Fatal(err)
	}
	rules := set.Interrupts()
	if len(rules) != 2 {
		t.Fatalf("%d rules", len(rules))
	}
	p := rules[0]
	if p.ID != "p/popup" || p.Check != "p/checks/popup" || p.Handler != "p/handlers/close" || p.Every != 5*time.Second ||
		p.Scope != "device" || !p.PerInstance() || p.Cooldown != time.Minute || p.Preempted != PreemptedRequeue || !p.AbortStep ||
		p.Inputs["how"] != "back" || p.Line != 2 {
		t.Errorf("popup = %+v", p)
	}
	r := rules[1]
	if r.ID != "p/reset" || r.PerInstance() || r.Preempted != PreemptedResume || r.Cooldown != 0 || r.AbortStep {
		t.Errorf("reset = %+v", r)
	}
}

// Every mistake is reported at its file:line, and the plan is
// unavailable: tasks that do not exist, a scope that is no pool, bad
// durations and policies, inputs the handler does not take.
func TestInterruptsProblems(t *testing.T) {
	root := t.TempDir()
	writeTree(t, filepath.Join(root, "p"), map[string]string{
		"tasks/work.yaml":           interruptTasks,
		"tasks/checks/popup.yaml":   interruptTasks,
		"tasks/handlers/close.yaml": "inputs:\n  - {name: how, type: string, required: true}\nsteps:\n  - action: noop\n",
		"interrupts.yaml": `interrupts:
  no_check:
    check: checks/missing
    every: 5s
    scope: device
    handler: handlers/close
    inputs: {how: back}
  bad_scope:
    check: checks/popup
    every: 5s
    scope: printer
    handler: handlers/close
    inputs: {how: back}
  bad_every:
    check: checks/popup
    every: soon
    scope: plan
    handler: handlers/close
    inputs: {how: back}
  fast:
    check: checks/popup
    every: 10ms
    scope: plan
    handler: handlers/close
    inputs: {how: back}
  bad_policy:
    check: checks/popup
    every: 5s
    scope: plan
    handler: handlers/close
    preempted: later
    inputs: {how: back}
  bad_cooldown:
    check: checks/popup
    every: 5s
    scope: plan
    handler: handlers/close
    cooldown: -1s
    inputs: {how: back}
  no_handler_input:
    check: checks/popup
    every: 5s
    scope: plan
    handler: handlers/close
  unknown_key:
    check: checks/popup
    every: 5s
    scope: plan
    handler: handlers/close
    inputs: {how: back}
    retries: 3
  no_scope:
    check: checks/popup
    every: 5s
    handler: handlers/gone
`,
	})
	probs := CheckWith(root, Options{ResourceTagValid: onlyDevicePool})
	want := []string{
		"interrupts.yaml:3:12: interrupt no_check: check: no task \"checks/missing\" in plan p",
		"interrupts.yaml:11:12: scope \"printer\": the check is polled per instance of a pool (or give \"plan\" or \"global\"), but no pool printer (pools: device)",
		"interrupts.yaml:16:12: every: bad duration \"soon\"",
		"interrupts.yaml:22:12: every 10ms is below 100ms",
		"interrupts.yaml:31:16: preempted \"later\": want one of resume, requeue, cancel",
		"interrupts.yaml:38:15: cooldown must not be negative",
		"interrupts.yaml:40:3: interrupt no_handler_input: inputs for handler p/handlers/close: input \"how\": required input is missing",
		"interrupts.yaml:51:5: unknown key \"retries\" in interrupt unknown_key",
		"interrupts.yaml:52:3: interrupt no_scope: scope is required",
		"interrupts.yaml:55:14: interrupt no_scope: handler: no task \"handlers/gone\" in plan p",
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
