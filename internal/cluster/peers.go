package cluster

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// PeersParams configure Peers.
type PeersParams struct {
	Directory Directory
	// TLS is how this node dials the others: set exactly when it serves
	// TLS itself (a cluster's nodes serve alike), with the CA that
	// verifies the peers' certificates and, when the peers ask for client
	// certificates (--client-ca), this node's own. Nil dials plaintext.
	TLS *tls.Config
	// PruneEvery is how often connections to nodes that left are closed
	// (default 2s).
	PruneEvery time.Duration
	Logger     *slog.Logger
}

// Peers is the pool of gRPC connections from this node to the other live
// nodes: one per node, dialed on first use at the address the node
// publishes, and closed once the node leaves the directory (or publishes
// another address). Safe for concurrent use.
type Peers struct {
	// Immutable after NewPeers.
	dir   Directory
	creds credentials.TransportCredentials
	every time.Duration
	log   *slog.Logger

	mu    sync.Mutex // guards conns
	conns map[string]*peerConn

	stop    chan struct{}
	done    chan struct{}
	started bool // Start ran; accessed only by Start and Shutdown
}

type peerConn struct {
	addr string
	cc   *grpc.ClientConn
}

// NodeDownError says a call needs a node that is not live.
type NodeDownError struct{ Node string }

func (e *NodeDownError) Error() string {
	return fmt.Sprintf("node %s is not live in the cluster (its etcd lease lapsed, or it never joined)", e.Node)
}

// NewPeers builds the pool; Start prunes it, Shutdown closes it.
func NewPeers(p PeersParams) *Peers {
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	if p.PruneEvery <= 0 {
		p.PruneEvery = 2 * time.Second
	}
	creds := insecure.NewCredentials()
	if p.TLS != nil {
		creds = credentials.NewTLS(p.TLS.Clone())
	}
	return &Peers{dir: p.Directory, creds: creds, every: p.PruneEvery, log: p.Logger,
		conns: map[string]*peerConn{}, stop: make(chan struct{}), done: make(chan struct{})}
}

// Conn returns the connection to the live node called name, dialing it
// when there is none yet (gRPC connects lazily: a node that does not
// answer fails the call, not this).
func (p *Peers) Conn(name string) (*grpc.ClientConn, error) {
	n, ok := p.dir.Lookup(name)
	if !ok || n.Address == "" {
		return nil, &NodeDownError{Node: name}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.conns[name]; c != nil {
		if c.addr == n.Address {
			return c.cc, nil
		}
		p.closeLocked(name, "address changed")
	}
	cc, err := grpc.NewClient("passthrough:///"+n.Address, grpc.WithTransportCredentials(p.creds))
	if err != nil {
		return nil, fmt.Errorf("node %s at %s: %w", name, n.Address, err)
	}
	p.conns[name] = &peerConn{addr: n.Address, cc: cc}
	return cc, nil
}

// changes is a Directory that says when its nodes change (Membership).
type changes interface{ Changed() <-chan struct{} }

// Start closes the connections of nodes that left: as soon as the
// directory says it changed, when it can, and every PruneEvery anyway.
func (p *Peers) Start() {
	p.started = true
	go func() {
		defer close(p.done)
		t := time.NewTicker(p.every)
		defer t.Stop()
		for {
			var changed <-chan struct{}
			if c, ok := p.dir.(changes); ok {
				changed = c.Changed()
			}
			select {
			case <-p.stop:
				return
			case <-t.C:
			case <-changed:
			}
			p.prune()
		}
	}()
}

func (p *Peers) prune() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, c := range p.conns {
		if n, ok := p.dir.Lookup(name); !ok || n.Address != c.addr {
			p.closeLocked(name, "left the cluster")
		}
	}
}

func (p *Peers) closeLocked(name, why string) {
	c := p.conns[name]
	delete(p.conns, name)
	if err := c.cc.Close(); err != nil {
		p.log.Debug("closing a peer connection", "node", name, "err", err)
	}
	p.log.Info("peer connection closed", "node", name, "address", c.addr, "reason", why)
}

// Open is how many connections the pool holds.
func (p *Peers) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Shutdown stops pruning (when started) and closes every connection.
// Calls through the pool still open end with CANCELLED.
func (p *Peers) Shutdown() {
	close(p.stop)
	if p.started {
		<-p.done
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for name := range p.conns {
		p.closeLocked(name, "shutdown")
	}
}
