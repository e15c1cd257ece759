package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/aura-dev/aura/client"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// startPreemptFarm starts aurad over testdata/plans/preempt with a pool
// "device" of the given instances.
func startPreemptFarm(t *testing.T, data string, instances ...string) *daemon {
	t.Helper()
	path := filepath.Join(t.TempDir(), "resources.yaml")
	body := "resources:\n  device:\n    instances: [" + strings.Join(instances, ", ") + "]\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return startDaemon(t, daemonOpts{plans: []string{"testdata/plans/preempt"}, data: data, args: []string{"--resources", path}})
}

func submitTagged(t *testing.T, ctx context.Context, d *daemon, task, tag string, preempt bool) string {
	t.Helper()
	in, _ := structpb.NewStruct(map[string]any{"tag": tag})
	return d.submit(ctx, &aurav1.SubmitRequest{Task: task, Inputs: in, Preempt: preempt})
}

// touch creates the file a step of the preempt plan waits for.
func touch(t *testing.T, d *daemon, name string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(d.workspace("preempt"), name), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// runs is how many times a step of the preempt plan ran.
func runs(d *daemon, name string) int {
	b, _ := os.ReadFile(filepath.Join(d.workspace("preempt"), "runs-"+name))
	return strings.Count(string(b), "run")
}

func waitStatus(t *testing.T, ctx context.Context, d *daemon, id string, want aurav1.TaskStatus) {
	t.Helper()
	waitFor(t, "task "+id+" "+want.String(), 30*time.Second, func() bool {
		task, _ := d.client.Get(ctx, id)
		return task.GetStatus() == want
	})
}

func eventTypes(t *testing.T, ctx context.Context, d *daemon, id string) []string {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var out []string
	err := d.client.Watch(sctx, id, func(ev *aurav1.TaskEvent) error {
		out = append(out, ev.Type)
		return nil
	})
	if err != nil {
		t.Fatalf("Watch(%s): %v", id, err)
	}
	return out
}

// TestPreemptionTakesTheInstanceAndTheVictimResumes: a preempt task of
// higher priority takes the only device from a preemptible task, which
// pauses after its running step, then resumes at its next step once the
// preempting task is over; every step of it runs once.
func TestPreemptionTakesTheInstanceAndTheVictimResumes(t *testing.T) {
	d := startPreemptFarm(t, "", "phone1")
	ctx := ctxT(t, time.Minute)
	victim := submitTagged(t, ctx, d, "preempt/long_resume", "v", false)
	waitFor(t, "the victim's first step", 30*time.Second, func() bool { return runs(d, "v-1") == 1 })
	urgent := submitTagged(t, ctx, d, "preempt/urgent", "u", true)
	touch(t, d, "go-v-1")
	waitStatus(t, ctx, d, victim, aurav1.TaskStatus_TASK_STATUS_PAUSED)
	waitFor(t, "the preempting task's step", 30*time.Second, func() bool { return runs(d, "u") == 1 })
	if runs(d, "v-2") != 0 {
		t.Fatal("the victim's next step ran while it was paused")
	}
	touch(t, d, "go-u")
	u := d.wait(ctx, urgent)
	if u.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED || u.Result.GetStringValue() != "phone1" {
		t.Fatalf("preempting task %s, saw device %v: %v", u.Status, u.Result, u.Error)
	}
	touch(t, d, "go-v-2")
	touch(t, d, "go-v-3")
	v := d.wait(ctx, victim)
	if v.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED || v.Attempt != 1 {
		t.Fatalf("victim ended %s attempt %d: %v", v.Status, v.Attempt, v.Error)
	}
	for _, s := range []string{"v-1", "v-2", "v-3"} {
		if n := runs(d, s); n != 1 {
			t.Errorf("step %s ran %d times, want once", s, n)
		}
	}
	var got []string
	for _, e := range eventTypes(t, ctx, d, victim) {
		if e == "task.preempted" || e == "task.paused" || e == "task.resumed" {
			got = append(got, e)
		}
	}
	if strings.Join(got, " ") != "task.preempted task.paused task.resumed" {
		t.Errorf("victim's events %v", got)
	}
	// Hook subscribers see them too, with the victim's snapshot.
	var hooks []string
	from := uint64(0)
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	errDone := errors.New("seen")
	err := d.client.Subscribe(sctx, client.SubscribeOptions{Hooks: []string{"task.preempted", "task.paused", "task.resumed"}, After: &from},
		func(ev *aurav1.HookEvent) error {
			if ev.Task.GetId() == victim {
				hooks = append(hooks, ev.Hook)
			}
			if len(hooks) == 3 {
				return errDone
			}
			return nil
		})
	if !errors.Is(err, errDone) || strings.Join(hooks, " ") != "task.preempted task.paused task.resumed" {
		t.Errorf("hook events %v (%v)", hooks, err)
	}
}

// TestPreemptionRequeuesTheVictim: with `preempted: requeue` the victim
// gives the device back after the preempting task and runs again from its
// first step, as attempt 2.
func TestPreemptionRequeuesTheVictim(t *testing.T) {
	d := startPreemptFarm(t, "", "phone1")
	ctx := ctxT(t, time.Minute)
	victim := submitTagged(t, ctx, d, "preempt/long_requeue", "v", false)
	waitFor(t, "the victim's first step", 30*time.Second, func() bool { return runs(d, "v-1") == 1 })
	urgent := submitTagged(t, ctx, d, "preempt/urgent", "u", true)
	touch(t, d, "go-v-1")
	waitStatus(t, ctx, d, victim, aurav1.TaskStatus_TASK_STATUS_PAUSED)
	touch(t, d, "go-u")
	if u := d.wait(ctx, urgent); u.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("preempting task %s: %v", u.Status, u.Error)
	}
	touch(t, d, "go-v-2")
	touch(t, d, "go-v-3")
	v := d.wait(ctx, victim)
	if v.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED || v.Attempt != 2 || runs(d, "v-1") != 2 {
		t.Fatalf("victim ended %s attempt %d (first step ran %d times), want SUCCEEDED as attempt 2, from the first step",
			v.Status, v.Attempt, runs(d, "v-1"))
	}
}

