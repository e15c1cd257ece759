package e2e

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/aura-dev/aura/client"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// The device-farm tests run examples/plans/devicefarm on the three phones
// of examples/resources.yaml. Two tasks are added to the copy of the plan:
// they need the app open on a phone (any free one, or a given one) and then
// hold it until the test creates the file "release" in the plan's
// workspace, so a test decides when phones are busy instead of hoping a
// sleep is long enough.
const (
	exampleResources = "../examples/resources.yaml"
	holdAny          = `# Like post_message, holding the phone until the file release exists.
meta:
  requires_initial_state: app_open
  resource_tags: ["device:*"]
  timeout: 2m
steps:
  - id: hold
    action: exec
    params: {argv: [sh, -c, 'while [ ! -e release ]; do sleep 0.02; done']}
returns:
  device: "{{ resources.device }}"
`
	holdOn = `# The same on a given phone.
meta:
  requires_initial_state: app_open
  resource_tags: ["device:{{ inputs.serial }}"]
  timeout: 2m
inputs:
  - {name: serial, type: string, required: true}
steps:
  - id: hold
    action: exec
    params: {argv: [sh, -c, 'while [ ! -e release ]; do sleep 0.02; done']}
`
)

var phones = []string{"emulator-5554", "emulator-5556", "R58M123"}

