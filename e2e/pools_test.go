package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/aura-dev/aura/client"
	"github.com/aura-dev/aura/internal/auth"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

var farmInstances = []string{"emulator-5554", "emulator-5556", "R58M123"}

// startFarm starts aurad with the pools test plan and a pool "device" of
// three instances declared in a resources file.
func startFarm(t *testing.T, data string) *daemon {
	t.Helper()
	return startDaemon(t, daemonOpts{plans: []string{"testdata/plans/pools"}, data: data, args: []string{"--resources", farmResources(t)}})
}

func farmResources(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "resources.yaml")
	body := "resources:\n  device:\n    instances: [" + strings.Join(farmInstances, ", ") + "]\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (d *daemon) workspace(plan string) string { return filepath.Join(d.data, "work", plan) }

// TestPoolsSpreadTasksOverInstances: nine tasks asking for any device on
// three instances all succeed, every instance is used, no two tasks are
// on one instance at once (the step's marker file would clash), and each
// task's Task.resources is the instance its step saw.
func TestPoolsSpreadTasksOverInstances(t *testing.T) {
	d := startFarm(t, "")
	ctx := ctxT(t, time.Minute)
	var ids []string
	for range 9 {
		ids = append(ids, d.submit(ctx, &aurav1.SubmitRequest{Task: "pools/use"}))
	}
	used := map[string]int{}
	for _, id := range ids {
		task := d.wait(ctx, id)
		if task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
			t.Fatalf("%s ended %s: %v", id, task.Status, task.Error)
		}
		dev := task.Resources["device"]
		if got := task.Result.GetStringValue(); got != dev || !slices.Contains(farmInstances, dev) {
			t.Fatalf("%s: Task.resources %v, its step saw %q", id, task.Resources, got)
		}
		used[dev]++
	}
	if len(used) != len(farmInstances) {
		t.Fatalf("instances used %v, want all of %v", used, farmInstances)
	}
	log, err := os.ReadFile(filepath.Join(d.workspace("pools"), "uses.log"))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(strings.Fields(string(log))); n != 9 {
		t.Fatalf("uses.log has %d entries, want 9:\n%s", n, log)
	}
}

// TestPoolsPinnedAndUnknown: a tag rendered from an input pins that
// instance; an unknown instance or pool is INVALID_ARGUMENT naming the tag
// and creates nothing.
func TestPoolsPinnedAndUnknown(t *testing.T) {
	d := startFarm(t, "")
	ctx := ctxT(t, time.Minute)
	serial := func(s string) *structpb.Struct {
		in, _ := structpb.NewStruct(map[string]any{"serial": s})
		return in
	}
	task := d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: "pools/pinned", Inputs: serial("emulator-5556")}))
	if task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED || task.Result.GetStringValue() != "emulator-5556" ||
		task.Resources["device"] != "emulator-5556" {
		t.Fatalf("pinned task: %s, ran on %q, resources %v", task.Status, task.Result.GetStringValue(), task.Resources)
	}
	before, err := d.client.Exec.ListTasks(ctx, &aurav1.ListTasksRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		req  *aurav1.SubmitRequest
		want string
	}{
		{&aurav1.SubmitRequest{Task: "pools/pinned", Inputs: serial("emulator-9999")}, `"device:emulator-9999"`},
		{&aurav1.SubmitRequest{Task: "pools/pinned", Inputs: serial("R58M123"), ResourceTags: []string{"phone:*"}}, `"phone:*"`},
	} {
		_, err := d.client.Submit(ctx, c.req)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("submit %v: %v, want INVALID_ARGUMENT naming %s", c.req.ResourceTags, err, c.want)
		}
	}
	after, err := d.client.Exec.ListTasks(ctx, &aurav1.ListTasksRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Tasks) != len(before.Tasks) {
		t.Fatalf("refused submissions created tasks: %d before, %d after", len(before.Tasks), len(after.Tasks))
	}
}

