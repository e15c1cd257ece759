package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// The interrupt tests run plan "farm" on two phones, alpha and beta. Its
// task work runs four steps on a given phone, each appending its name to
// the phone's steps.log in the plan's workspace; s2 and s3 then wait for
// the files go2 and go3 there, so a test decides which step is running
// when. Each rule polls for a file of its own on the phone (popup,
// popup_requeue, ...) and its handler removes it and appends
// "handler <file>" to the log.
const (
	intrResources = "resources:\n  device:\n    instances: [alpha, beta]\n    limit: 1\n"
	intrWork      = `meta:
  resource_tags: ["device:{{ inputs.serial }}"]
  timeout: 2m
inputs:
  - {name: serial, type: string, required: true}
steps:
  - id: s1
    action: exec
    params: {argv: [sh, -c, 'mkdir -p "devices/$AURA_RESOURCE_DEVICE" && echo s1 >> "devices/$AURA_RESOURCE_DEVICE/steps.log"']}
  - id: s2
    action: exec
    params: {argv: [sh, -c, 'echo s2 >> "devices/$AURA_RESOURCE_DEVICE/steps.log"; while [ ! -e "devices/$AURA_RESOURCE_DEVICE/go2" ]; do sleep 0.02; done']}
  - id: s3
    action: exec
    params: {argv: [sh, -c, 'echo s3 >> "devices/$AURA_RESOURCE_DEVICE/steps.log"; while [ ! -e "devices/$AURA_RESOURCE_DEVICE/go3" ]; do sleep 0.02; done']}
  - id: s4
    action: exec
    params: {argv: [sh, -c, 'echo s4 >> "devices/$AURA_RESOURCE_DEVICE/steps.log"']}
`
	intrHandler = `inputs:
  - {name: file, type: string, required: true}
steps:
  - id: close
    action: exec
    params: {argv: [sh, -c, 'rm -f "devices/$AURA_RESOURCE_DEVICE/{{ inputs.file }}" && echo "handler {{ inputs.file }}" >> "devices/$AURA_RESOURCE_DEVICE/steps.log"']}
`
	intrBrokenHandler = `steps:
  - id: close
    action: exec
    params: {argv: [sh, -c, 'echo "the popup would not close" >&2; exit 3']}
`
)

// intrCheck is a check task that holds while file exists on the phone.
func intrCheck(file string) string {
	return fmt.Sprintf("steps:\n  - id: look\n    action: file.exists\n    params: {path: \"devices/{{ resources.device }}/%s\"}\nreturns: \"{{ nodes.look.output }}\"\n", file)
}

// intrFarm is aurad on plan farm with the given interrupt rules.
type intrFarm struct {
	*daemon
	work string // the plan's workspace
	res  string // the resources file
}

