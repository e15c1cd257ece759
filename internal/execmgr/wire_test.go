package execmgr

import (
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

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
		in   logEvent
		want *aurav1.TaskEvent
	}{
		{logEvent{TaskID: "t1", Type: "task.queued", Time: now, Fields: eventFields{Status: int32(aurav1.TaskStatus_TASK_STATUS_QUEUED), Snapshot: taskBytes}},
			&aurav1.TaskEvent{TaskId: "t1", Type: "task.queued", Status: aurav1.TaskStatus_TASK_STATUS_QUEUED, Time: timestamppb.New(now), Task: task}},
		{logEvent{TaskID: "t1", Type: "step.failed", Time: now, Fields: eventFields{Step: "fetch", Message: "boom", Attempt: 3, Status: running}},
			&aurav1.TaskEvent{TaskId: "t1", Type: "step.failed", Step: "fetch", Message: "boom", Attempt: 3, Status: aurav1.TaskStatus_TASK_STATUS_RUNNING, Time: timestamppb.New(now)}},
		{logEvent{TaskID: "t1", Type: "step.retrying", Time: now, Fields: eventFields{Step: "fetch", Message: "boom", Attempt: 2, MaxAttempts: 3, RetryDelay: 1500 * time.Millisecond, Status: running}},
			&aurav1.TaskEvent{TaskId: "t1", Type: "step.retrying", Step: "fetch", Message: "boom", Attempt: 2, MaxAttempts: 3, RetryDelay: durationpb.New(1500 * time.Millisecond), Status: aurav1.TaskStatus_TASK_STATUS_RUNNING, Time: timestamppb.New(now)}},
		{logEvent{TaskID: "t1", Type: "step.retrying", Time: now, Fields: eventFields{Step: "fetch", Attempt: 2, MaxAttempts: 2, Status: running}},
			&aurav1.TaskEvent{TaskId: "t1", Type: "step.retrying", Step: "fetch", Attempt: 2, MaxAttempts: 2, RetryDelay: durationpb.New(0), Status: aurav1.TaskStatus_TASK_STATUS_RUNNING, Time: timestamppb.New(now)}},
		{logEvent{TaskID: "t1", Type: "task.log", Time: time.Unix(0, 0), Fields: eventFields{Stream: "stderr", Message: "bad \xff byte"}},
			&aurav1.TaskEvent{TaskId: "t1", Type: "task.log", Stream: "stderr", Message: "bad \uFFFD byte", Time: timestamppb.New(time.Unix(0, 0))}},
	}
	for _, c := range cases {
		got := &aurav1.TaskEvent{}
		if err := proto.Unmarshal(encodeEvent(&c.in), got); err != nil {
			t.Fatalf("%+v: %v", c.in, err)
		}
		if !proto.Equal(got, c.want) {
			t.Fatalf("decoded %v\nwant    %v", got, c.want)
		}
	}
	got := &aurav1.HookEvent{}
	hook := &logEvent{TaskID: "t1", Type: "after_task_run", Hook: true, Time: now, Fields: eventFields{Snapshot: taskBytes}}
	if err := proto.Unmarshal(encodeEvent(hook), got); err != nil {
		t.Fatal(err)
	}
	if want := (&aurav1.HookEvent{Hook: "after_task_run", Time: timestamppb.New(now), Task: task}); !proto.Equal(got, want) {
		t.Fatalf("hook event %v, want %v", got, want)
	}
}

// everyField is an event with every field encodeEvent can write set.
func everyField(tb testing.TB) logEvent {
	tb.Helper()
	snap, err := proto.Marshal(&aurav1.Task{Id: "t1", Task: "demo/hello", Status: aurav1.TaskStatus_TASK_STATUS_RUNNING})
	if err != nil {
		tb.Fatal(err)
	}
	e := logEvent{TaskID: "t1", Type: "step.retrying", Time: time.Date(2026, 11, 28, 15, 4, 5, 6, time.UTC),
		Fields: eventFields{Status: int32(aurav1.TaskStatus_TASK_STATUS_RUNNING), Attempt: 2, Step: "fetch", Message: "boom",
			Stream: "stderr", Snapshot: snap, RetryDelay: 1500 * time.Millisecond, MaxAttempts: 3}}
	// A field added to eventFields must be given a value here, so
	// that the walk below sees it on the wire.
	f := reflect.ValueOf(e.Fields)
	for i := range f.NumField() {
		if f.Field(i).IsZero() {
			tb.Fatalf("everyField leaves eventFields.%s zero; give it a value", f.Type().Field(i).Name)
		}
	}
	return e
}