// holdersOf returns the holders ListResources reports per key.
func holdersOf(t *testing.T, ctx context.Context, d *daemon) map[string][]string {
	t.Helper()
	resp, err := d.client.Exec.ListResources(ctx, &aurav1.ListResourcesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, r := range resp.Resources {
		out[r.Key] = r.Holders
	}
	return out
}

func waitRunning(t *testing.T, ctx context.Context, d *daemon, ids ...string) {
	t.Helper()
	waitFor(t, "tasks to run", 30*time.Second, func() bool {
		for _, id := range ids {
			if task, _ := d.client.Get(ctx, id); task.GetStatus() != aurav1.TaskStatus_TASK_STATUS_RUNNING {
				return false
			}
		}
		return true
	})
}

// TestPoolsListResourcesShowsHolders: while a task runs on an instance,
// ListResources and `auractl resources` name it as the holder, and a task
// waiting for any instance as a waiter of the pool.
func TestPoolsListResourcesShowsHolders(t *testing.T) {
	d := startDaemon(t, daemonOpts{plans: []string{"testdata/plans/pools"},
		args: []string{"--resources", farmResources(t), "--admin-listen", "127.0.0.1:0"}})
	ctx := ctxT(t, time.Minute)
	var held []string
	for range 3 {
		held = append(held, d.submit(ctx, &aurav1.SubmitRequest{Task: "pools/hold"}))
	}
	waitRunning(t, ctx, d, held...)
	waiting := d.submit(ctx, &aurav1.SubmitRequest{Task: "pools/hold"})
	resp, err := d.client.Exec.ListResources(ctx, &aurav1.ListResourcesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resp.Resources {
		switch {
		case r.Key == "device:*":
			if r.Limit != 3 || r.InUse != 3 || r.Waiting != 1 || !slices.Equal(r.Waiters, []string{waiting}) {
				t.Fatalf("pool row %v, want 3 of 3 in use and %s waiting", r, waiting)
			}
		case r.Pool == "device":
			task, err := d.client.Get(ctx, r.Holders[0])
			if err != nil || len(r.Holders) != 1 || task.Resources["device"] != r.Instance {
				t.Fatalf("instance row %v: want one holder bound to %s (%v, %v)", r, r.Instance, task.GetResources(), err)
			}
		}
	}
	out, code := auractl(t, d, "resources", "-o", "json")
	if code != 0 {
		t.Fatalf("auractl resources: exit %d\n%s", code, out)
	}
	var listed struct {
		Resources []struct {
			Key     string   `json:"key"`
			Holders []string `json:"holders"`
		} `json:"resources"`
	}
	if err := json.Unmarshal([]byte(out), &listed); err != nil {
		t.Fatalf("auractl resources -o json: %v\n%s", err, out)
	}
	var shown []string
	for _, r := range listed.Resources {
		if r.Key != "device:*" {
			shown = append(shown, r.Holders...)
		}
	}
	slices.Sort(shown)
	slices.Sort(held)
	if !slices.Equal(shown, held) {
		t.Fatalf("auractl resources shows holders %v, want %v", shown, held)
	}
	table, _ := auractl(t, d, "resources")
	if !strings.Contains(table, "device:emulator-5554") || !strings.Contains(table, waiting) {
		t.Fatalf("auractl resources table lacks an instance or the waiter:\n%s", table)
	}
	// The metrics: one series per declared instance, each held once.
	_, metrics := httpGet(t, adminAddr(t, d)+"/metrics")
	for _, inst := range farmInstances {
		labels := `instance="` + inst + `",pool="device",what="held"`
		if v, ok := metricValue(metrics, "aura_resource_instance", labels); !ok || v != 1 {
			t.Fatalf("aura_resource_instance{%s} = %v (found %v), want 1", labels, v, ok)
		}
	}
	release(t, d)
	for _, id := range append(held, waiting) {
		if task := d.wait(ctx, id); task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
			t.Fatalf("%s ended %s: %v", id, task.Status, task.Error)
		}
	}
	for key, hs := range holdersOf(t, ctx, d) {
		if len(hs) != 0 {
			t.Fatalf("%s still held by %v after every task ended", key, hs)
		}
	}
}

// release lets every pools/hold task end.
func release(t *testing.T, d *daemon) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(d.workspace("pools"), "release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPoolsRecoveryAfterKill: after SIGKILL while every instance is held,
// the restarted daemon holds no instance for a task that is not running:
// the interrupted tasks hold nothing, and the one that was waiting gets an
// instance.
func TestPoolsRecoveryAfterKill(t *testing.T) {
	d := startFarm(t, "")
	ctx := ctxT(t, time.Minute)
	var held []string
	for range 3 {
		held = append(held, d.submit(ctx, &aurav1.SubmitRequest{Task: "pools/hold"}))
	}
	waitRunning(t, ctx, d, held...)
	queued := d.submit(ctx, &aurav1.SubmitRequest{Task: "pools/hold"})
	d.kill()

	d2 := startDaemonIn(t, d.plans, d.data, "--resources", farmResources(t))
	for _, id := range held {
		if task := d2.wait(ctx, id); task.Status != aurav1.TaskStatus_TASK_STATUS_INTERRUPTED {
			t.Fatalf("%s after the crash: %s, want INTERRUPTED", id, task.Status)
		}
	}
	waitRunning(t, ctx, d2, queued)
	holders := holdersOf(t, ctx, d2)
	var all []string
	for key, hs := range holders {
		if key != "device:*" {
			all = append(all, hs...)
		}
	}
	if !slices.Equal(all, []string{queued}) {
		t.Fatalf("holders after restart %v, want only the running %s", holders, queued)
	}
	release(t, d2)
	if task := d2.wait(ctx, queued); task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("%s ended %s: %v", queued, task.Status, task.Error)
	}
}

// TestPoolsScopedCallerSeesNoTaskIDs: a caller whose token is limited to
// some plans gets ListResources' counts but not the ids of the tasks
// holding an instance (they may be other plans' tasks); an unscoped
// reader gets them.
func TestPoolsScopedCallerSeesNoTaskIDs(t *testing.T) {
	tokens := writeTokens(t, "  - {name: demo-reader, sha256: "+auth.HashToken("tok-demo-reader")+", roles: [read], plans: [demo]}\n")
	d := startDaemon(t, daemonOpts{plans: []string{"testdata/plans/pools"},
		args: []string{"--resources", farmResources(t), "--auth-tokens", tokens}})
	ctx := ctxT(t, time.Minute)
	ops := dialAs(t, d.addr, client.WithToken("ops"))
	resp, err := ops.Submit(ctx, &aurav1.SubmitRequest{Task: "pools/hold"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the task to run", 30*time.Second, func() bool {
		task, _ := ops.Get(ctx, resp.TaskId)
		return task.GetStatus() == aurav1.TaskStatus_TASK_STATUS_RUNNING
	})
	pool := func(c *client.Client) *aurav1.Resource {
		list, err := c.Exec.ListResources(ctx, &aurav1.ListResourcesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range list.Resources {
			if r.Key == "device:*" {
				return r
			}
		}
		t.Fatalf("no device:* row in %v", list.Resources)
		return nil
	}
	if r := pool(ops); !slices.Equal(r.Holders, []string{resp.TaskId}) {
		t.Fatalf("unscoped reader: holders %v, want [%s]", r.Holders, resp.TaskId)
	}
	if r := pool(dialAs(t, d.addr, client.WithToken("tok-demo-reader"))); r.InUse != 1 || len(r.Holders) != 0 {
		t.Fatalf("scoped reader: %v, want in use 1 and no task ids", r)
	}
	release(t, d)
	if task, err := ops.Wait(ctx, resp.TaskId); err != nil || task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("hold task: %v, %v", task.GetStatus(), err)
	}
}
