package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

func TestPlanCheckReportsEveryProblemWithPosition(t *testing.T) {
	plans := t.TempDir()
	copyDir(t, "testdata/plans/broken", filepath.Join(plans, "broken"))
	out, err := exec.Command(bin.aurad, "plan", "check", plans).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("plan check on a broken plan: %v\n%s", err, out)
	}
	for _, want := range []string{"bad.yaml:3:", "soon", "no_such_action", "mesage", "bad.yaml:9:"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("plan check output lacks %q:\n%s", want, out)
		}
	}
	out, err = exec.Command(bin.aurad, "plan", "check", "../examples/plans", "--resources", "../examples/resources.yaml").CombinedOutput()
	if err != nil {
		t.Fatalf("the example plans do not check clean: %v\n%s", err, out)
	}
}

func TestServeRefusesBrokenPlansUnlessSkipped(t *testing.T) {
	plans := t.TempDir()
	copyDir(t, "testdata/plans/broken", filepath.Join(plans, "broken"))
	copyDir(t, "../examples/plans/demo", filepath.Join(plans, "demo"))
	out, err := exec.Command(bin.aurad, "serve", "--plans", plans, "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--cpu-workers", "-1").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "bad.yaml") || !strings.Contains(string(out), "--skip-broken-plans") {
		t.Fatalf("serve on broken plans: %v\n%s", err, out)
	}
	d := startDaemonIn(t, plans, t.TempDir(), "--skip-broken-plans")
	ctx := ctxT(t, time.Minute)
	resp, err := d.client.Exec.ListPlans(ctx, &aurav1.ListPlansRequest{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range resp.Plans {
		if p.Name == "broken" {
			found = true
			if p.Available || len(p.Errors) == 0 || !strings.Contains(strings.Join(p.Errors, "\n"), "no_such_action") {
				t.Fatalf("broken plan listed as %v", p)
			}
		}
	}
	if !found {
		t.Fatal("the broken plan is not listed")
	}
	_, err = d.client.Submit(ctx, &aurav1.SubmitRequest{Task: "broken/bad"})
	if status.Code(err) != codes.FailedPrecondition && status.Code(err) != codes.NotFound {
		t.Fatalf("submitting to a broken plan: %v", err)
	}
	if task := d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: "demo/hello"})); task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("a good plan beside a broken one: %s", task.Status)
	}
}

func TestReloadSwapsPlansAtomically(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	ctx := ctxT(t, time.Minute)
	// A running task keeps the definition it started with.
	running := d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/hold", Inputs: mustStruct(t, map[string]any{"ms": 1500})})
	waitFor(t, "the task to run", 20*time.Second, func() bool {
		task, _ := d.client.Get(ctx, running)
		return task.GetStatus() == aurav1.TaskStatus_TASK_STATUS_RUNNING
	})
	newTask := "steps:\n  - action: noop\nreturns: {version: 2}\n"
	if err := os.WriteFile(filepath.Join(d.plans, "e2e", "tasks", "fresh.yaml"), []byte(newTask), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.plans, "e2e", "tasks", "hold.yaml"), []byte("steps:\n  - action: fail\n    params: {message: new definition}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := auractl(t, d, "plans", "reload")
	if code != 0 || !strings.Contains(out, "e2e/fresh") {
		t.Fatalf("plans reload: exit %d\n%s", code, out)
	}
	if task := d.wait(ctx, running); task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("the running task changed definition mid-run: %s %v", task.Status, task.Error)
	}
	fresh := d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/fresh"}))
	if fresh.GetResult().GetStructValue().AsMap()["version"] != float64(2) {
		t.Fatalf("new task after reload: %v", fresh)
	}
	// A broken reload keeps the current plans.
	if err := os.WriteFile(filepath.Join(d.plans, "e2e", "tasks", "fresh.yaml"), []byte("steps: [{action: nope}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := d.client.Exec.ReloadPlans(ctx, &aurav1.ReloadPlansRequest{}); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "fresh.yaml") {
		t.Fatalf("broken reload: %v", err)
	}
	if task := d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/fresh"})); task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("after a failed reload the old plans should stay: %s %v", task.Status, task.Error)
	}
	// SIGHUP reloads too.
	if err := os.WriteFile(filepath.Join(d.plans, "e2e", "tasks", "fresh.yaml"), []byte(newTask+"meta: {title: via sighup}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "SIGHUP to reload the plans", 10*time.Second, func() bool {
		resp, err := d.client.Exec.ListPlans(ctx, &aurav1.ListPlansRequest{})
		if err != nil {
			return false
		}
		for _, p := range resp.Plans {
			for _, task := range p.Tasks {
				if task.Id == "e2e/fresh" && task.Title == "via sighup" {
					return true
				}
			}
		}
		return false
	})
}
