package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// Twenty tasks queue on device:1 while twenty others use free resources:
// with a global limit of 4 the free ones run in the three other slots and
// all finish while most of the device queue is still waiting.
func TestFreeResourcesDoNotQueueBehindABusyDevice(t *testing.T) {
	d := startDaemon(t, daemonOpts{args: []string{"--max-concurrent", "4"}})
	ctx := ctxT(t, 2*time.Minute)
	var device, free []string
	for i := range 20 {
		device = append(device, d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/hold", ResourceTags: []string{"device:emulator-5554:1"},
			Inputs: mustStruct(t, map[string]any{"ms": 150})}))
		_ = i
	}
	for i := range 20 {
		free = append(free, d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/hold", ResourceTags: []string{fmt.Sprintf("phone-%d", i)},
			Inputs: mustStruct(t, map[string]any{"ms": 150})}))
	}
	stats, err := d.client.Exec.GetStats(ctx, &aurav1.GetStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var dev *aurav1.ResourceStats
	for _, r := range stats.Resources {
		if r.Key == "device:emulator-5554" {
			dev = r
		}
	}
	if dev == nil || dev.Limit != 1 || dev.InUse > 1 || stats.Global.Limit != 4 || stats.Global.InUse > 4 {
		t.Fatalf("stats: global %v device %v", stats.Global, dev)
	}
	var lastFree time.Time
	for _, id := range free {
		task := d.wait(ctx, id)
		if task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
			t.Fatalf("free task %s: %s", id, task.Status)
		}
		if f := task.FinishedAt.AsTime(); f.After(lastFree) {
			lastFree = f
		}
	}
	var starts []time.Time
	for _, id := range device {
		task := d.wait(ctx, id)
		if task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
			t.Fatalf("device task %s: %s", id, task.Status)
		}
		starts = append(starts, task.StartedAt.AsTime())
	}
	sort.Slice(starts, func(i, j int) bool { return starts[i].Before(starts[j]) })
	// The device runs one task at a time, so its tasks start one after another.
	for i := 1; i < len(starts); i++ {
		if !starts[i].After(starts[i-1]) {
			t.Fatalf("two device tasks started together at %v", starts[i])
		}
	}
	// Every free task was done while most of the device queue still
	// waited (behind the device they would finish after all 20 started).
	if !lastFree.Before(starts[15]) {
		t.Fatalf("free tasks finished at %v, after the 16th device task started at %v: they queued behind the device", lastFree, starts[15])
	}
}

func TestPriorityOrdersWaitingTasks(t *testing.T) {
	d := startDaemon(t, daemonOpts{args: []string{"--max-concurrent", "1"}})
	ctx := ctxT(t, time.Minute)
	blocker := d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/hold", Inputs: mustStruct(t, map[string]any{"ms": 500})})
	low := d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick", Priority: 1})
	high := d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick", Priority: 9})
	d.wait(ctx, blocker)
	l, h := d.wait(ctx, low), d.wait(ctx, high)
	if !h.StartedAt.AsTime().Before(l.StartedAt.AsTime()) {
		t.Fatalf("priority 9 started at %v, not before priority 1 at %v", h.StartedAt.AsTime(), l.StartedAt.AsTime())
	}
}

