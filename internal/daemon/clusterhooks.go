package daemon

import (
	"context"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/aura-dev/aura/internal/cluster"
	"github.com/aura-dev/aura/internal/server"
)

// clusterHooksParams are what makes hooks cluster-wide on a node.
type clusterHooksParams struct {
	Etcd      *clientv3.Client
	Directory cluster.Directory
	TTL       time.Duration
	// Conn reaches another live node (node-to-node TLS).
	Conn func(ctx context.Context, node string) (grpc.ClientConnInterface, error)
	// Token is the bearer token this node presents on calls made on its
	// own behalf (--cluster-token-file); "" presents none.
	Token string
}

// startClusterHooks makes this node's hooks cluster-wide: the interceptors
// connected here are published in etcd for the other nodes to ask, and
// theirs are kept in this node's registry. It returns what the server
// needs for the merged hook stream and AskInterceptor.
func (d *Daemon) startClusterHooks(p clusterHooksParams) *server.Cluster {
	c := &server.Cluster{Directory: p.Directory, Conn: p.Conn, AuthOn: d.cfg.Auth.Registry != nil}
	if p.Token != "" {
		md := metadata.Pairs("authorization", "Bearer "+p.Token)
		c.OwnCredentials = func(ctx context.Context) context.Context { return metadata.NewOutgoingContext(ctx, md) }
	}
	board := cluster.NewInterceptorBoard(p.Etcd, p.Directory.Self(), p.TTL, d.log)
	c.Interceptors = board
	peers := server.NewPeerInterceptors(d.Hooks, c)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { board.Run(ctx, peers.Set) })
	// Stopped after the gRPC server (parts stop in reverse): no
	// Intercept stream publishes any more, and the board's lease is
	// revoked so the other nodes stop asking this node's interceptors at
	// once.
	d.parts.add("cluster hooks", func(context.Context) {
		cancel()
		wg.Wait()
		peers.Close()
	})
	return c
}

// clusterHooks wires startClusterHooks on the node's membership: nil
// outside a cluster.
func (d *Daemon) clusterHooks() *server.Cluster {
	if d.cluster == nil {
		return nil
	}
	m := d.cluster.Membership
	// Calls go over the routing's connections to the other nodes, with
	// this node's own token (--cluster-token-file) where it asks in its
	// own name; buildServer, which calls this, runs after startRouting.
	conn := func(_ context.Context, n string) (grpc.ClientConnInterface, error) { return d.routing.peers.Conn(n) }
	return d.startClusterHooks(clusterHooksParams{Etcd: m.Client(), Directory: m, TTL: m.TTL(), Conn: conn, Token: d.cfg.Routing.Token})
}
