package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/aura-dev/aura/client"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

func TestHelloSucceedsWithResult(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	ctx := ctxT(t, time.Minute)
	in, _ := structpb.NewStruct(map[string]any{"name": "aura"})
	id := d.submit(ctx, &aurav1.SubmitRequest{Task: "demo/hello", Inputs: in})
	task := d.wait(ctx, id)
	if task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("status %s, error %v", task.Status, task.Error)
	}
	got := task.GetResult().GetStructValue().AsMap()["greeting"]
	if got != "hello, aura" {
		t.Errorf("result greeting = %#v, want %q", got, "hello, aura")
	}
	if len(task.Steps) != 2 || task.Steps[1].Id != "echo" || task.Steps[1].Status != aurav1.StepStatus_STEP_STATUS_SUCCEEDED {
		t.Errorf("steps = %v", task.Steps)
	}
	// GetTask agrees with what Wait returned.
	again, err := d.client.Get(ctx, id)
	if err != nil || again.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED || again.StartedAt == nil || again.FinishedAt == nil {
		t.Fatalf("GetTask = %v, %v", again, err)
	}
}

func TestFailingTaskNamesTheStep(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	ctx := ctxT(t, time.Minute)
	task := d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: "demo/fail"}))
	if task.Status != aurav1.TaskStatus_TASK_STATUS_FAILED {
		t.Fatalf("status %s, want FAILED", task.Status)
	}
	if task.Error.GetKind() != "failed" || task.Error.GetStep() != "explode" || !strings.Contains(task.Error.GetMessage(), "this task fails on purpose") {
		t.Fatalf("error = %v, want kind failed, step explode and the fail message", task.Error)
	}
	for _, s := range task.Steps {
		if s.Id == "never" && s.Status == aurav1.StepStatus_STEP_STATUS_SUCCEEDED {
			t.Errorf("step after the failure ran: %v", s)
		}
	}
}

func TestTimeoutKillsTheExecChild(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	ctx := ctxT(t, time.Minute)
	id := d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/sleeper", Timeout: durationpb.New(3 * time.Second)})
	pidFile := filepath.Join(d.data, "work", "e2e", "sleeper.pid")
	var pid int
	waitFor(t, "the sleeper to record its pid", 20*time.Second, func() bool {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && pid > 0
	})
	task := d.wait(ctx, id)
	if task.Status != aurav1.TaskStatus_TASK_STATUS_TIMED_OUT || task.Error.GetKind() != "timeout" {
		t.Fatalf("status %s error %v, want TIMED_OUT/timeout", task.Status, task.Error)
	}
	if !processGone(pid) {
		t.Fatalf("exec child %d still exists after the task timed out", pid)
	}
}

func TestCancelRunningTask(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	ctx := ctxT(t, time.Minute)
	id := d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/sleeper", Inputs: mustStruct(t, map[string]any{"pidfile": "cancel.pid"})})
	pidFile := filepath.Join(d.data, "work", "e2e", "cancel.pid")
	waitFor(t, "the sleeper to start", 20*time.Second, func() bool { _, err := os.Stat(pidFile); return err == nil })
	b, _ := os.ReadFile(pidFile)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))

	task, err := d.client.Cancel(ctx, id, "test says stop")
	if err != nil {
		t.Fatal(err)
	}
	if task.Status != aurav1.TaskStatus_TASK_STATUS_CANCELLED || task.Error.GetKind() != "cancelled" || !strings.Contains(task.Error.GetMessage(), "test says stop") {
		t.Fatalf("after cancel: status %s error %v", task.Status, task.Error)
	}
	if pid > 0 && !processGone(pid) {
		t.Fatalf("exec child %d still exists after cancel", pid)
	}
	// Cancelling a terminal task leaves it alone.
	again, err := d.client.Cancel(ctx, id, "again")
	if err != nil || again.Status != aurav1.TaskStatus_TASK_STATUS_CANCELLED || strings.Contains(again.Error.GetMessage(), "again") {
		t.Fatalf("second cancel = %v, %v", again, err)
	}
}

func TestCancelQueuedTask(t *testing.T) {
	d := startDaemon(t, daemonOpts{args: []string{"--max-concurrent", "1"}})
	ctx := ctxT(t, time.Minute)
	blocker := d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/sleeper"})
	queued := d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"})
	if got, _ := d.client.Get(ctx, queued); got.GetStatus() != aurav1.TaskStatus_TASK_STATUS_QUEUED {
		t.Fatalf("second task status %s, want QUEUED behind the global limit of 1", got.GetStatus())
	}
	task, err := d.client.Cancel(ctx, queued, "")
	if err != nil || task.Status != aurav1.TaskStatus_TASK_STATUS_CANCELLED || task.StartedAt != nil {
		t.Fatalf("cancel queued = %v, %v", task, err)
	}
	if _, err := d.client.Cancel(ctx, blocker, ""); err != nil {
		t.Fatal(err)
	}
}

