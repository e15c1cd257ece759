package server

import (
	"context"
	"log/slog"

	"google.golang.org/grpc"

	"github.com/aura-dev/aura/internal/validation"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// ValidationUnaryInterceptor refuses an invalid request with
// INVALID_ARGUMENT naming the field before the handler runs.
func ValidationUnaryInterceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := validateRequest(req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// ValidationStreamInterceptor checks every message a client streams in,
// ending the stream at the first invalid one. SubmitStream's requests are
// left to the manager (see validateRequest), which answers an invalid one
// in its place and goes on, as the API promises.
func ValidationStreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if info.FullMethod == aurav1.ExecutionService_SubmitStream_FullMethodName {
		return handler(srv, ss)
	}
	return handler(srv, &validatedStream{ServerStream: ss})
}

type validatedStream struct {
	grpc.ServerStream
}

func (s *validatedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return validateRequest(m)
}

// validateRequest applies package validation's rules to a request, as a
// gRPC status. A SubmitRequest passes untouched: the manager checks every
// submission with the same rules (in-process ones too), so checking it
// here as well would only run them twice.
func validateRequest(msg any) error {
	if _, ok := msg.(*aurav1.SubmitRequest); ok {
		return nil
	}
	return toStatus(slog.Default(), validation.Request(msg))
}
