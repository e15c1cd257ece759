package e2e

import (
	"strings"
	"testing"
	"time"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// A check task that errors (a typo in its exec argv, a step that fails) is
// named with its own error when planning fails: in the task's error, in
// its events and in `auractl logs`, not only as "none of 2 states holds".
func TestCheckErrorsNamedWhenPlanningFails(t *testing.T) {
	d := startDaemon(t, daemonOpts{plans: []string{"testdata/plans/check_errors"}})
	ctx := ctxT(t, time.Minute)
	id := d.submit(ctx, &aurav1.SubmitRequest{Task: "check_errors/use"})
	task := d.wait(ctx, id)
	if task.Status != aurav1.TaskStatus_TASK_STATUS_PLANNING_FAILED {
		t.Fatalf("status %s (%v), want PLANNING_FAILED", task.Status, task.Error)
	}
	msg := task.Error.GetMessage()
	for _, want := range []string{
		"none of 2 states holds", "2 checks errored",
		`check "checks/locked" of state "locked"`, `"tset"`,
		`check "checks/unlocked" of state "unlocked"`, "the device did not answer",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("task error %q does not contain %q", msg, want)
		}
	}

	named := false
	err := d.client.Watch(ctx, id, func(ev *aurav1.TaskEvent) error {
		named = named || ev.Type == "task.transition" && strings.Contains(ev.Message, "tset")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !named {
		t.Errorf("no task.transition event names the failed check's error")
	}

	out, code := auractl(t, d, "logs", "--prefix", id)
	if code != 0 || !strings.Contains(out, "checks/locked stderr|") || !strings.Contains(out, "tset") ||
		!strings.Contains(out, "the device did not answer") {
		t.Fatalf("auractl logs: exit %d\n%s", code, out)
	}
}
