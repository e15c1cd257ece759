package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// limitsPlans are the plans the limits tests run against.
var limitsPlans = []string{"testdata/plans/limits", "testdata/plans/e2e"}

// TestLimitsRunTaskDoesNotStarveTheIOPool: more parents than io workers, each
// waiting on a child task, must all finish; a parent waiting on its child
// holds no io worker, so the children (and other plans' tasks) get one.
func TestLimitsRunTaskDoesNotStarveTheIOPool(t *testing.T) {
	d := startDaemon(t, daemonOpts{plans: limitsPlans, args: []string{"--io-workers", "2"}})
	ctx := ctxT(t, 2*time.Minute)
	const parents = 6
	ids := make([]string, parents)
	for i := range ids {
		ids[i] = d.submit(ctx, &aurav1.SubmitRequest{Task: "limits/parent"})
	}
	// Another plan's task, submitted while the parents wait on their children.
	other := d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"})
	var wg sync.WaitGroup
	for _, id := range append(ids, other) {
		wg.Go(func() {
			task, err := d.client.Wait(ctx, id)
			if err != nil {
				t.Errorf("Wait(%s): %v", id, err)
				return
			}
			if task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
				t.Errorf("%s (%s) ended %s: %v", id, task.Task, task.Status, task.GetError())
			}
		})
	}
	wg.Wait()
}

// TestLimitsSelfRecursiveRunTaskHitsTheDepthLimit: a task that runs itself
// fails at the nesting limit, promptly, instead of hanging until its timeout.
func TestLimitsSelfRecursiveRunTaskHitsTheDepthLimit(t *testing.T) {
	d := startDaemon(t, daemonOpts{plans: limitsPlans, args: []string{"--io-workers", "2"}})
	ctx := ctxT(t, 2*time.Minute)
	id := d.submit(ctx, &aurav1.SubmitRequest{Task: "limits/forever", Timeout: durationpb.New(time.Minute)})
	task := d.wait(ctx, id)
	if task.Status != aurav1.TaskStatus_TASK_STATUS_FAILED {
		t.Fatalf("self-recursive run_task ended %s (%v), want FAILED at the nesting limit", task.Status, task.GetError())
	}
	if msg := task.GetError().GetMessage(); !strings.Contains(msg, "nesting deeper than 8") {
		t.Errorf("error = %q, want it to name the nesting limit (8)", msg)
	}
	// The pool is free again: a plain task still runs.
	if st := d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"})).Status; st != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Errorf("e2e/quick after the recursion ended %s", st)
	}
}

// TestLimitsHTTPRedirectToAdminIsRefused: a plan allowed to reach one local
// server cannot be redirected by it to aurad's own admin listener, and cannot
// name that listener directly either; the allowed server still answers.
func TestLimitsHTTPRedirectToAdminIsRefused(t *testing.T) {
	d := startDaemon(t, daemonOpts{plans: limitsPlans, args: []string{"--admin-listen", "127.0.0.1:0"}})
	admin := adminAddr(t, d)
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.2: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hop" {
			http.Redirect(w, r, admin+"/metrics", http.StatusFound)
			return
		}
		io.WriteString(w, "hello from the allowed server")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	base := "http://" + ln.Addr().String()
	ctx := ctxT(t, time.Minute)

	fetch := func(url string) *aurav1.Task {
		inputs, _ := structpb.NewStruct(map[string]any{"url": url})
		return d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: "limits/fetch", Inputs: inputs}))
	}
	if task := fetch(base + "/"); task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("fetching the allowed server ended %s: %v", task.Status, task.GetError())
	}
	for _, url := range []string{base + "/hop", admin + "/metrics"} {
		task := fetch(url)
		if task.Status != aurav1.TaskStatus_TASK_STATUS_FAILED {
			t.Errorf("fetch %s ended %s with result %v, want FAILED", url, task.Status, task.GetResult())
			continue
		}
		msg := task.GetError().GetMessage()
		if !strings.Contains(msg, "loopback") || !strings.Contains(msg, "allow_hosts") {
			t.Errorf("fetch %s: error %q does not say loopback is refused and how to allow it", url, msg)
		}
	}
}

