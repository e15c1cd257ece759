package hooks

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"slices"
	"testing"
	"time"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// recorder is a local hook on every point that records the points it was
// called at, in order.
type recorder struct {
	name   string
	calls  []string
	deny   bool // deny at before_task_run
	panic  bool
	fail   bool
	before []*BeforeRunRequest
	after  []*AfterRunRequest
}

func (r *recorder) Name() string { return r.name }
func (r *recorder) BeforeTaskRun(ctx context.Context, req *BeforeRunRequest, resp *BeforeRunResponse) error {
	r.calls = append(r.calls, BeforeTaskRun)
	r.before = append(r.before, req)
	if r.deny {
		resp.Deny("not today")
	}
	switch {
	case r.panic:
		panic("hook bug")
	case r.fail:
		return errors.New("hook could not reach its backend")
	}
	return nil
}
func (r *recorder) AfterTaskSuccess(ctx context.Context, req *AfterRunRequest) error {
	return r.afterCall(AfterTaskSuccess, req)
}
func (r *recorder) AfterTaskFailure(ctx context.Context, req *AfterRunRequest) error {
	return r.afterCall(AfterTaskFailure, req)
}
func (r *recorder) AfterTaskRun(ctx context.Context, req *AfterRunRequest) error {
	return r.afterCall(AfterTaskRun, req)
}
func (r *recorder) afterCall(point string, req *AfterRunRequest) error {
	r.calls = append(r.calls, point)
	r.after = append(r.after, req)
	if r.panic {
		panic("after hook bug")
	}
	if r.fail {
		return errors.New("hook could not reach its backend")
	}
	return nil
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestLocalHooks(t *testing.T) {
	task := &aurav1.Task{Id: "t", Task: "p/x", Status: aurav1.TaskStatus_TASK_STATUS_SUCCEEDED}
	broken := &recorder{name: "broken", panic: true}
	erring := &recorder{name: "erring", fail: true}
	ok := &recorder{name: "ok"}
	r := NewRegistry(quiet())
	r.Register(broken)
	r.Register(erring)
	r.Register(ok)
	if err := r.Before(context.Background(), NewBeforeRunRequest(task)); err != nil {
		t.Fatalf("a panicking or failing hook vetoed the task: %v", err)
	}
	r.After(context.Background(), NewAfterRunRequest(task))
	want := []string{BeforeTaskRun, AfterTaskSuccess, AfterTaskRun}
	if !slices.Equal(ok.calls, want) || !slices.Equal(broken.calls, want) {
		t.Fatalf("hooks after a panicking one did not run: ok=%v broken=%v, want %v each", ok.calls, broken.calls, want)
	}
	r.Register(&recorder{name: "gate", deny: true})
	err := r.Before(context.Background(), NewBeforeRunRequest(task))
	var denied *DeniedError
	if !errors.As(err, &denied) || denied.By != "gate" || denied.Reason != "not today" {
		t.Fatalf("got %v, want a denial by gate", err)
	}
	if err.Error() != "denied by gate: not today" {
		t.Fatalf("the task's error would read %q", err)
	}
}

// A hook that fails gave no answer, even if it called Deny first: the task
// runs, and its half-made denial is not taken for the next hook's.
func TestFailedHookDoesNotDeny(t *testing.T) {
	task := &aurav1.Task{Id: "t", Task: "p/x"}
	for _, c := range []struct {
		name string
		hook *recorder
	}{
		{"denies, then errs", &recorder{name: "flaky", deny: true, fail: true}},
		{"denies, then panics", &recorder{name: "buggy", deny: true, panic: true}},
	} {
		r := NewRegistry(quiet())
		next := &recorder{name: "next"}
		r.Register(c.hook)
		r.Register(next)
		if err := r.Before(context.Background(), NewBeforeRunRequest(task)); err != nil {
			t.Errorf("%s: the task was stopped: %v", c.name, err)
		}
		if len(next.calls) != 1 {
			t.Errorf("%s: the next hook was not asked", c.name)
		}
	}
}

// Every hook and interceptor is told the task's id, name, plan and labels
// and given its snapshot; the after hooks also its outcome.
func TestRequestsCarryTheTask(t *testing.T) {
	labels := map[string]string{"team": "web"}
	task := &aurav1.Task{Id: "t1", Task: "deploy/web/rollout", Labels: labels}
	h := &recorder{name: "h"}
	ic := &fakeInterceptor{name: "ic", allow: true}
	r := NewRegistry(quiet())
	r.Register(h)
	r.AddInterceptor(ic)
	if err := r.Before(context.Background(), NewBeforeRunRequest(task)); err != nil {
		t.Fatal(err)
	}
	final := &aurav1.Task{Id: "t1", Task: "deploy/web/rollout", Labels: labels,
		Status: aurav1.TaskStatus_TASK_STATUS_TIMED_OUT, Error: &aurav1.TaskError{Kind: "timeout", Message: "timed out after 1s"}}
	r.After(context.Background(), NewAfterRunRequest(final))

	check := func(where string, tc TaskContext, snap *aurav1.Task) {
		t.Helper()
		if tc.ID != "t1" || tc.Name != "deploy/web/rollout" || tc.Plan != "deploy" || !maps.Equal(tc.Labels, labels) || tc.Task != snap {
			t.Errorf("%s was told %+v", where, tc)
		}
	}
	if len(h.before) != 1 || len(ic.asked) != 1 || len(h.after) != 2 {
		t.Fatalf("calls: before %d, interceptor %d, after %d; want 1, 1, 2", len(h.before), len(ic.asked), len(h.after))
	}
	check(BeforeTaskRun, h.before[0].TaskContext, task)
	check("the interceptor", ic.asked[0].TaskContext, task)
	for i, req := range h.after {
		check(h.calls[1+i], req.TaskContext, final)
		if req.Status != final.Status || req.Error != final.Error {
			t.Errorf("%s was told status %v, error %v", h.calls[1+i], req.Status, req.Error)
		}
	}
}

// The after hooks of the task's outcome run, then after_task_run: success
// for SUCCEEDED, failure for every other terminal status.
func TestAfterPoints(t *testing.T) {
	for status, want := range map[aurav1.TaskStatus]string{
		aurav1.TaskStatus_TASK_STATUS_SUCCEEDED:       AfterTaskSuccess,
		aurav1.TaskStatus_TASK_STATUS_FAILED:          AfterTaskFailure,
		aurav1.TaskStatus_TASK_STATUS_TIMED_OUT:       AfterTaskFailure,
		aurav1.TaskStatus_TASK_STATUS_CANCELLED:       AfterTaskFailure,
		aurav1.TaskStatus_TASK_STATUS_PLANNING_FAILED: AfterTaskFailure,
		aurav1.TaskStatus_TASK_STATUS_INTERRUPTED:     AfterTaskFailure,
	} {
		if got := OutcomePoint(status); got != want {
			t.Errorf("OutcomePoint(%v) = %s, want %s", status, got, want)
		}
		h := &recorder{name: "h"}
		r := NewRegistry(quiet())
		r.Register(h)
		r.After(context.Background(), NewAfterRunRequest(&aurav1.Task{Id: "t", Task: "p/x", Status: status}))
		if !slices.Equal(h.calls, []string{want, AfterTaskRun}) {
			t.Errorf("%v: hooks ran at %v, want %s then %s", status, h.calls, want, AfterTaskRun)
		}
	}
}

type fakeInterceptor struct {
	name     string
	plan     string
	allow    bool
	delay    time.Duration
	failOpen bool
	asked    []*BeforeRunRequest
}

func (f *fakeInterceptor) Name() string { return f.name }
func (f *fakeInterceptor) Matches(req *BeforeRunRequest) bool {
	return f.plan == "" || req.Plan == f.plan
}
func (f *fakeInterceptor) Timeout() time.Duration { return 50 * time.Millisecond }
func (f *fakeInterceptor) FailOpen() bool         { return f.failOpen }
func (f *fakeInterceptor) Decide(ctx context.Context, req *BeforeRunRequest, resp *BeforeRunResponse) error {
	f.asked = append(f.asked, req)
	select {
	case <-time.After(f.delay):
		if !f.allow {
			resp.Deny("policy says so")
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestInterceptors(t *testing.T) {
	task := &aurav1.Task{Id: "t", Task: "p/x"}
	cases := []struct {
		name   string
		ic     *fakeInterceptor
		denied string // the denial's reason; "" = allowed
	}{
		{"allows", &fakeInterceptor{name: "a", allow: true}, ""},
		{"denies", &fakeInterceptor{name: "d", allow: false}, "policy says so"},
		{"silent, fail closed", &fakeInterceptor{name: "s", allow: true, delay: time.Hour}, "no decision (fail-closed): context deadline exceeded"},
		{"silent, fail open", &fakeInterceptor{name: "o", allow: false, delay: time.Hour, failOpen: true}, ""},
		{"another plan's", &fakeInterceptor{name: "q", plan: "q", allow: false}, ""},
	}
	for _, c := range cases {
		r := NewRegistry(quiet())
		remove := r.AddInterceptor(c.ic)
		err := r.Before(context.Background(), NewBeforeRunRequest(task))
		var denied *DeniedError
		if errors.As(err, &denied) != (c.denied != "") || (c.denied != "" && (denied.By != c.ic.name || denied.Reason != c.denied)) {
			t.Errorf("%s: err %v, want denial %q", c.name, err, c.denied)
		}
		remove()
		if r.Interceptors() != 0 {
			t.Errorf("%s: remove left %d interceptors", c.name, r.Interceptors())
		}
	}
	// The task's own budget running out is not a denial.
	r := NewRegistry(quiet())
	r.AddInterceptor(&fakeInterceptor{name: "slow", delay: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	err := r.Before(ctx, NewBeforeRunRequest(task))
	var denied *DeniedError
	if errors.As(err, &denied) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the context's deadline", err)
	}
}
