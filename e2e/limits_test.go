package e2e

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

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