func startInterruptFarm(t *testing.T, rules string, args ...string) *intrFarm {
	t.Helper()
	plans := t.TempDir()
	dir := filepath.Join(plans, "farm")
	files := map[string]string{
		"tasks/work.yaml":            intrWork,
		"tasks/handlers/close.yaml":  intrHandler,
		"tasks/handlers/broken.yaml": intrBrokenHandler,
		"tasks/checks/broken.yaml":   "steps:\n  - action: exec\n    params: {argv: [sh, -c, 'echo no adb >&2; exit 1']}\n",
		"interrupts.yaml":            rules,
	}
	for _, f := range []string{"popup", "popup_requeue", "popup_cancel", "popup_fail"} {
		files["tasks/checks/"+f+".yaml"] = intrCheck(f)
	}
	for rel, body := range files {
		path := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res := filepath.Join(t.TempDir(), "resources.yaml")
	if err := os.WriteFile(res, []byte(intrResources), 0o644); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	d := startDaemonIn(t, plans, data, append([]string{"--resources", res}, args...)...)
	return &intrFarm{daemon: d, work: filepath.Join(data, "work", "farm"), res: res}
}

// touch creates a file on a phone.
func (f *intrFarm) touch(t *testing.T, phone, name string) {
	t.Helper()
	dir := filepath.Join(f.work, "devices", phone)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (f *intrFarm) exists(phone, name string) bool {
	_, err := os.Stat(filepath.Join(f.work, "devices", phone, name))
	return err == nil
}

// steps is a phone's steps.log, one entry a line.
func (f *intrFarm) steps(phone string) []string {
	b, _ := os.ReadFile(filepath.Join(f.work, "devices", phone, "steps.log"))
	return strings.Fields(strings.ReplaceAll(strings.TrimSpace(string(b)), "handler ", "handler:"))
}

func (f *intrFarm) stepsAre(phone string, want ...string) func() bool {
	return func() bool { return slices.Equal(f.steps(phone), want) }
}

func (f *intrFarm) work1(t *testing.T, ctx context.Context, phone string) string {
	t.Helper()
	return f.submit(ctx, &aurav1.SubmitRequest{Task: "farm/work", Inputs: inputs(t, map[string]any{"serial": phone})})
}

// rule returns a rule's listing.
func (f *intrFarm) rule(t *testing.T, ctx context.Context, name string) *aurav1.InterruptRule {
	t.Helper()
	resp, err := aurav1.NewInterruptServiceClient(f.client.Conn()).ListInterrupts(ctx, &aurav1.ListInterruptsRequest{Plan: "farm"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resp.Rules {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no rule %s in %v", name, resp.Rules)
	return nil
}

// eventTypes are a task's event types, in order, up to its end.
func (f *intrFarm) eventTypes(t *testing.T, ctx context.Context, id string) []string {
	t.Helper()
	var out []string
	if err := f.client.Watch(ctx, id, func(ev *aurav1.TaskEvent) error {
		out = append(out, ev.Type)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitEvent waits for task id's event of type typ (from its first event).
func waitEvent(t *testing.T, ctx context.Context, d *daemon, id, typ string) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stream, err := d.client.Exec.Stream(sctx, &aurav1.StreamRequest{TaskId: id})
	if err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("waiting for %s of task %s: %v", typ, id, err)
		}
		if ev.Type == typ {
			return
		}
	}
}

func countOf(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

// A popup on one of two busy phones: the handler runs once, on that phone
// only, after the step that was running; the task resumes at the next
// step and succeeds with every step run once. The other phone's task is
// not touched. A second popup inside the rule's cooldown is left alone.
func TestInterruptResumesOnOneInstanceOnly(t *testing.T) {
	f := startInterruptFarm(t, `interrupts:
  popup:
    check: checks/popup
    every: 100ms
    scope: device
    handler: handlers/close
    cooldown: 1h
    inputs: {file: popup}
`)
	ctx := ctxT(t, 90*time.Second)
	alpha, beta := f.work1(t, ctx, "alpha"), f.work1(t, ctx, "beta")
	waitFor(t, "both tasks in s2", 30*time.Second, func() bool {
		return slices.Equal(f.steps("alpha"), []string{"s1", "s2"}) && slices.Equal(f.steps("beta"), []string{"s1", "s2"})
	})
	waitFor(t, "the rule polled on both phones", 30*time.Second, func() bool { return f.rule(t, ctx, "farm/popup").ChecksRun >= 4 })

	f.touch(t, "alpha", "popup")
	waitFor(t, "the rule to fire on alpha", 30*time.Second, func() bool { return f.rule(t, ctx, "farm/popup").Fires == 1 })
	r := f.rule(t, ctx, "farm/popup")
	if lf := r.LastFire; lf.Instance != "device:alpha" || !slices.Equal(lf.TaskIds, []string{alpha}) {
		t.Fatalf("last fire = %v, want device:alpha, task %s", lf, alpha)
	}
	// It pauses at the end of s2, which is still running: the interrupt
	// is recorded on the task first.
	waitEvent(t, ctx, f.daemon, alpha, "interrupt.fired")
	if got := f.steps("alpha"); !slices.Equal(got, []string{"s1", "s2"}) {
		t.Fatalf("alpha ran %q before s2 ended", got)
	}
	f.touch(t, "alpha", "go2")
	waitFor(t, "alpha to resume at s3 after the handler", 30*time.Second, f.stepsAre("alpha", "s1", "s2", "handler:popup", "s3"))
	if f.exists("alpha", "popup") {
		t.Fatal("the handler did not remove alpha's popup")
	}

	// A popup again, inside the hour of cooldown: the rule is held back
	// on alpha while it goes on polling beta.
	f.touch(t, "alpha", "popup")
	before := f.rule(t, ctx, "farm/popup").ChecksRun
	waitFor(t, "more checks", 30*time.Second, func() bool { return f.rule(t, ctx, "farm/popup").ChecksRun >= before+5 })
	r = f.rule(t, ctx, "farm/popup")
	if r.Fires != 1 || !f.exists("alpha", "popup") || r.CooldownLeft.AsDuration() < 59*time.Minute {
		t.Fatalf("in cooldown: fires %d, popup there %v, cooldown left %v", r.Fires, f.exists("alpha", "popup"), r.CooldownLeft.AsDuration())
	}

	f.touch(t, "alpha", "go3")
	got := f.wait(ctx, alpha)
	if got.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("alpha ended %s: %v", got.Status, got.Error)
	}
	if s := f.steps("alpha"); !slices.Equal(s, []string{"s1", "s2", "handler:popup", "s3", "s4"}) {
		t.Fatalf("alpha's steps: %q, want each once with the handler after s2", s)
	}
	for _, st := range got.Steps {
		if st.Status != aurav1.StepStatus_STEP_STATUS_SUCCEEDED || st.Attempts != 1 {
			t.Errorf("alpha step %s: %s after %d attempts", st.Id, st.Status, st.Attempts)
		}
	}
	evs := f.eventTypes(t, ctx, alpha)
	for _, typ := range []string{"interrupt.fired", "task.paused", "task.resumed"} {
		if countOf(evs, typ) != 1 {
			t.Errorf("alpha has %d %s events, want 1: %q", countOf(evs, typ), typ, evs)
		}
	}

	// beta ran on untouched.
	if s := f.steps("beta"); !slices.Equal(s, []string{"s1", "s2"}) {
		t.Fatalf("beta's steps: %q", s)
	}
	f.touch(t, "beta", "go2")
	f.touch(t, "beta", "go3")
	if got := f.wait(ctx, beta); got.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("beta ended %s: %v", got.Status, got.Error)
	}
	if s := f.steps("beta"); !slices.Equal(s, []string{"s1", "s2", "s3", "s4"}) {
		t.Fatalf("beta's steps: %q", s)
	}
	evs = f.eventTypes(t, ctx, beta)
	for _, typ := range []string{"interrupt.fired", "task.paused", "task.resumed"} {
		if n := countOf(evs, typ); n != 0 {
			t.Errorf("beta has %d %s events: %q", n, typ, evs)
		}
	}
}

// requeue: the handler runs, then the task is queued again with attempt 2
// and runs its steps from the first. cancel: the handler runs, then the
// task ends CANCELLED with kind preempted. Both abort the running step.
func TestInterruptRequeueAndCancel(t *testing.T) {
	f := startInterruptFarm(t, `interrupts:
  again:
    check: checks/popup_requeue
    every: 100ms
    scope: device
    handler: handlers/close
    preempted: requeue
    abort_step: true
    inputs: {file: popup_requeue}
  stop:
    check: checks/popup_cancel
    every: 100ms
    scope: device
    handler: handlers/close
    preempted: cancel
    abort_step: true
    inputs: {file: popup_cancel}
`)
	ctx := ctxT(t, 90*time.Second)
	alpha, beta := f.work1(t, ctx, "alpha"), f.work1(t, ctx, "beta")
	waitFor(t, "both tasks in s2", 30*time.Second, func() bool {
		return slices.Equal(f.steps("alpha"), []string{"s1", "s2"}) && slices.Equal(f.steps("beta"), []string{"s1", "s2"})
	})
	f.touch(t, "alpha", "popup_requeue")
	f.touch(t, "beta", "popup_cancel")

	got := f.wait(ctx, beta)
	if got.Status != aurav1.TaskStatus_TASK_STATUS_CANCELLED || got.GetError().GetKind() != "preempted" {
		t.Fatalf("beta ended %s %v, want CANCELLED kind preempted", got.Status, got.Error)
	}
	if s := f.steps("beta"); !slices.Equal(s, []string{"s1", "s2", "handler:popup_cancel"}) {
		t.Fatalf("beta's steps: %q", s)
	}

	waitFor(t, "alpha to run again from s1", 30*time.Second, f.stepsAre("alpha", "s1", "s2", "handler:popup_requeue", "s1", "s2"))
	f.touch(t, "alpha", "go2")
	f.touch(t, "alpha", "go3")
	got = f.wait(ctx, alpha)
	if got.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED || got.Attempt != 2 {
		t.Fatalf("alpha ended %s, attempt %d (%v); want SUCCEEDED, attempt 2", got.Status, got.Attempt, got.Error)
	}
	if s := f.steps("alpha"); !slices.Equal(s, []string{"s1", "s2", "handler:popup_requeue", "s1", "s2", "s3", "s4"}) {
		t.Fatalf("alpha's steps: %q", s)
	}
	for name, fires := range map[string]uint64{"farm/again": 1, "farm/stop": 1} {
		if r := f.rule(t, ctx, name); r.Fires != fires {
			t.Errorf("%s fired %d times, want %d", name, r.Fires, fires)
		}
	}
}

// A handler that fails leaves the paused task FAILED, its error naming the
// rule and the handler's own error; a check that fails is counted and
// does not fire.
func TestInterruptFailingHandlerAndCheck(t *testing.T) {
	f := startInterruptFarm(t, `interrupts:
  popup:
    check: checks/popup_fail
    every: 100ms
    scope: device
    handler: handlers/broken
  blind:
    check: checks/broken
    every: 100ms
    scope: device
    handler: handlers/broken
`)
	ctx := ctxT(t, 90*time.Second)
	alpha := f.work1(t, ctx, "alpha")
	waitFor(t, "alpha in s2", 30*time.Second, f.stepsAre("alpha", "s1", "s2"))
	f.touch(t, "alpha", "popup_fail")
	waitEvent(t, ctx, f.daemon, alpha, "interrupt.fired")
	f.touch(t, "alpha", "go2")
	got := f.wait(ctx, alpha)
	msg := got.GetError().GetMessage()
	if got.Status != aurav1.TaskStatus_TASK_STATUS_FAILED || !strings.Contains(msg, "farm/popup") ||
		!strings.Contains(msg, "handlers/broken") || !strings.Contains(msg, "the popup would not close") {
		t.Fatalf("alpha ended %s: %q; want FAILED naming the rule, the handler and its error", got.Status, msg)
	}
	if s := f.steps("alpha"); !slices.Equal(s, []string{"s1", "s2"}) {
		t.Fatalf("alpha ran on after its handler failed: %q", s)
	}
	b := f.rule(t, ctx, "farm/blind")
	if b.ChecksErrored == 0 || b.Fires != 0 || b.LastCheckError == "" {
		t.Fatalf("a check that cannot run: %v", b)
	}
	if !strings.Contains(f.logs(), "interrupt check failed") {
		t.Fatal("the failed check is not logged")
	}
}

// Rules come and go with the plans: SIGHUP takes a new rule at once, and
// a broken file (on ReloadPlans) changes nothing and is reported at its
// line, as aurad plan check reports it. auractl interrupts and /metrics
// show what the rule did.
func TestInterruptRulesReloadListAndMetrics(t *testing.T) {
	f := startInterruptFarm(t, "interrupts:\n", "--admin-listen", "127.0.0.1:0")
	ctx := ctxT(t, 90*time.Second)
	list := func() []*aurav1.InterruptRule {
		resp, err := aurav1.NewInterruptServiceClient(f.client.Conn()).ListInterrupts(ctx, &aurav1.ListInterruptsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Rules
	}
	if rules := list(); len(rules) != 0 {
		t.Fatalf("rules before any: %v", rules)
	}
	file := filepath.Join(f.plans, "farm", "interrupts.yaml")
	write := func(body string) {
		if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("interrupts:\n  popup:\n    check: checks/popup\n    every: 100ms\n    scope: device\n    handler: handlers/close\n    cooldown: 1m\n    inputs: {file: popup}\n")
	if err := f.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the rule after SIGHUP", 30*time.Second, func() bool { return len(list()) == 1 })

	alpha := f.work1(t, ctx, "alpha")
	waitFor(t, "alpha in s2", 30*time.Second, f.stepsAre("alpha", "s1", "s2"))
	f.touch(t, "alpha", "popup")
	waitEvent(t, ctx, f.daemon, alpha, "interrupt.fired")
	f.touch(t, "alpha", "go2")
	f.touch(t, "alpha", "go3")
	if got := f.wait(ctx, alpha); got.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("alpha ended %s: %v", got.Status, got.Error)
	}

	out, code := auractl(t, f.daemon, "interrupts")
	if code != 0 || !strings.Contains(out, "farm/popup") || !strings.Contains(out, "device:alpha") || !strings.Contains(out, alpha) {
		t.Fatalf("auractl interrupts (exit %d):\n%s", code, out)
	}
	out, code = auractl(t, f.daemon, "interrupts", "farm", "-o", "json")
	var resp struct {
		Rules []struct {
			Name, Scope, Preempted string
			Fires, ChecksRun       string // uint64 is a string in protojson
			LastFire               struct{ Instance string }
		}
	}
	if err := json.Unmarshal([]byte(out), &resp); code != 0 || err != nil || len(resp.Rules) != 1 {
		t.Fatalf("auractl interrupts -o json (exit %d, %v):\n%s", code, err, out)
	}
	if r := resp.Rules[0]; r.Name != "farm/popup" || r.Fires != "1" || r.LastFire.Instance != "device:alpha" || r.Preempted != "resume" {
		t.Fatalf("json rule = %+v", r)
	}
	_, metrics := httpGet(t, adminAddr(t, f.daemon)+"/metrics")
	for _, want := range []string{`aura_interrupt_fires_total{rule="farm/popup"} 1`, `aura_interrupt_checks_total{rule="farm/popup"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// A scope that is no pool: refused with its line, and nothing changes.
	write("interrupts:\n  popup:\n    check: checks/popup\n    every: 100ms\n    scope: printer\n    handler: handlers/close\n    inputs: {file: popup}\n")
	_, err := f.client.Exec.ReloadPlans(ctx, &aurav1.ReloadPlansRequest{})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "interrupts.yaml:5:") || !strings.Contains(err.Error(), "printer") {
		t.Fatalf("ReloadPlans with a broken interrupts.yaml: %v; want FAILED_PRECONDITION naming interrupts.yaml:5", err)
	}
	if r := f.rule(t, ctx, "farm/popup"); r.Scope != "device" || r.Fires != 1 {
		t.Fatalf("after a refused reload: %v", r)
	}
	check, err := exec.Command(bin.aurad, "plan", "check", f.plans, "--resources", f.res).CombinedOutput()
	if err == nil || !strings.Contains(string(check), "interrupts.yaml:5:12: scope \"printer\"") {
		t.Fatalf("aurad plan check on the broken rule: %v\n%s", err, check)
	}
}

// The device-farm example's popup rule on the pretend phones: a popup on
// the phone a task holds is closed by the handler on that phone, and the
// task goes on with its next step and succeeds.
func TestInterruptDeviceFarmExampleClosesPopup(t *testing.T) {
	plans := t.TempDir()
	dir := filepath.Join(plans, "devicefarm")
	copyDir(t, "../examples/plans/devicefarm", dir)
	task := `meta:
  requires_initial_state: app_open
  resource_tags: ["device:R58M123"]
  timeout: 2m
steps:
  - id: hold
    action: exec
    params: {argv: [sh, -c, 'while [ ! -e release ]; do sleep 0.02; done']}
  - id: post
    action: file.write
    params: {path: "devices/{{ resources.device }}/messages.log", content: "after the popup\n", append: true}
`
	if err := os.WriteFile(filepath.Join(dir, "tasks", "hold_then_post.yaml"), []byte(task), 0o644); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	d := startDaemonIn(t, plans, data, "--resources", exampleResources)
	work := filepath.Join(data, "work", "devicefarm")
	ctx := ctxT(t, 90*time.Second)
	id := d.submit(ctx, &aurav1.SubmitRequest{Task: "devicefarm/hold_then_post"})
	waitFor(t, "the phone unlocked with the app open", 30*time.Second, func() bool {
		return slices.Equal(transitions(t, work, "R58M123"), []string{"unlock", "open_app"})
	})
	if err := os.WriteFile(filepath.Join(work, "devices", "R58M123", "popup"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	rule := func() *aurav1.InterruptRule {
		resp, err := aurav1.NewInterruptServiceClient(d.client.Conn()).ListInterrupts(ctx, &aurav1.ListInterruptsRequest{Plan: "devicefarm"})
		if err != nil || len(resp.Rules) != 1 {
			t.Fatalf("ListInterrupts: %v %v", resp, err)
		}
		return resp.Rules[0]
	}
	waitEvent(t, ctx, d, id, "interrupt.fired")
	releasePhones(t, work)
	got := d.wait(ctx, id)
	if got.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("task ended %s: %v", got.Status, got.Error)
	}
	if tr := transitions(t, work, "R58M123"); !slices.Equal(tr, []string{"unlock", "open_app", "close_popup"}) {
		t.Fatalf("R58M123 transitions.log: %q", tr)
	}
	if _, err := os.Stat(filepath.Join(work, "devices", "R58M123", "popup")); !os.IsNotExist(err) {
		t.Fatalf("the popup is still there: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(work, "devices", "R58M123", "messages.log")); string(b) != "after the popup\n" {
		t.Fatalf("messages.log = %q", b)
	}
	if r := rule(); r.LastFire.GetInstance() != "device:R58M123" || !slices.Equal(r.LastFire.GetTaskIds(), []string{id}) {
		t.Fatalf("last fire = %v", r.LastFire)
	}
}