func TestStreamDeliversEventsInOrder(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	ctx := ctxT(t, time.Minute)
	id := d.submit(ctx, &aurav1.SubmitRequest{Task: "demo/hello"})
	var evs []*aurav1.TaskEvent
	if err := d.client.Watch(ctx, id, func(ev *aurav1.TaskEvent) error { evs = append(evs, ev); return nil }); err != nil {
		t.Fatal(err)
	}
	var types []string
	for i, ev := range evs {
		if ev.TaskId != id {
			t.Errorf("event %d belongs to %s", i, ev.TaskId)
		}
		if i > 0 && ev.Sequence <= evs[i-1].Sequence {
			t.Errorf("sequence not increasing: %d after %d", ev.Sequence, evs[i-1].Sequence)
		}
		types = append(types, ev.Type+":"+ev.Step)
	}
	want := []string{"task.queued:", "task.running:", "step.started:greet", "step.succeeded:greet",
		"step.started:echo", "task.log:echo", "step.succeeded:echo", "task.finished:"}
	if !slices.Equal(types, want) {
		t.Fatalf("events\n got %v\nwant %v", types, want)
	}
	if log := evs[5]; log.Stream != "stdout" || log.Message != "hello, world" {
		t.Errorf("task.log event: stream %q message %q", log.Stream, log.Message)
	}
	if last := evs[len(evs)-1]; last.Task.GetStatus() != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Errorf("task.finished carries status %s", last.Task.GetStatus())
	}
	// A finished task's stream replays the same events and ends.
	var replay []string
	if err := d.client.Watch(ctx, id, func(ev *aurav1.TaskEvent) error { replay = append(replay, ev.Type+":"+ev.Step); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(replay, want) {
		t.Fatalf("replay of a finished task\n got %v\nwant %v", replay, want)
	}
}

func TestSubscribeDeliversHooksInSeedOrder(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	ctx := ctxT(t, time.Minute)
	zero := uint64(0)
	got := map[string][]string{}
	done := make(chan error, 1)
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	ok := d.submit(ctx, &aurav1.SubmitRequest{Task: "demo/hello"})
	bad := d.submit(ctx, &aurav1.SubmitRequest{Task: "demo/fail"})
	go func() {
		done <- d.client.Subscribe(sctx, client.SubscribeOptions{After: &zero}, func(ev *aurav1.HookEvent) error {
			got[ev.Task.GetId()] = append(got[ev.Task.GetId()], ev.Hook)
			if len(got[ok]) == 3 && len(got[bad]) == 3 {
				stop()
			}
			return nil
		})
	}()
	<-done
	if want := []string{"before_task_run", "after_task_success", "after_task_run"}; !slices.Equal(got[ok], want) {
		t.Errorf("hooks for a success: %v, want %v", got[ok], want)
	}
	if want := []string{"before_task_run", "after_task_failure", "after_task_run"}; !slices.Equal(got[bad], want) {
		t.Errorf("hooks for a failure: %v, want %v", got[bad], want)
	}
}

func TestBadInputIsRejectedAndCreatesNothing(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	ctx := ctxT(t, time.Minute)
	cases := []struct {
		name  string
		req   *aurav1.SubmitRequest
		code  codes.Code
		field string
	}{
		{"empty task", &aurav1.SubmitRequest{}, codes.InvalidArgument, "task"},
		{"malformed task", &aurav1.SubmitRequest{Task: "no-slash"}, codes.InvalidArgument, "task"},
		{"path escape", &aurav1.SubmitRequest{Task: "demo/../etc/passwd"}, codes.InvalidArgument, "task"},
		{"unknown task", &aurav1.SubmitRequest{Task: "demo/nope"}, codes.NotFound, "demo/nope"},
		{"unknown plan", &aurav1.SubmitRequest{Task: "nope/hello"}, codes.NotFound, "nope"},
		{"negative timeout", &aurav1.SubmitRequest{Task: "demo/hello", Timeout: durationpb.New(-time.Second)}, codes.InvalidArgument, "timeout"},
		{"zero timeout", &aurav1.SubmitRequest{Task: "demo/hello", Timeout: durationpb.New(0)}, codes.InvalidArgument, "timeout"},
		{"missing required input", &aurav1.SubmitRequest{Task: "e2e/echo"}, codes.InvalidArgument, "n"},
		{"wrong input type", &aurav1.SubmitRequest{Task: "e2e/echo", Inputs: mustStruct(t, map[string]any{"n": "three"})}, codes.InvalidArgument, "n"},
		{"unknown input", &aurav1.SubmitRequest{Task: "e2e/echo", Inputs: mustStruct(t, map[string]any{"n": 1, "bogus": 1})}, codes.InvalidArgument, "bogus"},
		{"bad tag limit", &aurav1.SubmitRequest{Task: "demo/hello", ResourceTags: []string{"device:x:0"}}, codes.InvalidArgument, "resource_tags"},
		{"empty tag", &aurav1.SubmitRequest{Task: "demo/hello", ResourceTags: []string{""}}, codes.InvalidArgument, "resource_tags"},
		{"bad mode", &aurav1.SubmitRequest{Task: "demo/hello", ExecutionMode: 7}, codes.InvalidArgument, "execution_mode"},
	}
	for _, c := range cases {
		_, err := d.client.Submit(ctx, c.req)
		st := status.Convert(err)
		if st.Code() != c.code || !strings.Contains(st.Message(), c.field) {
			t.Errorf("%s: got %v %q, want %v naming %q", c.name, st.Code(), st.Message(), c.code, c.field)
		}
	}
	list, err := d.client.Exec.ListTasks(ctx, &aurav1.ListTasksRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Tasks) != 0 {
		t.Fatalf("rejected submissions created %d tasks", len(list.Tasks))
	}
	// The typed inputs of a good submission come back typed.
	task := d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/echo", Inputs: mustStruct(t, map[string]any{"n": 3})}))
	res := task.GetResult().GetStructValue().AsMap()
	if res["n"] != float64(3) || res["word"] != "hi" {
		t.Fatalf("echo returned %v", res)
	}
}

func mustStruct(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSubmitStreamAnswersEachRequestInOrder(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	ctx := ctxT(t, time.Minute)
	stream, err := d.client.Exec.SubmitStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	reqs := []*aurav1.SubmitRequest{
		{Task: "e2e/quick", Labels: map[string]string{"i": "0"}},
		{Task: "demo/nope"},
		{Task: "e2e/quick", Labels: map[string]string{"i": "2"}},
		{Task: "e2e/quick", IdempotencyKey: "k"},
		{Task: "e2e/quick", IdempotencyKey: "k"},
		{Task: "e2e/quick", ResourceTags: []string{"device:0"}},
		{Task: "e2e/quick", Labels: map[string]string{"i": "6"}},
	}
	for _, r := range reqs {
		if err := stream.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var resps []*aurav1.SubmitResponse
	for {
		r, err := stream.Recv()
		if err != nil {
			break
		}
		resps = append(resps, r)
	}
	if len(resps) != len(reqs) {
		t.Fatalf("%d responses to %d requests", len(resps), len(reqs))
	}
	if resps[1].Error.GetCode() != int32(codes.NotFound) || resps[1].TaskId != "" {
		t.Fatalf("bad request answered %v", resps[1])
	}
	// An invalid request is answered in its place, naming the field, and
	// the stream goes on.
	if e := resps[5].Error; e.GetCode() != int32(codes.InvalidArgument) || !strings.HasPrefix(e.GetMessage(), "resource_tags[0]: ") || resps[5].TaskId != "" {
		t.Fatalf("invalid request answered %v", resps[5])
	}
	for _, i := range []int{0, 2, 6} {
		task := d.wait(ctx, resps[i].TaskId)
		if task.Labels["i"] != strconv.Itoa(i) {
			t.Fatalf("response %d belongs to the task labelled %q", i, task.Labels["i"])
		}
	}
	if resps[3].TaskId != resps[4].TaskId || resps[3].Deduplicated || !resps[4].Deduplicated {
		t.Fatalf("idempotency on a stream: %v / %v", resps[3], resps[4])
	}
}

func TestListTasksPagesNewestFirst(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	ctx := ctxT(t, time.Minute)
	var ids []string
	for i := range 7 {
		ids = append(ids, d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick", Labels: map[string]string{"batch": "b", "n": strconv.Itoa(i)}}))
	}
	for _, id := range ids {
		d.wait(ctx, id)
	}
	var got []string
	token := ""
	for pages := 0; ; pages++ {
		resp, err := d.client.Exec.ListTasks(ctx, &aurav1.ListTasksRequest{LabelSelector: "batch=b", PageSize: 3, PageToken: token,
			Status: aurav1.TaskStatus_TASK_STATUS_SUCCEEDED, Plan: "e2e"})
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range resp.Tasks {
			got = append(got, task.Id)
		}
		if token = resp.NextPageToken; token == "" {
			break
		}
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
	}
	want := slices.Clone(ids)
	slices.Reverse(want)
	if !slices.Equal(got, want) {
		t.Fatalf("pages gave %v, want newest first %v", got, want)
	}
	if _, err := d.client.Exec.ListTasks(ctx, &aurav1.ListTasksRequest{LabelSelector: "a in (b"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad selector: %v", err)
	}
	if _, err := d.client.Exec.ListTasks(ctx, &aurav1.ListTasksRequest{PageToken: "garbage"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad page token: %v", err)
	}
}
