package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
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
	conns := newNodeConns(m, d.cfg.Cluster.PeerTLS)
	d.parts.add("cluster hook connections", func(context.Context) { conns.close() })
	return d.startClusterHooks(clusterHooksParams{Etcd: m.Client(), Directory: m, TTL: m.TTL(), Conn: conns.conn, Token: d.cfg.Cluster.Token})
}

// nodeConns holds one connection per other node, dialled on first use at
// the address the node publishes and dialled again when it publishes
// another.
type nodeConns struct {
	dir   cluster.Directory
	creds credentials.TransportCredentials

	mu    sync.Mutex
	conns map[string]*nodeConn
}

type nodeConn struct {
	addr string
	cc   *grpc.ClientConn
}

func newNodeConns(dir cluster.Directory, tlsCfg *tls.Config) *nodeConns {
	creds := insecure.NewCredentials()
	if tlsCfg != nil {
		creds = credentials.NewTLS(tlsCfg.Clone())
	}
	return &nodeConns{dir: dir, creds: creds, conns: map[string]*nodeConn{}}
}

func (n *nodeConns) conn(_ context.Context, node string) (grpc.ClientConnInterface, error) {
	info, ok := n.dir.Lookup(node)
	if !ok || info.Address == "" {
		return nil, fmt.Errorf("node %s is not live in the cluster", node)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if c := n.conns[node]; c != nil {
		if c.addr == info.Address {
			return c.cc, nil
		}
		_ = c.cc.Close()
		delete(n.conns, node)
	}
	cc, err := grpc.NewClient("passthrough:///"+info.Address, grpc.WithTransportCredentials(n.creds))
	if err != nil {
		return nil, fmt.Errorf("node %s at %s: %w", node, info.Address, err)
	}
	n.conns[node] = &nodeConn{addr: info.Address, cc: cc}
	return cc, nil
}

func (n *nodeConns) close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for node, c := range n.conns {
		_ = c.cc.Close()
		delete(n.conns, node)
	}
}
