package server

import (
	"context"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// Nodes is what the ClusterService serves: the daemon's view of its
// cluster, or of itself alone.
type Nodes interface {
	ListNodes(ctx context.Context) (*aurav1.ListNodesResponse, error)
}

// clusterService implements aura.v1.ClusterService.
type clusterService struct {
	aurav1.UnimplementedClusterServiceServer
	d Deps
}

func (s *clusterService) ListNodes(ctx context.Context, _ *aurav1.ListNodesRequest) (*aurav1.ListNodesResponse, error) {
	out, err := s.d.Nodes.ListNodes(ctx)
	return out, toStatus(s.d.Logger, err)
}
