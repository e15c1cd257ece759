package server

import (
	"context"

	"google.golang.org/grpc/peer"

	"github.com/aura-dev/aura/internal/hooks"
)

// follower says who a streaming call is, for the hub's Snapshot (the web
// UI's Hooks page): its kind, principal, remote address and plan filter.
func follower(ctx context.Context, kind, plan string) hooks.Follower {
	f := hooks.Follower{Kind: kind, Name: principalName(ctx), Plan: plan}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		f.Peer = p.Addr.String()
	}
	return f
}

// Plan is the plan an interceptor asks about ("" for every plan), for the
// registry's Snapshot.
func (ic *remoteInterceptor) Plan() string { return ic.plan }
