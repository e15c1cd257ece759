package server

import (
	"context"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// Interrupts is what the InterruptService serves (interrupt.Runner).
type Interrupts interface {
	ListInterrupts(ctx context.Context, plan string) ([]*aurav1.InterruptRule, error)
}

// interruptService implements aura.v1.InterruptService.
type interruptService struct {
	aurav1.UnimplementedInterruptServiceServer
	d Deps
}

func (s *interruptService) ListInterrupts(ctx context.Context, req *aurav1.ListInterruptsRequest) (*aurav1.ListInterruptsResponse, error) {
	rules, err := s.d.Interrupts.ListInterrupts(ctx, req.GetPlan())
	if err != nil {
		return nil, toStatus(s.d.Logger, err)
	}
	return &aurav1.ListInterruptsResponse{Rules: rules}, nil
}
