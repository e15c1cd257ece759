package server

import (
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/aura-dev/aura/internal/validation"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// TestCodecDeepInputsAreInvalidNotInternal: inputs nested past what
// protobuf decodes still reach validation, which refuses them with
// INVALID_ARGUMENT; the rest of the request is decoded as sent.
func TestCodecDeepInputsAreInvalidNotInternal(t *testing.T) {
	for _, depth := range []int{10, 33, 6000} {
		inner := structpb.NewStringValue("x")
		for range depth - 1 {
			inner = structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"k": inner}})
		}
		sent := &aurav1.SubmitRequest{Task: "p/t", Priority: 7, Labels: map[string]string{"a": "b"},
			Inputs: &structpb.Struct{Fields: map[string]*structpb.Value{"deep": inner}}}
		b, err := proto.MarshalOptions{}.Marshal(sent)
		if err != nil {
			t.Fatal(err)
		}
		got := &aurav1.SubmitRequest{}
		if err := newCodec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, got); err != nil {
			t.Fatalf("depth %d: Unmarshal: %v", depth, err)
		}
		if got.Task != "p/t" || got.Priority != 7 || got.Labels["a"] != "b" {
			t.Errorf("depth %d: the other fields were not kept: %v", depth, got)
		}
		err = toStatus(slog.Default(), validation.Request(got))
		if depth <= validation.MaxInputsDepth {
			if err != nil {
				t.Errorf("depth %d: %v", depth, err)
			}
			continue
		}
		if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "inputs: nested deeper than 32 levels") {
			t.Errorf("depth %d: %v, want INVALID_ARGUMENT inputs: nested deeper than 32 levels", depth, err)
		}
	}
	// Malformed bytes stay a decoding error.
	if err := newCodec().Unmarshal(mem.BufferSlice{mem.SliceBuffer([]byte{0x12, 0x05, 0x0a})}, &aurav1.SubmitRequest{}); err == nil {
		t.Error("truncated inputs decoded without an error")
	}
}
