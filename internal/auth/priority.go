package auth

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// DefaultMaxPriority is the highest priority a caller may give a
// submission unless the tokens file or Options.MaxPriority says otherwise.
// Priority orders only one principal's own tasks (and breaks ties between
// principals holding equal shares), so the cap keeps a caller from making
// its every task outrank everyone else's at a tie.
const DefaultMaxPriority = 1000

// maxPriority is the highest priority p may submit with under o.
func (o Options) maxPriority(p *Principal) int32 {
	if p.maxPriority != nil {
		return *p.maxPriority
	}
	switch {
	case o.MaxPriority > 0:
		return o.MaxPriority
	case o.MaxPriority < 0:
		return 0
	}
	return DefaultMaxPriority
}

// checkPriority refuses a submission whose priority is above what its
// principal may set. Unlike other refusals it says why: the caller knows
// its own name and the number it sent, and can fix the request.
func (g *Guard) checkPriority(p *Principal, msg any) error {
	m, ok := msg.(*aurav1.SubmitRequest)
	if !ok {
		return nil
	}
	limit := g.opts.maxPriority(p)
	if m.GetPriority() <= limit {
		return nil
	}
	g.warn("call refused: priority above the principal's cap", "principal", p.Name, "priority", m.GetPriority(), "max_priority", limit)
	return status.Errorf(codes.PermissionDenied,
		"priority: %d is above %d, the highest priority principal %q may set (max_priority in the tokens file, or aurad --max-priority); submit with a lower priority",
		m.GetPriority(), limit, p.Name)
}