// TestPreemptionNeverTakesFromATaskNotPreemptible: a preempt task waits
// for a device held by a task that is not preemptible, however high its
// priority.
func TestPreemptionNeverTakesFromATaskNotPreemptible(t *testing.T) {
	d := startPreemptFarm(t, "", "phone1")
	ctx := ctxT(t, time.Minute)
	holder := submitTagged(t, ctx, d, "preempt/long_pinned", "p", false)
	waitFor(t, "the holder's first step", 30*time.Second, func() bool { return runs(d, "p-1") == 1 })
	urgent := submitTagged(t, ctx, d, "preempt/urgent", "u", true)
	touch(t, d, "go-p-1")
	touch(t, d, "go-p-2")
	waitFor(t, "the holder's last step", 30*time.Second, func() bool { return runs(d, "p-3") == 1 })
	if task, _ := d.client.Get(ctx, urgent); task.GetStatus() != aurav1.TaskStatus_TASK_STATUS_QUEUED {
		t.Fatalf("the preempt task is %s while the holder runs, want QUEUED", task.GetStatus())
	}
	touch(t, d, "go-p-3")
	touch(t, d, "go-u")
	if h := d.wait(ctx, holder); h.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("holder ended %s", h.Status)
	}
	if u := d.wait(ctx, urgent); u.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("preempt task ended %s", u.Status)
	}
	for _, e := range eventTypes(t, ctx, d, holder) {
		if e == "task.preempted" || e == "task.paused" {
			t.Fatalf("the holder saw %s", e)
		}
	}
}

// TestKillWhilePausedEndsInterruptedOrRequeued: aurad dies (SIGKILL)
// while two tasks are paused by preemption; on restart the one with
// on_interrupt: fail is INTERRUPTED and the one with on_interrupt: requeue
// runs again as attempt 2; neither is left PAUSED.
func TestKillWhilePausedEndsInterruptedOrRequeued(t *testing.T) {
	d := startPreemptFarm(t, "", "phone1", "phone2")
	ctx := ctxT(t, 2*time.Minute)
	failing := submitTagged(t, ctx, d, "preempt/long_resume", "f", false)
	requeued := submitTagged(t, ctx, d, "preempt/long_requeue", "r", false)
	waitFor(t, "both first steps", 30*time.Second, func() bool { return runs(d, "f-1") == 1 && runs(d, "r-1") == 1 })
	urgent1 := submitTagged(t, ctx, d, "preempt/urgent", "u1", true)
	urgent2 := submitTagged(t, ctx, d, "preempt/urgent", "u2", true)
	touch(t, d, "go-f-1")
	touch(t, d, "go-r-1")
	waitStatus(t, ctx, d, failing, aurav1.TaskStatus_TASK_STATUS_PAUSED)
	waitStatus(t, ctx, d, requeued, aurav1.TaskStatus_TASK_STATUS_PAUSED)
	waitFor(t, "both preempting tasks at work", 30*time.Second, func() bool { return runs(d, "u1") == 1 && runs(d, "u2") == 1 })
	d.kill()

	d2 := startPreemptFarm(t, d.data, "phone1", "phone2")
	if task, _ := d2.client.Get(ctx, failing); task.GetStatus() != aurav1.TaskStatus_TASK_STATUS_INTERRUPTED {
		t.Fatalf("on_interrupt: fail task is %s after the restart, want INTERRUPTED", task.GetStatus())
	}
	for _, id := range []string{urgent1, urgent2} {
		if task, _ := d2.client.Get(ctx, id); task.GetStatus() != aurav1.TaskStatus_TASK_STATUS_INTERRUPTED {
			t.Errorf("preempting task %s is %s after the restart, want INTERRUPTED", id, task.GetStatus())
		}
	}
	waitFor(t, "the requeued task's second attempt", 30*time.Second, func() bool { return runs(d2, "r-1") == 2 })
	touch(t, d2, "go-r-2")
	touch(t, d2, "go-r-3")
	r := d2.wait(ctx, requeued)
	if r.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED || r.Attempt != 2 {
		t.Fatalf("requeued task ended %s attempt %d, want SUCCEEDED as attempt 2", r.Status, r.Attempt)
	}
	list, err := d2.client.Exec.ListTasks(ctx, &aurav1.ListTasksRequest{Status: aurav1.TaskStatus_TASK_STATUS_PAUSED})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Tasks) != 0 {
		t.Fatalf("%d tasks left PAUSED after the restart", len(list.Tasks))
	}
}
