package hooks

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

type recorder struct {
	name  string
	calls []string
	deny  bool
	panic bool
	fail  bool
}

func (r *recorder) Name() string { return r.name }
func (r *recorder) BeforeTaskRun(ctx context.Context, t *aurav1.Task) error {
	r.calls = append(r.calls, BeforeTaskRun)
	switch {
	case r.panic:
		panic("hook bug")
	case r.deny:
		return Deny("not today")
	case r.fail:
		return errors.New("hook could not reach its backend")
	}
	return nil
}
func (r *recorder) AfterTaskRun(ctx context.Context, t *aurav1.Task) error {
	r.calls = append(r.calls, AfterTaskRun)
	if r.panic {
		panic("after hook bug")
	}
	return nil
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestLocalHooks(t *testing.T) {
	task := &aurav1.Task{Id: "t", Task: "p/x"}
	broken := &recorder{name: "broken", panic: true}
	erring := &recorder{name: "erring", fail: true}
	ok := &recorder{name: "ok"}
	r := NewRegistry(quiet())
	r.Register(broken)
	r.Register(erring)
	r.Register(ok)
	if err := r.Before(context.Background(), task); err != nil {
		t.Fatalf("a panicking or failing hook vetoed the task: %v", err)
	}
	r.After(context.Background(), AfterTaskRun, task)
	if len(ok.calls) != 2 || len(broken.calls) != 2 {
		t.Fatalf("hooks after a panicking one did not run: ok=%v broken=%v", ok.calls, broken.calls)
	}
	r.Register(&recorder{name: "gate", deny: true})
	err := r.Before(context.Background(), task)
	var denied *DeniedError
	if !errors.As(err, &denied) || denied.By != "gate" || denied.Reason != "not today" {
		t.Fatalf("got %v, want a denial by gate", err)
	}
}

type fakeInterceptor struct {
	name     string
	allow    bool
	delay    time.Duration
	failOpen bool
}

func (f *fakeInterceptor) Name() string              { return f.name }
func (f *fakeInterceptor) Matches(*aurav1.Task) bool { return true }
func (f *fakeInterceptor) Timeout() time.Duration    { return 50 * time.Millisecond }
func (f *fakeInterceptor) FailOpen() bool            { return f.failOpen }
func (f *fakeInterceptor) Decide(ctx context.Context, _ *aurav1.Task) (bool, string, error) {
	select {
	case <-time.After(f.delay):
		return f.allow, "policy says so", nil
	case <-ctx.Done():
		return false, "", ctx.Err()
	}
}

func TestInterceptors(t *testing.T) {
	task := &aurav1.Task{Id: "t", Task: "p/x"}
	cases := []struct {
		name   string
		ic     *fakeInterceptor
		denied bool
	}{
		{"allows", &fakeInterceptor{name: "a", allow: true}, false},
		{"denies", &fakeInterceptor{name: "d", allow: false}, true},
		{"silent, fail closed", &fakeInterceptor{name: "s", allow: true, delay: time.Hour}, true},
		{"silent, fail open", &fakeInterceptor{name: "o", allow: false, delay: time.Hour, failOpen: true}, false},
	}
	for _, c := range cases {
		r := NewRegistry(quiet())
		remove := r.AddInterceptor(c.ic)
		err := r.Before(context.Background(), task)
		var denied *DeniedError
		if got := errors.As(err, &denied); got != c.denied {
			t.Errorf("%s: err %v, denied=%v want %v", c.name, err, got, c.denied)
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
	err := r.Before(ctx, task)
	var denied *DeniedError
	if errors.As(err, &denied) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the context's deadline", err)
	}
}