// TestLimitsLoopCountIsBounded: a loop count from an input above
// --max-loop-iterations fails its step at once, naming the step and the
// limit, instead of building a million iterations in aurad's memory.
func TestLimitsLoopCountIsBounded(t *testing.T) {
	d := startDaemon(t, daemonOpts{plans: limitsPlans, args: []string{"--max-loop-iterations", "100"}})
	ctx := ctxT(t, time.Minute)
	loop := func(times int) *aurav1.Task {
		inputs, _ := structpb.NewStruct(map[string]any{"times": times})
		return d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: "limits/loop", Inputs: inputs}))
	}
	task := loop(1_000_000)
	if task.Status != aurav1.TaskStatus_TASK_STATUS_FAILED {
		t.Fatalf("a loop of 1,000,000 with a limit of 100 ended %s", task.Status)
	}
	msg := task.GetError().GetMessage()
	if task.GetError().GetStep() != "spin" || !strings.Contains(msg, "limit of 100 iterations") || !strings.Contains(msg, "--max-loop-iterations") {
		t.Errorf("error %q (step %q) should name step spin, the limit and its flag", msg, task.GetError().GetStep())
	}
	if task := loop(100); task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Errorf("a loop of 100 with a limit of 100 ended %s: %v", task.Status, task.GetError())
	}
}

// TestLimitsLoopCountIsCheckedAtLoad: a loop count written in a task file
// above the limit is a plan problem with file:line, before anything runs.
func TestLimitsLoopCountIsCheckedAtLoad(t *testing.T) {
	plans := t.TempDir()
	copyDir(t, "testdata/plans/limits", filepath.Join(plans, "limits"))
	big := "steps:\n  - action: noop\n    loop: {times: 1000000}\n"
	if err := os.WriteFile(filepath.Join(plans, "limits", "tasks", "big.yaml"), []byte(big), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin.aurad, "plan", "check", plans).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "big.yaml:3:") || !strings.Contains(string(out), "limit of 10000 iterations") {
		t.Errorf("plan check: err %v, output:\n%s\nwant big.yaml:3 over the limit of 10000", err, out)
	}
}

// TestLimitsHTTPJSONResponseIsBounded: a JSON response that would decode to
// more values than --http-max-json-values fails the step naming the limit
// (scaled down: 1 MiB of small objects against the default limit; make
// stress sends 10 MiB and reports aurad's RSS).
func TestLimitsHTTPJSONResponseIsBounded(t *testing.T) {
	url := jsonServer(t, 1<<20)
	d := startDaemon(t, daemonOpts{plans: limitsPlans})
	ctx := ctxT(t, time.Minute)
	inputs, _ := structpb.NewStruct(map[string]any{"url": url})
	task := d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: "limits/fetch", Inputs: inputs}))
	if task.Status != aurav1.TaskStatus_TASK_STATUS_FAILED {
		t.Fatalf("a 1 MiB JSON response of ~180,000 values ended %s, want FAILED at the 100,000-value limit", task.Status)
	}
	if msg := task.GetError().GetMessage(); !strings.Contains(msg, "more than 100000 values") || !strings.Contains(msg, "--http-max-json-values") {
		t.Errorf("error %q should name the limit and its flag", msg)
	}
}

// TestLimitsDeeplyNestedInputsAreInvalid: inputs nested thousands deep (past
// what protobuf itself decodes) are INVALID_ARGUMENT naming the field and
// the limit, like inputs just past the limit, and the daemon keeps serving.
func TestLimitsDeeplyNestedInputsAreInvalid(t *testing.T) {
	d := startDaemon(t, daemonOpts{plans: limitsPlans})
	ctx := ctxT(t, time.Minute)
	for _, depth := range []int{33, 5000, 100_000} {
		v := structpb.NewNumberValue(1)
		for range depth - 1 {
			v = structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{v}})
		}
		inputs := &structpb.Struct{Fields: map[string]*structpb.Value{"deep": v}}
		_, err := d.client.Submit(ctx, &aurav1.SubmitRequest{Task: "limits/nap", Inputs: inputs})
		if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "inputs") || !strings.Contains(st.Message(), "32") {
			t.Errorf("inputs nested %d deep: %v, want INVALID_ARGUMENT naming inputs and the limit of 32", depth, err)
		}
	}
	if task := d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: "limits/nap"})); task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Errorf("a plain task afterwards ended %s", task.Status)
	}
}

