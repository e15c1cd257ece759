package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// TestResourcesReloadOnSIGHUP: with a pool of one instance, a task asking
// for any device waits behind the holder; after a second instance is added
// to the resources file and SIGHUP is sent, the waiting task starts on it.
// A broken file on SIGHUP (and on ReloadPlans) leaves the pool as it was,
// and the log and the reload's answer name file:line.
func TestResourcesReloadOnSIGHUP(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resources.yaml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("resources:\n  device:\n    instances: [emulator-5554]\n")
	d := startDaemon(t, daemonOpts{plans: []string{"testdata/plans/pools"}, args: []string{"--resources", path}})
	ctx := ctxT(t, time.Minute)
	holder := d.submit(ctx, &aurav1.SubmitRequest{Task: "pools/hold"})
	waitRunning(t, ctx, d, holder)
	waiter := d.submit(ctx, &aurav1.SubmitRequest{Task: "pools/hold"})
	waitFor(t, "the second task to wait for the device", 10*time.Second, func() bool {
		resp, err := d.client.Exec.ListResources(ctx, &aurav1.ListResourcesRequest{})
		if err != nil {
			return false
		}
		for _, r := range resp.Resources {
			if r.Key == "device:*" {
				return r.Waiting == 1
			}
		}
		return false
	})

	write("resources:\n  device:\n    instances: [emulator-5554, emulator-5556]\n")
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitRunning(t, ctx, d, waiter)
	if task, err := d.client.Get(ctx, waiter); err != nil || task.Resources["device"] != "emulator-5556" {
		t.Fatalf("the waiting task runs with resources %v (%v), want the new emulator-5556", task.GetResources(), err)
	}

	// Line 3 lists an instance twice.
	write("resources:\n  device:\n    instances: [emulator-5554, emulator-5554]\n")
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	where := path + ":3"
	waitFor(t, "the failed resources reload in the log", 10*time.Second, func() bool {
		logs := d.logs()
		return strings.Contains(logs, "resources reload failed") && strings.Contains(logs, where)
	})
	if _, err := d.client.Exec.ReloadPlans(ctx, &aurav1.ReloadPlansRequest{}); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), where) {
		t.Fatalf("ReloadPlans with a broken resources file: %v, want FAILED_PRECONDITION naming %s", err, where)
	}
	resp, err := d.client.Exec.ListResources(ctx, &aurav1.ListResourcesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var instances []string
	for _, r := range resp.Resources {
		if r.Pool == "device" && r.Instance != "" {
			instances = append(instances, r.Instance)
		}
	}
	if strings.Join(instances, ",") != "emulator-5554,emulator-5556" {
		t.Fatalf("after a broken reload the pool lists %v, want both instances still", instances)
	}

	release(t, d)
	for _, id := range []string{holder, waiter} {
		if task := d.wait(ctx, id); task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
			t.Fatalf("%s ended %s: %v", id, task.Status, task.Error)
		}
	}
}