// startDeviceFarm starts aurad on the device farm (data: "" for a new data
// directory) and returns it with the plan's workspace.
func startDeviceFarm(t *testing.T, data string, args ...string) (*daemon, string) {
	t.Helper()
	plans := t.TempDir()
	dir := filepath.Join(plans, "devicefarm")
	copyDir(t, "../examples/plans/devicefarm", dir)
	for name, body := range map[string]string{"hold.yaml": holdAny, "hold_on.yaml": holdOn} {
		if err := os.WriteFile(filepath.Join(dir, "tasks", name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if data == "" {
		data = t.TempDir()
	}
	d := startDaemonIn(t, plans, data, append([]string{"--resources", exampleResources}, args...)...)
	return d, filepath.Join(data, "work", "devicefarm")
}

func inputs(t *testing.T, kv map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(kv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func releasePhones(t *testing.T, work string) {
	t.Helper()
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// transitions reads what ran on a phone: its transitions.log.
func transitions(t *testing.T, work, serial string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(work, "devices", serial, "transitions.log"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// resources lists the daemon's resources by key.
func resources(t *testing.T, d *daemon) map[string]*aurav1.Resource {
	t.Helper()
	resp, err := d.client.Exec.ListResources(context.Background(), &aurav1.ListResourcesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*aurav1.Resource{}
	for _, r := range resp.Resources {
		out[r.Key] = r
	}
	return out
}

// lastState is the last known state ListResources shows for the phone
// in plan devicefarm, and whether it shows one.
func lastState(t *testing.T, d *daemon, serial string) (string, bool) {
	t.Helper()
	r := resources(t, d)["device:"+serial]
	if r == nil {
		t.Fatalf("ListResources has no device:%s", serial)
	}
	for _, s := range r.States {
		if s.Plan == "devicefarm" {
			return s.State, true
		}
	}
	return "", false
}

// Nine tasks that need the app open on any phone, three phones: every phone
// is used, no phone runs two tasks at once, each phone is unlocked and its
// app opened once (later tasks find it open and run no transitions), and
// every task succeeds.
func TestDeviceFarmNineTasksOnThreePhones(t *testing.T) {
	d, work := startDeviceFarm(t, "")
	ctx := ctxT(t, 2*time.Minute)
	ids := make([]string, 9)
	for i := range ids {
		ids[i] = d.submit(ctx, &aurav1.SubmitRequest{Task: "devicefarm/hold"})
	}
	// Three hold a phone each (all three phones) while six wait, holding
	// none: the phones are busy until the test says so.
	waitFor(t, "three tasks running on three phones", time.Minute, func() bool {
		held := map[string]bool{}
		for _, id := range ids {
			task, err := d.client.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if task.Status == aurav1.TaskStatus_TASK_STATUS_RUNNING {
				held[task.Resources["device"]] = true
			}
		}
		return len(held) == 3
	})
	releasePhones(t, work)

	byPhone := map[string][]*aurav1.Task{}
	for _, id := range ids {
		task := d.wait(ctx, id)
		if task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
			t.Fatalf("task %s ended %s: %v", id, task.Status, task.Error)
		}
		phone := task.Resources["device"]
		if got := task.Result.GetStructValue().AsMap()["device"]; got != phone {
			t.Fatalf("task %s bound to %q saw resources.device %v", id, phone, got)
		}
		byPhone[phone] = append(byPhone[phone], task)
	}
	if len(byPhone) != 3 {
		t.Fatalf("phones used: %v, want all three", slices.Collect(maps.Keys(byPhone)))
	}
	for _, phone := range phones {
		tasks := byPhone[phone]
		slices.SortFunc(tasks, func(a, b *aurav1.Task) int { return a.AdmittedAt.AsTime().Compare(b.AdmittedAt.AsTime()) })
		for i := 1; i < len(tasks); i++ {
			if tasks[i].AdmittedAt.AsTime().Before(tasks[i-1].FinishedAt.AsTime()) {
				t.Errorf("%s: task %s admitted before %s finished: two tasks on one phone at once", phone, tasks[i].Id, tasks[i-1].Id)
			}
		}
		if got := transitions(t, work, phone); !slices.Equal(got, []string{"unlock", "open_app"}) {
			t.Errorf("%s went through %v, want unlock and open_app once", phone, got)
		}
		for i, task := range tasks {
			kids := children(t, d, task.Id)
			want := 0
			if i == 0 {
				want = 2
			}
			if len(kids) != want {
				t.Errorf("%s: task %d of %d ran transitions %v, want %d", phone, i+1, len(tasks), taskNames(kids), want)
			}
			for _, k := range kids {
				if k.Resources["device"] != phone {
					t.Errorf("transition %s of a task on %s ran bound to %v", k.Task, phone, k.Resources)
				}
			}
		}
		if st, _ := lastState(t, d, phone); st != "app_open" {
			t.Errorf("%s: last known state %q, want app_open", phone, st)
		}
	}
}

// A lone task that needs the app open goes to the phone whose app is known
// to be open, not to the least recently used phone.
func TestDeviceFarmPrefersThePhoneAlreadyInTheState(t *testing.T) {
	d, work := startDeviceFarm(t, "")
	ctx := ctxT(t, time.Minute)
	releasePhones(t, work)
	plans, err := d.client.Exec.ListPlans(ctx, &aurav1.ListPlansRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(plans.Plans, func(p *aurav1.Plan) bool { return p.Name == "devicefarm" }); i < 0 || plans.Plans[i].StateMap.GetScope() != "device" {
		t.Fatalf("ListPlans does not say the devicefarm state is per device: %v", plans.Plans)
	}
	// emulator-5556's app is open; the other two were never used, so least
	// recently used alone would pick one of them.
	id := d.submit(ctx, &aurav1.SubmitRequest{Task: "devicefarm/post_message_on", Inputs: inputs(t, map[string]any{"serial": "emulator-5556"})})
	if task := d.wait(ctx, id); task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED || task.Resources["device"] != "emulator-5556" {
		t.Fatalf("pinned task: %s on %v (%v)", task.Status, task.Resources, task.Error)
	}
	id = d.submit(ctx, &aurav1.SubmitRequest{Task: "devicefarm/post_message"})
	task := d.wait(ctx, id)
	if task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED || task.Resources["device"] != "emulator-5556" {
		t.Fatalf("lone task: %s on %v (%v), want emulator-5556, whose app is open", task.Status, task.Resources, task.Error)
	}
	if kids := children(t, d, id); len(kids) != 0 {
		t.Fatalf("the task ran transitions %v on a phone already in app_open", taskNames(kids))
	}
}

// kill -9 while tasks hold phones: after the restart no phone is held by a
// task that is not running, the phones that were held are free and their
// state is unknown, and a state recorded before the crash is still known.
func TestDeviceFarmKill9WhileHoldingPhones(t *testing.T) {
	data := t.TempDir()
	d, work := startDeviceFarm(t, data)
	ctx := ctxT(t, 2*time.Minute)
	id := d.submit(ctx, &aurav1.SubmitRequest{Task: "devicefarm/post_message_on", Inputs: inputs(t, map[string]any{"serial": "R58M123"})})
	if task := d.wait(ctx, id); task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("post_message_on R58M123: %s (%v)", task.Status, task.Error)
	}
	var held []string
	for _, serial := range []string{"emulator-5554", "emulator-5556"} {
		held = append(held, d.submit(ctx, &aurav1.SubmitRequest{Task: "devicefarm/hold_on", Inputs: inputs(t, map[string]any{"serial": serial})}))
	}
	waitFor(t, "both holders running", time.Minute, func() bool {
		for _, id := range held {
			if task, _ := d.client.Get(ctx, id); task.GetStatus() != aurav1.TaskStatus_TASK_STATUS_RUNNING {
				return false
			}
		}
		return true
	})
	for i, serial := range []string{"emulator-5554", "emulator-5556"} {
		if r := resources(t, d)["device:"+serial]; !slices.Equal(r.GetHolders(), []string{held[i]}) {
			t.Fatalf("%s held by %v, want %s", serial, r.GetHolders(), held[i])
		}
	}
	d.kill()

	d2, _ := startDeviceFarm(t, data)
	for _, id := range held {
		task, err := d2.client.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if task.Status != aurav1.TaskStatus_TASK_STATUS_INTERRUPTED {
			t.Fatalf("task %s holding %v: %s after the restart, want INTERRUPTED", id, task.Resources, task.Status)
		}
	}
	for _, serial := range phones {
		if r := resources(t, d2)["device:"+serial]; len(r.GetHolders()) != 0 {
			t.Errorf("%s held by %v after the restart; nothing runs", serial, r.GetHolders())
		}
	}
	for serial, want := range map[string]string{"R58M123": "app_open", "emulator-5554": "", "emulator-5556": ""} {
		if got, ok := lastState(t, d2, serial); got != want || !ok {
			t.Errorf("%s: last known state %q (shown: %v) after the restart, want %q", serial, got, ok, want)
		}
	}
	out, code := auractl(t, d2, "resources")
	if code != 0 || !regexp.MustCompile(`device:R58M123\s.*devicefarm=app_open`).MatchString(out) ||
		!regexp.MustCompile(`device:emulator-5554\s.*devicefarm=unknown`).MatchString(out) {
		t.Errorf("auractl resources after the restart: exit %d\n%s", code, out)
	}
	// The phones are free: a task takes one at once and finds its state
	// by detection, whatever the last known state says.
	releasePhones(t, work)
	id = d2.submit(ctx, &aurav1.SubmitRequest{Task: "devicefarm/post_message_on", Inputs: inputs(t, map[string]any{"serial": "emulator-5554"})})
	if task := d2.wait(ctx, id); task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("a task on emulator-5554 after the restart: %s (%v)", task.Status, task.Error)
	}
}

// A caller whose token is limited to other plans does not see the
// device-farm plan's last known states (they name the plan); an
// unscoped one does.
func TestDeviceFarmScopedCallerSeesOnlyItsPlansStates(t *testing.T) {
	d, _ := startDeviceFarm(t, "", "--auth-tokens", writeTokens(t, ""))
	ctx := ctxT(t, time.Minute)
	ops := dialAs(t, d.addr, client.WithToken("ops"))
	resp, err := ops.Submit(ctx, &aurav1.SubmitRequest{Task: "devicefarm/post_message_on", Inputs: inputs(t, map[string]any{"serial": "R58M123"})})
	if err != nil {
		t.Fatal(err)
	}
	if task, err := ops.Wait(ctx, resp.TaskId); err != nil || task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("post_message_on: %v, %v", task.GetStatus(), err)
	}
	states := func(c *client.Client) []*aurav1.InstanceState {
		list, err := c.Exec.ListResources(ctx, &aurav1.ListResourcesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range list.Resources {
			if r.Key == "device:R58M123" {
				return r.States
			}
		}
		t.Fatalf("no device:R58M123 row in %v", list.Resources)
		return nil
	}
	if st := states(ops); len(st) != 1 || st[0].Plan != "devicefarm" || st[0].State != "app_open" {
		t.Fatalf("unscoped reader: states %v, want devicefarm=app_open", st)
	}
	if st := states(dialAs(t, d.addr, client.WithToken("demo-only"))); len(st) != 0 {
		t.Fatalf("a caller limited to plan demo sees states %v", st)
	}
}