// TestLimitsTaskOutputIsBounded: each response within its own limits, but a
// loop over many of them (URLs from an input) would keep them all; the
// call that passes --max-task-output fails the step naming the limit.
func TestLimitsTaskOutputIsBounded(t *testing.T) {
	base := strings.TrimSuffix(jsonServer(t, 1<<20), "/big.json")
	d := startDaemon(t, daemonOpts{plans: limitsPlans, args: []string{"--max-task-output", "4194304"}})
	ctx := ctxT(t, time.Minute)
	fetch := func(n int) *aurav1.Task {
		urls := make([]any, n)
		for i := range urls {
			urls[i] = base + "/big.txt"
		}
		inputs, _ := structpb.NewStruct(map[string]any{"urls": urls})
		return d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: "limits/fetch_many", Inputs: inputs}))
	}
	if task := fetch(2); task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("two 1 MiB responses under a 4 MiB limit ended %s: %v", task.Status, task.GetError())
	}
	task := fetch(8)
	if task.Status != aurav1.TaskStatus_TASK_STATUS_FAILED {
		t.Fatalf("eight 1 MiB responses under a 4 MiB limit ended %s", task.Status)
	}
	if msg := task.GetError().GetMessage(); task.GetError().GetStep() != "get" || !strings.Contains(msg, "limit of 4 MiB (aurad --max-task-output)") {
		t.Errorf("error %q (step %q) should name step get and the limit", msg, task.GetError().GetStep())
	}
}

// The host policy holds for every way of writing a loopback or unspecified
// address, against a server that answers on all of them: IPv6 loopback,
// IPv4-mapped and NAT64 forms, a name that resolves to 127.0.0.1, and the
// unspecified addresses. Shorthand and decimal IPv4 forms (127.1,
// 2130706433, 0x7f000001) are not addresses to Go's resolver and never
// connect. Only the plan's allowed 127.0.0.2 is reached.
func TestLimitsHTTPHostPolicyHoldsForEveryAddressForm(t *testing.T) {
	ln, err := net.Listen("tcp", "[::]:0")
	if err != nil {
		t.Skipf("cannot listen on every address: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "reached") })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	d := startDaemon(t, daemonOpts{plans: limitsPlans})
	ctx := ctxT(t, 2*time.Minute)
	fetch := func(host string) *aurav1.Task {
		inputs, _ := structpb.NewStruct(map[string]any{"url": fmt.Sprintf("http://%s:%d/", host, port)})
		return d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: "limits/fetch", Inputs: inputs}))
	}
	if task := fetch("127.0.0.2"); task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("the allowed 127.0.0.2: %s %v", task.Status, task.GetError())
	}
	for _, c := range []struct{ host, want string }{
		{"127.0.0.1", "loopback"}, {"[::1]", "loopback"}, {"[0:0:0:0:0:0:0:1]", "loopback"},
		{"[::ffff:127.0.0.1]", "loopback"}, {"[::ffff:7f00:1]", "loopback"}, {"[64:ff9b::7f00:1]", "loopback"},
		{"localhost", "loopback"}, {"LOCALHOST", "loopback"},
		{"0.0.0.0", "unspecified"}, {"[::]", "unspecified"},
		{"127.1", ""}, {"2130706433", ""}, {"0x7f000001", ""}, {"017700000001", ""},
	} {
		task := fetch(c.host)
		msg := task.GetError().GetMessage()
		if task.Status != aurav1.TaskStatus_TASK_STATUS_FAILED || !strings.Contains(msg, c.want) {
			t.Errorf("fetch from %s: %s %q (result %v); want FAILED saying %q", c.host, task.Status, msg, task.GetResult(), c.want)
		}
	}
}
