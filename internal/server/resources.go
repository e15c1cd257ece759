package server

import (
	"context"
	"slices"

	"github.com/aura-dev/aura/internal/admission"
	"github.com/aura-dev/aura/internal/auth"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// firstWaiters is how many waiting task ids ListResources shows per resource.
const firstWaiters = 10

func (s *executionService) ListResources(ctx context.Context, _ *aurav1.ListResourcesRequest) (*aurav1.ListResourcesResponse, error) {
	details := s.d.Manager.Resources(firstWaiters)
	// A caller limited to some plans sees the counts but not the task ids,
	// which may belong to plans it may not look at.
	caller, authed := auth.FromContext(ctx)
	hideIDs := authed && caller.Scoped()
	out := &aurav1.ListResourcesResponse{Resources: make([]*aurav1.Resource, 0, len(details))}
	for _, d := range details {
		if hideIDs {
			d.Holders, d.Waiters = nil, nil
		}
		out.Resources = append(out.Resources, resourceProto(d))
	}
	s.d.Manager.InstanceStates(ctx, out.Resources)
	if authed && caller.Scoped() {
		// Last known states name their plans: only those it may look at.
		for _, r := range out.Resources {
			r.States = slices.DeleteFunc(r.States, func(st *aurav1.InstanceState) bool { return !caller.PlanAllowed(st.Plan) })
		}
	}
	return out, nil
}

func resourceProto(d admission.ResourceDetail) *aurav1.Resource {
	return &aurav1.Resource{
		Key: d.Key, Pool: d.Pool, Instance: d.Instance,
		Limit: int32(d.Limit), InUse: int32(d.InUse), Holders: d.Holders,
		Waiting: int32(d.Waiting), Waiters: d.Waiters,
	}
}