// Every field of TaskEvent and HookEvent is on the wire as served: one
// added to the .proto that encodeEvent (or AppendSequence) does not write
// fails here, by name, instead of being dropped silently.
func TestEventEncodingCoversEveryDescriptorField(t *testing.T) {
	full := everyField(t)
	hook := full
	hook.Hook, hook.Type = true, "after_task_run"
	for _, c := range []struct {
		in  logEvent
		msg proto.Message
	}{{full, &aurav1.TaskEvent{}}, {hook, &aurav1.HookEvent{}}} {
		b := AppendSequence(encodeEvent(&c.in), 42)
		if c.in.Hook {
			b = AppendNode(b, "node-a") // as a cluster's merged stream serves it
		}
		if err := proto.Unmarshal(b, c.msg); err != nil {
			t.Fatal(err)
		}
		m := c.msg.ProtoReflect()
		if len(m.GetUnknown()) > 0 {
			t.Errorf("%s: the encoding holds fields the descriptor does not know", m.Descriptor().FullName())
		}
		fields := m.Descriptor().Fields()
		for i := range fields.Len() {
			if fd := fields.Get(i); !m.Has(fd) {
				t.Errorf("%s.%s (field %d) is not encoded: write it in wire.go's encodeEvent", m.Descriptor().FullName(), fd.Name(), fd.Number())
			}
		}
	}
	// AppendSequence serves both messages with one field number.
	te := (&aurav1.TaskEvent{}).ProtoReflect().Descriptor().Fields().ByName("sequence")
	he := (&aurav1.HookEvent{}).ProtoReflect().Descriptor().Fields().ByName("sequence")
	if te.Number() != he.Number() || te.Kind() != protoreflect.Uint64Kind || he.Kind() != protoreflect.Uint64Kind {
		t.Fatalf("TaskEvent.sequence is %d %v, HookEvent.sequence %d %v: AppendSequence needs them the same uint64 field", te.Number(), te.Kind(), he.Number(), he.Kind())
	}
	var got aurav1.HookEvent
	if err := proto.Unmarshal(AppendSequence(encodeEvent(&hook), 42), &got); err != nil || got.GetSequence() != 42 {
		t.Fatalf("sequence %d, %v; want 42", got.GetSequence(), err)
	}
}

// marshalEvent is encodeEvent written with proto.Marshal, for the
// benchmark: the message is built and marshalled by reflection, and the
// stored snapshot's bytes are appended as the task field as they are.
func marshalEvent(e *logEvent) []byte {
	f := &e.Fields
	if e.Hook {
		b, _ := proto.Marshal(&aurav1.HookEvent{Hook: e.Type, Time: timestamppb.New(e.Time)})
		return protowire.AppendBytes(protowire.AppendTag(b, heTask, protowire.BytesType), f.Snapshot)
	}
	m := &aurav1.TaskEvent{TaskId: e.TaskID, Type: e.Type, Status: aurav1.TaskStatus(f.Status), Time: timestamppb.New(e.Time),
		Step: f.Step, Message: f.Message, Attempt: f.Attempt, Stream: f.Stream, MaxAttempts: f.MaxAttempts}
	if e.Type == "step.retrying" {
		m.RetryDelay = durationpb.New(f.RetryDelay)
	}
	b, _ := proto.Marshal(m)
	if f.Snapshot != nil {
		b = protowire.AppendBytes(protowire.AppendTag(b, teTask, protowire.BytesType), f.Snapshot)
	}
	return b
}

// BenchmarkEncodeEvent: the hand encoding against proto.Marshal, on the
// events a task's life records most (step events, a status change with its
// snapshot, a hook event).
func BenchmarkEncodeEvent(b *testing.B) {
	full := everyField(b)
	step := logEvent{TaskID: "0193a5c2-7b1e-7f00-8000-000000000001", Type: "step.succeeded", Time: full.Time,
		Fields: eventFields{Status: full.Fields.Status, Step: "fetch", Attempt: 1}}
	status := logEvent{TaskID: step.TaskID, Type: "task.running", Time: full.Time,
		Fields: eventFields{Status: full.Fields.Status, Snapshot: full.Fields.Snapshot}}
	hook := logEvent{TaskID: step.TaskID, Type: "after_task_run", Hook: true, Time: full.Time, Fields: eventFields{Snapshot: full.Fields.Snapshot}}
	events := []*logEvent{&step, &step, &status, &hook}
	for _, e := range append(events, &full) { // the two encode the same message
		var hand, refl proto.Message = &aurav1.TaskEvent{}, &aurav1.TaskEvent{}
		if e.Hook {
			hand, refl = &aurav1.HookEvent{}, &aurav1.HookEvent{}
		}
		if proto.Unmarshal(encodeEvent(e), hand) != nil || proto.Unmarshal(marshalEvent(e), refl) != nil || !proto.Equal(hand, refl) {
			b.Fatalf("%s: hand %v, proto.Marshal %v", e.Type, hand, refl)
		}
	}
	for _, enc := range []struct {
		name string
		f    func(*logEvent) []byte
	}{{"hand", encodeEvent}, {"proto.Marshal", marshalEvent}} {
		b.Run(enc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				for _, e := range events {
					enc.f(e)
				}
			}
		})
	}
}
