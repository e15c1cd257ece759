package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

func ev(typ, step string) *aurav1.TaskEvent {
	return &aurav1.TaskEvent{Type: typ, Step: step, TaskId: "t1", Sequence: 1, Time: timestamppb.Now()}
}

func withStatus(e *aurav1.TaskEvent, s aurav1.TaskStatus, steps ...*aurav1.StepState) *aurav1.TaskEvent {
	e.Status = s
	e.Task = &aurav1.Task{Id: "t1", Status: s, Steps: steps}
	return e
}

func step(id string, s aurav1.StepStatus) *aurav1.StepState {
	return &aurav1.StepState{Id: id, Status: s}
}

func retrying(step string, next, max int32) *aurav1.TaskEvent {
	e := ev("step.retrying", step)
	e.Attempt, e.MaxAttempts = next, max
	return e
}

// A retry reads as the attempt to come, when, and why.
func TestEventLineOfARetry(t *testing.T) {
	e := retrying("fetch", 2, 3)
	e.RetryDelay = durationpb.New(1500 * time.Millisecond)
	e.Message = "status 503"
	line := eventLine(7, e)
	if !strings.HasSuffix(line, "  #7  step.retrying  fetch  attempt 2/3 in 1.5s  after: status 503  task=t1") {
		t.Fatalf("eventLine = %q", line)
	}
	e.RetryDelay = durationpb.New(0)
	if line := eventLine(7, e); !strings.Contains(line, "attempt 2/3 now") {
		t.Fatalf("eventLine without a delay = %q", line)
	}
}

func TestProgressLine(t *testing.T) {
	const (
		running = aurav1.TaskStatus_TASK_STATUS_RUNNING
		pending = aurav1.StepStatus_STEP_STATUS_PENDING
		ok      = aurav1.StepStatus_STEP_STATUS_SUCCEEDED
	)
	planning := ev("task.transition", "")
	planning.Message = "transition.start logged_out -> logged_in"
	tests := []struct {
		name    string
		events  []*aurav1.TaskEvent
		elapsed time.Duration
		want    string
	}{
		{"nothing yet", nil, 0, "SUBMITTED  0.0s"},
		{"queued", []*aurav1.TaskEvent{withStatus(ev("task.queued", ""), aurav1.TaskStatus_TASK_STATUS_QUEUED)},
			1500 * time.Millisecond, "QUEUED  1.5s"},
		{"planning shows the transition", []*aurav1.TaskEvent{ev("task.planning", ""), planning},
			2 * time.Second, "PLANNING  transition.start logged_out -> logged_in  2.0s"},
		{"first step, total unknown", []*aurav1.TaskEvent{withStatus(ev("task.running", ""), running), ev("step.started", "fetch")},
			12300 * time.Millisecond, "RUNNING  step fetch  0/? steps  12.3s"},
		{"total from a snapshot listing pending steps", []*aurav1.TaskEvent{
			withStatus(ev("task.running", ""), running, step("fetch", pending), step("save", pending), step("notify", pending)),
			ev("step.started", "fetch"), ev("step.succeeded", "fetch"), ev("step.started", "save"),
		}, 65 * time.Second, "RUNNING  step save  1/3 steps  1m05s"},
		{"parallel steps in start order", []*aurav1.TaskEvent{
			withStatus(ev("task.running", ""), running),
			ev("step.started", "a"), ev("step.started", "b"), ev("step.started", "c"), ev("step.failed", "b"),
		}, time.Second, "RUNNING  steps a, c  1/? steps  1.0s"},
		{"retry attempts do not count twice", []*aurav1.TaskEvent{
			ev("step.started", "a"), ev("step.started", "a"), ev("step.skipped", "b"),
		}, 0, "SUBMITTED  step a  1/? steps  0.0s"},
		{"a step waiting to retry is still running, with its next attempt", []*aurav1.TaskEvent{
			withStatus(ev("task.running", ""), running, step("fetch", pending), step("save", pending)),
			ev("step.started", "fetch"), ev("step.failed", "fetch"), retrying("fetch", 2, 3),
		}, time.Second, "RUNNING  step fetch (retry 2/3)  0/2 steps  1.0s"},
		{"the retry note goes when the attempt starts", []*aurav1.TaskEvent{
			ev("step.started", "fetch"), ev("step.failed", "fetch"), retrying("fetch", 2, 3), ev("step.started", "fetch"),
		}, 0, "SUBMITTED  step fetch  0/? steps  0.0s"},
		{"a cancelled step has ended", []*aurav1.TaskEvent{
			ev("step.started", "a"), ev("step.cancelled", "a"),
		}, 0, "SUBMITTED  1/? steps  0.0s"},
		{"paused: what paused it, until it resumes", []*aurav1.TaskEvent{
			withStatus(ev("task.running", ""), running, step("a", pending), step("b", pending)),
			ev("step.started", "a"), ev("step.succeeded", "a"),
			{Type: "task.paused", Message: `paused by interrupt "popup": handler p/close runs, then resume`},
		}, time.Second, `PAUSED  paused by interrupt "popup": handler p/close runs, then resume  1/2 steps  1.0s`},
		{"resumed: running again", []*aurav1.TaskEvent{
			withStatus(ev("task.running", ""), running, step("a", pending), step("b", pending)),
			ev("step.started", "a"), ev("step.succeeded", "a"),
			{Type: "task.paused", Message: "paused"}, {Type: "task.resumed"}, ev("step.started", "b"),
		}, time.Second, "RUNNING  step b  1/2 steps  1.0s"},
		{"finished: the total is the final step list", []*aurav1.TaskEvent{
			ev("step.started", "a"), ev("step.succeeded", "a"),
			withStatus(ev("task.finished", ""), aurav1.TaskStatus_TASK_STATUS_SUCCEEDED, step("a", ok), step("b", ok)),
		}, 3*time.Hour + 2*time.Minute + time.Second, "SUCCEEDED  1/2 steps  3h02m01s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p progress
			for _, e := range tc.events {
				p.apply(e)
			}
			if got := p.line(tc.elapsed); got != tc.want {
				t.Errorf("line = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFit(t *testing.T) {
	for _, tc := range []struct {
		s     string
		width int
		want  string
	}{
		{"short", 80, "short"},
		{"0123456789", 10, "01234567…"},
		{"0123456789", 11, "0123456789"},
		{"ünïcödé", 5, "ünï…"},
	} {
		if got := fit(tc.s, tc.width); got != tc.want {
			t.Errorf("fit(%q, %d) = %q, want %q", tc.s, tc.width, got, tc.want)
		}
	}
}

func TestNotATerminal(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	for name, out := range map[string]any{"pipe": w, "file": f, "/dev/null": null, "buffer": &bytes.Buffer{}} {
		if _, ok := terminalFd(out.(interface{ Write([]byte) (int, error) })); ok {
			t.Errorf("%s counted as a terminal", name)
		}
	}
}

// Off a terminal, --follow prints exactly the event lines it always has.
func TestPlainViewKeepsEventLines(t *testing.T) {
	var out bytes.Buffer
	g := &globals{output: "table"}
	v := newFollowView(g, &out, true)
	if _, ok := v.(*plainView); !ok {
		t.Fatalf("a buffer got %T, want plainView", v)
	}
	e := withStatus(ev("task.finished", ""), aurav1.TaskStatus_TASK_STATUS_FAILED)
	if err := v.event(e); err != nil {
		t.Fatal(err)
	}
	v.close()
	if out.String() != eventLine(1, e)+"\n" {
		t.Fatalf("got %q, want %q", out.String(), eventLine(1, e)+"\n")
	}
}
