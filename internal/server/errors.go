package server

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/aura-dev/aura/internal/execmgr"
	"github.com/aura-dev/aura/internal/hooks"
	"github.com/aura-dev/aura/internal/store"
	"github.com/aura-dev/aura/internal/validation"
)

// toStatus maps an error from the core to a gRPC status. It is the one
// place that knows the mapping. Internal errors are logged, and the caller
// sees no detail of them.
func toStatus(log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var (
		invalid     *execmgr.InvalidError
		badRequest  *validation.Error
		notFound    *execmgr.NotFoundError
		unavailable *execmgr.UnavailableError
		outOfRange  *hooks.OutOfRangeError
		queueFull   *execmgr.QueueFullError
	)
	switch {
	case errors.As(err, &invalid), errors.As(err, &badRequest):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.As(err, &notFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.As(err, &unavailable):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.As(err, &queueFull):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.As(err, &outOfRange):
		return status.Error(codes.OutOfRange, err.Error())
	case errors.Is(err, execmgr.ErrDraining):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, store.ErrFull):
		// Not accepted, and nothing changed: try later or elsewhere.
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, store.ErrGone):
		// This daemon can record nothing until it is restarted.
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	log.Error("internal error", "err", err)
	return status.Error(codes.Internal, "internal error")
}

func invalid(field, msg string) error {
	return status.Errorf(codes.InvalidArgument, "%s: %s", field, msg)
}
