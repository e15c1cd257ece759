package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// interceptor registers over HookService.Intercept and answers each call
// with decide.
func interceptor(t *testing.T, d *daemon, reg *aurav1.InterceptRegistration, decide func(*aurav1.InterceptCall) *aurav1.InterceptDecision) (calls chan *aurav1.InterceptCall, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := d.client.Hooks.Intercept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&aurav1.InterceptReply{Msg: &aurav1.InterceptReply_Register{Register: reg}}); err != nil {
		t.Fatal(err)
	}
	calls = make(chan *aurav1.InterceptCall, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			call, err := stream.Recv()
			if err != nil {
				return
			}
			calls <- call
			if dec := decide(call); dec != nil {
				if err := stream.Send(&aurav1.InterceptReply{Msg: &aurav1.InterceptReply_Decision{Decision: dec}}); err != nil {
					return
				}
			}
		}
	}()
	// Registration is asynchronous; wait until the daemon counts it.
	waitFor(t, "the interceptor to register", 10*time.Second, func() bool {
		s, err := d.client.Exec.GetStats(ctx, &aurav1.GetStatsRequest{})
		return err == nil && s.Interceptors >= 1
	})
	return calls, func() { cancel(); <-done }
}

func TestInterceptorDeniesATask(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	ctx := ctxT(t, time.Minute)
	calls, stop := interceptor(t, d, &aurav1.InterceptRegistration{Name: "policy", Plan: "demo"},
		func(c *aurav1.InterceptCall) *aurav1.InterceptDecision {
			allow := c.Task.GetTask() != "demo/hello"
			return &aurav1.InterceptDecision{CallId: c.CallId, Allow: allow, Reason: "hello is not allowed today"}
		})
	defer stop()

	denied := d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: "demo/hello"}))
	if denied.Status != aurav1.TaskStatus_TASK_STATUS_FAILED || denied.Error.GetKind() != "denied" ||
		!strings.Contains(denied.Error.GetMessage(), "hello is not allowed today") || !strings.Contains(denied.Error.GetMessage(), "policy") {
		t.Fatalf("denied task: %s %v", denied.Status, denied.Error)
	}
	if len(denied.Steps) != 0 && denied.Steps[0].Status != aurav1.StepStatus_STEP_STATUS_PENDING {
		t.Fatalf("a denied task ran steps: %v", denied.Steps)
	}
	hooks := hookSequence(t, d, denied.Id)
	if want := "before_task_run,after_task_failure,after_task_run"; hooks != want {
		t.Fatalf("hooks of a denied task: %s, want %s", hooks, want)
	}
	allowed := d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: "demo/fail"}))
	if allowed.Error.GetKind() != "failed" {
		t.Fatalf("allowed task: %v", allowed.Error)
	}
	// Tasks of other plans are not sent to a plan-filtered interceptor.
	d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"}))
	for len(calls) > 0 {
		if c := <-calls; !strings.HasPrefix(c.Task.GetTask(), "demo/") {
			t.Fatalf("interceptor for plan demo was asked about %s", c.Task.GetTask())
		}
	}
}

func TestSilentInterceptorFailsClosedOrOpen(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		d := startDaemon(t, daemonOpts{})
		ctx := ctxT(t, time.Minute)
		_, stop := interceptor(t, d, &aurav1.InterceptRegistration{
			Name: "sleepy", Timeout: durationpb.New(200 * time.Millisecond), FailOpen: failOpen,
		}, func(*aurav1.InterceptCall) *aurav1.InterceptDecision { return nil })
		task := d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"}))
		stop()
		if failOpen && task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
			t.Fatalf("fail-open: %s %v", task.Status, task.Error)
		}
		if !failOpen && (task.Status != aurav1.TaskStatus_TASK_STATUS_FAILED || task.Error.GetKind() != "denied") {
			t.Fatalf("fail-closed: %s %v", task.Status, task.Error)
		}
	}
}

func TestInterceptMustRegisterFirst(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	ctx := ctxT(t, time.Minute)
	stream, err := d.client.Hooks.Intercept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.Send(&aurav1.InterceptReply{Msg: &aurav1.InterceptReply_Decision{Decision: &aurav1.InterceptDecision{CallId: "1"}}})
	_, err = stream.Recv()
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "register") {
		t.Fatalf("got %v, want INVALID_ARGUMENT naming register", err)
	}
	sub, err := d.client.Hooks.Subscribe(ctx, &aurav1.SubscribeRequest{Hooks: []string{"before_everything"}})
	if err == nil {
		_, err = sub.Recv()
	}
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "hooks[0]") {
		t.Fatalf("unknown hook: %v", err)
	}
}

// hookSequence returns the hook names recorded for one task, in order.
func hookSequence(t *testing.T, d *daemon, id string) string {
	t.Helper()
	zero := uint64(0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := d.client.Hooks.Subscribe(ctx, &aurav1.SubscribeRequest{AfterSequence: &zero})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("subscribe: %v (got %v)", err, names)
		}
		if ev.Task.GetId() != id {
			continue
		}
		names = append(names, ev.Hook)
		if ev.Hook == "after_task_run" {
			return strings.Join(names, ",")
		}
	}
}
