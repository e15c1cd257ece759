package server

import (
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// encoded is a message already in wire form. The event log stores events
// encoded, so Stream and Subscribe forward those bytes (plus the sequence
// field) instead of decoding and re-encoding every event for every
// follower.
type encoded []byte

// withSequence appends field 1 (sequence, a varint in both TaskEvent and
// HookEvent) to a stored event, whose own encoding leaves it out.
func withSequence(data []byte, seq uint64) *encoded {
	b := make([]byte, 0, len(data)+11)
	b = append(b, data...)
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, seq)
	e := encoded(b)
	return &e
}

// codec is the proto codec, passing encoded messages through as they are.
type codec struct{ encoding.CodecV2 }

func newCodec() codec { return codec{encoding.GetCodecV2(proto.Name)} }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if e, ok := v.(*encoded); ok {
		return mem.BufferSlice{mem.SliceBuffer(*e)}, nil
	}
	return c.CodecV2.Marshal(v)
}
