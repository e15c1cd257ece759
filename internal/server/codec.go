package server

import (
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	gproto "google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/aura-dev/aura/internal/execmgr"
	"github.com/aura-dev/aura/internal/validation"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// encoded is a message already in wire form. The event log stores events
// encoded, so Stream and Subscribe forward those bytes (plus the sequence
// field) instead of decoding and re-encoding every event for every
// follower.
type encoded []byte

// withSequence is a stored event as sent: its bytes plus its sequence
// number (execmgr.AppendSequence, where events' wire form is kept).
func withSequence(data []byte, seq uint64) *encoded {
	e := encoded(execmgr.AppendSequence(data, seq))
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

// Unmarshal decodes as the proto codec does, except for a SubmitRequest
// whose inputs nest deeper than protobuf decodes (it gives up near 5,000
// levels of maps or lists). gRPC turns any decoding error into INTERNAL
// before the handler sees the request, so instead the request is decoded
// without those inputs, and they are replaced by a value nested one level
// past validation's limit: the manager's check then refuses the request
// with INVALID_ARGUMENT, "inputs: nested deeper than 32 levels", which is
// true of what was sent. Nothing runs it: every submission is validated
// before anything acts on it.
func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.CodecV2.Unmarshal(data, v)
	req, ok := v.(*aurav1.SubmitRequest)
	if err == nil || !ok {
		return err
	}
	b := data.Materialize()
	rest, deep := withoutDeepInputs(b)
	if !deep {
		return err
	}
	gproto.Reset(req)
	if gproto.Unmarshal(rest, req) != nil {
		return err
	}
	req.Inputs = nestedPastLimit()
	return nil
}

// submitInputsField is SubmitRequest.inputs' field number.
const submitInputsField = 2

// withoutDeepInputs returns an encoded SubmitRequest without its inputs
// field and true when those inputs nest more than validation.MaxInputsDepth levels;
// else false. It reads the wire format, so it works where proto.Unmarshal
// gives up, and stops descending past the limit.
func withoutDeepInputs(b []byte) ([]byte, bool) {
	var rest []byte
	deep := false
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, false
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil, false
		}
		field := b[:n+m]
		if num == submitInputsField && typ == protowire.BytesType {
			inner, _ := protowire.ConsumeBytes(b[n:])
			deep = deep || structNestsDeeper(inner, 1, validation.MaxInputsDepth)
		} else {
			rest = append(rest, field...)
		}
		b = b[n+m:]
	}
	return rest, deep
}

// structNestsDeeper reports whether an encoded google.protobuf.Struct at
// level depth nests past max. Struct: 1 = map entries {1: key, 2: Value}.
func structNestsDeeper(b []byte, depth, max int) bool {
	if depth > max {
		return true
	}
	return eachBytesField(b, 1, func(entry []byte) bool {
		return eachBytesField(entry, 2, func(value []byte) bool { return valueNestsDeeper(value, depth, max) })
	})
}

// valueNestsDeeper: google.protobuf.Value, 5 = Struct, 6 = ListValue.
func valueNestsDeeper(b []byte, depth, max int) bool {
	return eachBytesField(b, 5, func(s []byte) bool { return structNestsDeeper(s, depth+1, max) }) ||
		eachBytesField(b, 6, func(l []byte) bool { return listNestsDeeper(l, depth+1, max) })
}

// listNestsDeeper: google.protobuf.ListValue, 1 = Values.
func listNestsDeeper(b []byte, depth, max int) bool {
	if depth > max {
		return true
	}
	return eachBytesField(b, 1, func(value []byte) bool { return valueNestsDeeper(value, depth, max) })
}

// eachBytesField calls f on every length-delimited field numbered num in b
// until f returns true; malformed bytes end the walk (proto reports them).
func eachBytesField(b []byte, num protowire.Number, f func([]byte) bool) bool {
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return false
		}
		b = b[l:]
		if n == num && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return false
			}
			if f(v) {
				return true
			}
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(n, typ, b)
		if m < 0 {
			return false
		}
		b = b[m:]
	}
	return false
}

// nestedPastLimit is inputs nested one level more than validation.MaxInputsDepth.
func nestedPastLimit() *structpb.Struct {
	v := structpb.NewNullValue()
	for range validation.MaxInputsDepth {
		v = structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{v}})
	}
	return &structpb.Struct{Fields: map[string]*structpb.Value{"nested": v}}
}
