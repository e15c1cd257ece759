package execmgr

import (
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/timestamppb"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// Events are encoded by hand. They are small, always the same shape, and
// made for every step of every task, where proto.Marshal's reflection cost
// more than the rest of recording them. Field numbers come from the
// generated descriptors, and wire_test.go checks that the bytes decode to
// exactly the message proto.Marshal would have encoded.
var (
	teTaskID  = fieldNumber(&aurav1.TaskEvent{}, "task_id")
	teType    = fieldNumber(&aurav1.TaskEvent{}, "type")
	teStatus  = fieldNumber(&aurav1.TaskEvent{}, "status")
	teTime    = fieldNumber(&aurav1.TaskEvent{}, "time")
	teStep    = fieldNumber(&aurav1.TaskEvent{}, "step")
	teMessage = fieldNumber(&aurav1.TaskEvent{}, "message")
	teAttempt = fieldNumber(&aurav1.TaskEvent{}, "attempt")
	teStream  = fieldNumber(&aurav1.TaskEvent{}, "stream")
	heHook    = fieldNumber(&aurav1.HookEvent{}, "hook")
	heTime    = fieldNumber(&aurav1.HookEvent{}, "time")
	tsSeconds = fieldNumber(&timestamppb.Timestamp{}, "seconds")
	tsNanos   = fieldNumber(&timestamppb.Timestamp{}, "nanos")
)

// taskEvent is what encodeTaskEvent writes.
type taskEvent struct {
	taskID, typ, step, message, stream string
	status                             aurav1.TaskStatus
	attempt                            int32
	time                               time.Time
	task                               []byte // an encoded Task, or nil
}

func encodeTaskEvent(e taskEvent) []byte {
	b := make([]byte, 0, 96+len(e.message)+len(e.task))
	b = appendString(b, teTaskID, e.taskID)
	b = appendString(b, teType, e.typ)
	b = appendVarint(b, teStatus, uint64(e.status))
	b = appendTime(b, teTime, e.time)
	b = appendString(b, teStep, e.step)
	b = appendString(b, teMessage, e.message)
	if e.task != nil {
		b = protowire.AppendTag(b, taskEventTaskField, protowire.BytesType)
		b = protowire.AppendBytes(b, e.task)
	}
	b = appendVarint(b, teAttempt, uint64(e.attempt))
	return appendString(b, teStream, e.stream)
}

func encodeHookEvent(point string, now time.Time, task []byte) []byte {
	b := make([]byte, 0, 48+len(task))
	b = appendString(b, heHook, point)
	b = protowire.AppendTag(b, hookEventTaskField, protowire.BytesType)
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