func TestPlanningWalksTheStateGraph(t *testing.T) {
	d := startDaemon(t, daemonOpts{plans: []string{"../examples/plans/stateful"}})
	ctx := ctxT(t, 2*time.Minute)
	id := d.submit(ctx, &aurav1.SubmitRequest{Task: "stateful/play", Inputs: mustStruct(t, map[string]any{"rounds": 2})})
	var types []string
	var transitions []string
	err := d.client.Watch(ctx, id, func(ev *aurav1.TaskEvent) error {
		types = append(types, ev.Type)
		if ev.Type == "task.transition" {
			transitions = append(transitions, ev.Message)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	task, _ := d.client.Get(ctx, id)
	if task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("play ended %s: %v\nevents %v", task.Status, task.Error, types)
	}
	if !slices.Contains(types, "task.planning") || !slices.Contains(types, "task.transition") {
		t.Fatalf("no planning events: %v", types)
	}
	// The transitions ran as recorded child tasks, in path order.
	kids := children(t, d, id)
	if got := taskNames(kids); !slices.Equal(got, []string{"stateful/login", "stateful/enter_lobby"}) {
		t.Fatalf("transition tasks %v, want login then enter_lobby", got)
	}
	for _, k := range kids {
		if k.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED || k.ParentId != id {
			t.Fatalf("child %s: %s parent %q", k.Task, k.Status, k.ParentId)
		}
	}
	for _, marker := range []string{"state/logged_in", "state/in_lobby"} {
		if _, err := os.Stat(filepath.Join(d.data, "work", "stateful", marker)); err != nil {
			t.Fatalf("transition did not leave %s: %v", marker, err)
		}
	}
	// Already in the lobby: the next play runs no transitions.
	id2 := d.submit(ctx, &aurav1.SubmitRequest{Task: "stateful/play"})
	if task := d.wait(ctx, id2); task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("second play: %s %v", task.Status, task.Error)
	}
	if kids := children(t, d, id2); len(kids) != 0 {
		t.Fatalf("second play ran transitions %v although the state already held", taskNames(kids))
	}
}

func TestBrokenTransitionEndsPlanningFailed(t *testing.T) {
	d := startDaemon(t, daemonOpts{plans: []string{"testdata/plans/broken_states"}})
	ctx := ctxT(t, time.Minute)
	id := d.submit(ctx, &aurav1.SubmitRequest{Task: "broken_states/needs_goal"})
	task := d.wait(ctx, id)
	if task.Status != aurav1.TaskStatus_TASK_STATUS_PLANNING_FAILED || task.Error.GetKind() != "planning_failed" {
		t.Fatalf("status %s error %v, want PLANNING_FAILED", task.Status, task.Error)
	}
	msg := task.Error.GetMessage()
	if !strings.Contains(msg, "goal") || !strings.Contains(msg, "start") || !strings.Contains(msg, "the door is stuck") {
		t.Fatalf("error %q does not say where planning got stuck", msg)
	}
	// max_replans is 2: the first try and two replans, each a recorded task.
	kids := children(t, d, id)
	if len(kids) != 3 {
		t.Fatalf("ran the broken transition %d times, want 3 (1 + max_replans 2): %v", len(kids), taskNames(kids))
	}
	for _, k := range kids {
		if k.Status != aurav1.TaskStatus_TASK_STATUS_FAILED || k.Error.GetStep() != "try" {
			t.Fatalf("child %v", k)
		}
	}
	if task.StartedAt != nil {
		t.Errorf("the task's own steps started although planning failed")
	}
}

func TestPlanningCountsAgainstTheTimeout(t *testing.T) {
	d := startDaemon(t, daemonOpts{plans: []string{"testdata/plans/broken_states"}})
	ctx := ctxT(t, time.Minute)
	// Replanning alone would take 20ms+; a 1ms budget ends it as a timeout.
	id := d.submit(ctx, &aurav1.SubmitRequest{Task: "broken_states/needs_goal", Timeout: durationpb.New(time.Millisecond)})
	if task := d.wait(ctx, id); task.Status != aurav1.TaskStatus_TASK_STATUS_TIMED_OUT {
		t.Fatalf("status %s (%v), want TIMED_OUT: planning is inside the task's timeout", task.Status, task.Error)
	}
}

// children lists the transition tasks recorded for parent, oldest first.
func children(t *testing.T, d *daemon, parent string) []*aurav1.Task {
	t.Helper()
	resp, err := d.client.Exec.ListTasks(context.Background(), &aurav1.ListTasksRequest{LabelSelector: "aura.parent=" + parent, PageSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	out := slices.Clone(resp.Tasks)
	slices.Reverse(out)
	return out
}

func taskNames(ts []*aurav1.Task) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Task)
	}
	return out
}
