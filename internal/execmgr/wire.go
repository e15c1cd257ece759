package execmgr

import (
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/aura-dev/aura/internal/store"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// The wire form of events, in one place: encodeEvent writes an event as its
// TaskEvent or HookEvent before it is stored (the store keeps the bytes it
// is given and never looks inside), and AppendSequence adds the
// sequence number when it is served (Stream, Subscribe), so a follower is
// sent the stored bytes without decoding and re-encoding them.
//
// Events are encoded by hand. They are small, always the same shape, and
// made for every step of every task, where proto.Marshal's reflection cost
// more than the rest of recording them (BenchmarkEncodeEvent compares the
// two). Field numbers come from the generated descriptors, and wire_test.go
// walks the TaskEvent and HookEvent descriptors: a field added to the
// .proto and not encoded here fails it instead of being dropped.
var (
	teSequence = fieldNumber(&aurav1.TaskEvent{}, "sequence")
	teTaskID   = fieldNumber(&aurav1.TaskEvent{}, "task_id")
	teType     = fieldNumber(&aurav1.TaskEvent{}, "type")
	teStatus   = fieldNumber(&aurav1.TaskEvent{}, "status")
	teTime     = fieldNumber(&aurav1.TaskEvent{}, "time")
	teStep     = fieldNumber(&aurav1.TaskEvent{}, "step")
	teMessage  = fieldNumber(&aurav1.TaskEvent{}, "message")
	teTask     = fieldNumber(&aurav1.TaskEvent{}, "task")
	teAttempt  = fieldNumber(&aurav1.TaskEvent{}, "attempt")
	teStream   = fieldNumber(&aurav1.TaskEvent{}, "stream")
	teDelay    = fieldNumber(&aurav1.TaskEvent{}, "retry_delay")
	teMaxAtt   = fieldNumber(&aurav1.TaskEvent{}, "max_attempts")
	heHook     = fieldNumber(&aurav1.HookEvent{}, "hook")
	heTask     = fieldNumber(&aurav1.HookEvent{}, "task")
	heTime     = fieldNumber(&aurav1.HookEvent{}, "time")
	heNode     = fieldNumber(&aurav1.HookEvent{}, "node")
	tsSeconds  = fieldNumber(&timestamppb.Timestamp{}, "seconds")
	tsNanos    = fieldNumber(&timestamppb.Timestamp{}, "nanos")
	duSeconds  = fieldNumber(&durationpb.Duration{}, "seconds")
	duNanos    = fieldNumber(&durationpb.Duration{}, "nanos")
)

func fieldNumber(m proto.Message, name protoreflect.Name) protowire.Number {
	return m.ProtoReflect().Descriptor().Fields().ByName(name).Number()
}

// AppendSequence appends the sequence number to an event encodeEvent
// wrote, whose own bytes leave it out (it is assigned when the event is
// stored). TaskEvent and HookEvent give it the same field number, which
// wire_test.go checks, so one function serves both.
func AppendSequence(data []byte, seq uint64) []byte {
	b := make([]byte, 0, len(data)+11)
	b = append(b, data...)
	b = protowire.AppendTag(b, teSequence, protowire.VarintType)
	return protowire.AppendVarint(b, seq)
}

// AppendNode appends the node a hook event is of to its served bytes (after
// AppendSequence): a cluster's merged hook stream names each event's node.
// It is not stored, since a node's log holds only its own events.
func AppendNode(data []byte, node string) []byte {
	return appendString(data, heNode, node)
}

// logEvent is an event of a task's log as a run describes it, before it is encoded.
type logEvent struct {
	TaskID, Type string
	Hook         bool
	Time         time.Time
	Fields       eventFields
}

// eventFields are the parts of an event that only its encoding carries.
type eventFields struct {
	Status, Attempt       int32
	Step, Message, Stream string
	Snapshot              []byte // the task as encoded at a status change; shared, read-only
	// On step.retrying: the delay before the next attempt, and the step's
	// max attempts.
	RetryDelay  time.Duration
	MaxAttempts int32
}

// stored is e as the store keeps it: encoded.
func (e *logEvent) stored() store.Event {
	return store.Event{TaskID: e.TaskID, Type: e.Type, Hook: e.Hook, Time: e.Time, Data: encodeEvent(e)}
}

// encodeEvent encodes e: a HookEvent when e.Hook, else a TaskEvent.
func encodeEvent(e *logEvent) []byte {
	f := &e.Fields
	if e.Hook {
		return encodeHookEvent(e.Type, e.Time, f.Snapshot)
	}
	b := make([]byte, 0, 96+len(f.Message)+len(f.Snapshot))
	b = appendString(b, teTaskID, e.TaskID)
	b = appendString(b, teType, e.Type)
	b = appendVarint(b, teStatus, uint64(f.Status))
	b = appendTime(b, teTime, e.Time)
	b = appendString(b, teStep, f.Step)
	b = appendString(b, teMessage, f.Message)
	if f.Snapshot != nil {
		b = protowire.AppendTag(b, teTask, protowire.BytesType)
		b = protowire.AppendBytes(b, f.Snapshot)
	}
	b = appendVarint(b, teAttempt, uint64(uint32(f.Attempt)))
	b = appendString(b, teStream, f.Stream)
	if e.Type == "step.retrying" {
		// A zero delay is still sent: "retrying at once" is news too.
		var d [24]byte
		m := appendVarint(d[:0], duSeconds, uint64(int64(f.RetryDelay/time.Second)))
		m = appendVarint(m, duNanos, uint64(int64(f.RetryDelay%time.Second)))
		b = protowire.AppendTag(b, teDelay, protowire.BytesType)
		b = protowire.AppendBytes(b, m)
	}
	return appendVarint(b, teMaxAtt, uint64(uint32(f.MaxAttempts)))
}

func encodeHookEvent(point string, now time.Time, task []byte) []byte {
	b := make([]byte, 0, 48+len(task))
	b = appendString(b, heHook, point)
	b = protowire.AppendTag(b, heTask, protowire.BytesType)
	b = protowire.AppendBytes(b, task)
	return appendTime(b, heTime, now)
}

// appendString writes a proto3 string field (omitted when empty; invalid
// UTF-8, which a decoder would refuse, is replaced).
func appendString(b []byte, n protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	b = protowire.AppendTag(b, n, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendVarint(b []byte, n protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, n, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendTime(b []byte, n protowire.Number, t time.Time) []byte {
	var ts [24]byte
	m := appendVarint(ts[:0], tsSeconds, uint64(t.Unix()))
	m = appendVarint(m, tsNanos, uint64(t.Nanosecond()))
	b = protowire.AppendTag(b, n, protowire.BytesType)
	return protowire.AppendBytes(b, m)
}
