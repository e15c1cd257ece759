package execmgr

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/aura-dev/aura/internal/store"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// The hand encoders produce what proto.Marshal would: decoding their bytes
// gives the same message, for every field and for empty ones.
func TestHandEncodedEventsDecodeToTheSameMessage(t *testing.T) {
	now := time.Date(2026, 11, 28, 15, 4, 5, 123456789, time.UTC)
	task := &aurav1.Task{Id: "t1", Task: "demo/hello", Status: aurav1.TaskStatus_TASK_STATUS_RUNNING}
	taskBytes, err := proto.Marshal(task)
	if err != nil {
		t.Fatal(err)
	}
	running := int32(aurav1.TaskStatus_TASK_STATUS_RUNNING)
	cases := []struct {
		in   store.Event
		want *aurav1.TaskEvent
	}{
		{store.Event{TaskID: "t1", Type: "task.queued", Time: now, Fields: store.EventFields{Status: int32(aurav1.TaskStatus_TASK_STATUS_QUEUED), Snapshot: taskBytes}},
			&aurav1.TaskEvent{TaskId: "t1", Type: "task.queued", Status: aurav1.TaskStatus_TASK_STATUS_QUEUED, Time: timestamppb.New(now), Task: task}},
		{store.Event{TaskID: "t1", Type: "step.failed", Time: now, Fields: store.EventFields{Step: "fetch", Message: "boom", Attempt: 3, Status: running}},
			&aurav1.TaskEvent{TaskId: "t1", Type: "step.failed", Step: "fetch", Message: "boom", Attempt: 3, Status: aurav1.TaskStatus_TASK_STATUS_RUNNING, Time: timestamppb.New(now)}},
		{store.Event{TaskID: "t1", Type: "step.retrying", Time: now, Fields: store.EventFields{Step: "fetch", Message: "boom", Attempt: 2, MaxAttempts: 3, RetryDelay: 1500 * time.Millisecond, Status: running}},
			&aurav1.TaskEvent{TaskId: "t1", Type: "step.retrying", Step: "fetch", Message: "boom", Attempt: 2, MaxAttempts: 3, RetryDelay: durationpb.New(1500 * time.Millisecond), Status: aurav1.TaskStatus_TASK_STATUS_RUNNING, Time: timestamppb.New(now)}},
		{store.Event{TaskID: "t1", Type: "step.retrying", Time: now, Fields: store.EventFields{Step: "fetch", Attempt: 2, MaxAttempts: 2, Status: running}},
			&aurav1.TaskEvent{TaskId: "t1", Type: "step.retrying", Step: "fetch", Attempt: 2, MaxAttempts: 2, RetryDelay: durationpb.New(0), Status: aurav1.TaskStatus_TASK_STATUS_RUNNING, Time: timestamppb.New(now)}},
		{store.Event{TaskID: "t1", Type: "task.log", Time: time.Unix(0, 0), Fields: store.EventFields{Stream: "stderr", Message: "bad \xff byte"}},
			&aurav1.TaskEvent{TaskId: "t1", Type: "task.log", Stream: "stderr", Message: "bad \uFFFD byte", Time: timestamppb.New(time.Unix(0, 0))}},
	}
	for _, c := range cases {
		got := &aurav1.TaskEvent{}
		if err := proto.Unmarshal(EncodeEvent(&c.in), got); err != nil {
			t.Fatalf("%+v: %v", c.in, err)
		}
		if !proto.Equal(got, c.want) {
			t.Fatalf("decoded %v\nwant    %v", got, c.want)
		}
	}
	got := &aurav1.HookEvent{}
	hook := &store.Event{TaskID: "t1", Type: "after_task_run", Hook: true, Time: now, Fields: store.EventFields{Snapshot: taskBytes}}
	if err := proto.Unmarshal(EncodeEvent(hook), got); err != nil {
		t.Fatal(err)
	}
	if want := (&aurav1.HookEvent{Hook: "after_task_run", Time: timestamppb.New(now), Task: task}); !proto.Equal(got, want) {
		t.Fatalf("hook event %v, want %v", got, want)
	}
}
