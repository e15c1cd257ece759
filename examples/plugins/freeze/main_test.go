package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/aura-dev/aura/client"
	"github.com/aura-dev/aura/internal/testbin"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDecide(t *testing.T) {
	exempt := &aurav1.Task{Labels: map[string]string{"freeze-exempt": "true"}}
	for _, tc := range []struct {
		name   string
		task   *aurav1.Task
		frozen bool
		allow  bool
	}{
		{"no freeze", &aurav1.Task{}, false, true},
		{"freeze", &aurav1.Task{}, true, false},
		{"freeze, exempt", exempt, true, true},
		{"freeze, exempt label not true", &aurav1.Task{Labels: map[string]string{"freeze-exempt": "yes"}}, true, false},
	} {
		allow, reason := decide(tc.task, tc.frozen)
		if allow != tc.allow || (allow != (reason == "")) {
			t.Errorf("%s: decide = %v, %q; want allow=%v with a reason only when denying", tc.name, allow, reason, tc.allow)
		}
	}
}

var listenRE = regexp.MustCompile(`msg="aurad serving" listen=(\S+)`)

// startAurad builds and starts a real daemon serving the demo plan.
func startAurad(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin, err := testbin.Build(dir, "../../../cmd/aurad")
	if err != nil {
		t.Fatal(err)
	}
	plans := filepath.Join(dir, "plans")
	if err := os.CopyFS(filepath.Join(plans, "demo"), os.DirFS("../../plans/demo")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--plans", plans, "--data", filepath.Join(dir, "data"),
		"--listen", "127.0.0.1:0", "--cpu-workers", "-1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	})
	select {
	case a := <-addr:
		return a
	case <-time.After(60 * time.Second):
		t.Fatal("aurad did not start serving within 60s")
		return ""
	}
}

func TestFreezeAgainstARealDaemon(t *testing.T) {
	addr := startAurad(t)
	freezeFile := filepath.Join(t.TempDir(), "freeze")
	var audit testbin.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, config{addr: addr, freezeFile: freezeFile, timeout: 5 * time.Second}, &audit, slog.New(slog.DiscardHandler))
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run returned %v after its context ended, want nil", err)
		}
	}()

	c, err := client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tctx, tcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer tcancel()
	// Wait for the plugin to register, and for its audit subscription.
	for {
		st, err := c.Exec.GetStats(tctx, &aurav1.GetStatsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if st.Interceptors == 1 && st.HookSubscribers >= 1 {
			break
		}
		select {
		case <-tctx.Done():
			t.Fatal("the plugin did not register with aurad")
		case <-time.After(20 * time.Millisecond):
		}
	}
	submit := func(labels map[string]string) *aurav1.Task {
		t.Helper()
		resp, err := c.Submit(tctx, &aurav1.SubmitRequest{Task: "demo/hello", Labels: labels, Timeout: durationpb.New(30 * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		task, err := c.Wait(tctx, resp.TaskId)
		if err != nil {
			t.Fatal(err)
		}
		return task
	}

	if task := submit(nil); task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("without a freeze: %s %v", task.Status, task.Error)
	}
	if err := os.WriteFile(freezeFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	denied := submit(nil)
	if denied.Status != aurav1.TaskStatus_TASK_STATUS_FAILED || denied.GetError().GetKind() != "denied" ||
		!strings.Contains(denied.GetError().GetMessage(), "change freeze") {
		t.Fatalf("during a freeze: %s %v, want FAILED, kind denied", denied.Status, denied.Error)
	}
	if task := submit(map[string]string{"freeze-exempt": "true"}); task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("exempt task during a freeze: %s %v", task.Status, task.Error)
	}

	// The audit log has a line for each of the three tasks.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var recs []auditRecord
		for _, l := range strings.Split(strings.TrimSpace(audit.String()), "\n") {
			var r auditRecord
			if json.Unmarshal([]byte(l), &r) == nil {
				recs = append(recs, r)
			}
		}
		found := false
		for _, r := range recs {
			if r.TaskID == denied.Id && r.ErrorKind == "denied" && r.Status == "TASK_STATUS_FAILED" {
				found = true
			}
		}
		if len(recs) == 3 && found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit log, want 3 records including the denied task %s:\n%s", denied.Id, audit.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
