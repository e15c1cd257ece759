package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/aura-dev/aura/internal/cluster"
	"github.com/aura-dev/aura/internal/hooks"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// connected holds the interceptors connected to this node by id, for
// AskInterceptor.
type connected struct {
	ids interceptorIDs
	mu  sync.RWMutex
	by  map[string]*remoteInterceptor
}

func (c *connected) add(ic *remoteInterceptor) (id string, remove func()) {
	id = c.ids.id()
	c.mu.Lock()
	if c.by == nil {
		c.by = map[string]*remoteInterceptor{}
	}
	c.by[id] = ic
	c.mu.Unlock()
	return id, func() {
		c.mu.Lock()
		delete(c.by, id)
		c.mu.Unlock()
	}
}

func (c *connected) get(id string) *remoteInterceptor {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.by[id]
}

// AskInterceptor is another node asking an interceptor connected here
// about a task about to run there. The answer is the interceptor's own; a
// call it cannot answer (gone, no answer in time) is an error, and the
// asking node applies the interceptor's fail_open to it, as it would here.
func (s *hookService) AskInterceptor(ctx context.Context, req *aurav1.AskInterceptorRequest) (*aurav1.InterceptDecision, error) {
	ic := s.conn.get(req.GetInterceptor())
	if ic == nil {
		return nil, status.Errorf(codes.NotFound, "interceptor: no interceptor %q is connected to this node (it disconnected)", req.GetInterceptor())
	}
	br := hooks.NewBeforeRunRequest(req.GetTask())
	if !ic.Matches(br) {
		return &aurav1.InterceptDecision{Allow: true}, nil
	}
	// The caller's deadline is the interceptor's timeout as the asking
	// node counts it; this node's own bound is the same timeout.
	ctx, cancel := context.WithTimeout(ctx, ic.timeout)
	defer cancel()
	var resp hooks.BeforeRunResponse
	if err := ic.Decide(ctx, br, &resp); err != nil {
		if ctx.Err() != nil {
			return nil, status.Errorf(codes.DeadlineExceeded, "interceptor %s: %v", ic.name, err)
		}
		return nil, status.Errorf(codes.Unavailable, "interceptor %s: %v", ic.name, err)
	}
	return &aurav1.InterceptDecision{Allow: !resp.Denied, Reason: resp.Reason}, nil
}

// PeerInterceptors keeps, in a node's hook registry, one entry for every
// interceptor connected to another node, so that before_task_run here
// asks them too.
type PeerInterceptors struct {
	reg  *hooks.Registry
	c    *Cluster
	mu   sync.Mutex // guards have
	have map[string]peerEntry
}

type peerEntry struct {
	ic     cluster.Interceptor
	remove func()
}

// NewPeerInterceptors returns the set, empty; Set fills it.
func NewPeerInterceptors(reg *hooks.Registry, c *Cluster) *PeerInterceptors {
	return &PeerInterceptors{reg: reg, c: c, have: map[string]peerEntry{}}
}

// Set makes the registry's peer interceptors exactly all.
func (p *PeerInterceptors) Set(all []cluster.Interceptor) {
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := map[string]bool{}
	for _, ic := range all {
		key := ic.Key()
		seen[key] = true
		if e, ok := p.have[key]; ok && e.ic == ic {
			continue
		} else if ok {
			e.remove()
		}
		p.have[key] = peerEntry{ic: ic, remove: p.reg.AddInterceptor(&peerInterceptor{ic: ic, c: p.c})}
	}
	for key, e := range p.have {
		if !seen[key] {
			e.remove()
			delete(p.have, key)
		}
	}
}

// Close removes every peer interceptor from the registry.
func (p *PeerInterceptors) Close() { p.Set(nil) }

// peerInterceptor is an interceptor connected to another node, asked
// through that node's AskInterceptor.
type peerInterceptor struct {
	ic cluster.Interceptor
	c  *Cluster
}

func (pi *peerInterceptor) Name() string { return pi.ic.Name }
func (pi *peerInterceptor) Timeout() time.Duration {
	return pi.ic.Timeout
}
func (pi *peerInterceptor) FailOpen() bool { return pi.ic.FailOpen }
func (pi *peerInterceptor) Plan() string   { return pi.ic.Plan }
func (pi *peerInterceptor) Node() string   { return pi.ic.Node }
func (pi *peerInterceptor) Matches(req *hooks.BeforeRunRequest) bool {
	return pi.ic.Plan == "" || req.Plan == pi.ic.Plan
}

// Decide asks the interceptor through its node, with this node's own
// credentials (no client is calling: the task is this node's).
func (pi *peerInterceptor) Decide(ctx context.Context, req *hooks.BeforeRunRequest, resp *hooks.BeforeRunResponse) error {
	conn, err := pi.c.Conn(ctx, pi.ic.Node)
	if err != nil {
		return fmt.Errorf("interceptor %s on node %s: %w", pi.ic.Name, pi.ic.Node, err)
	}
	if pi.c.OwnCredentials != nil {
		ctx = pi.c.OwnCredentials(ctx)
	}
	d, err := aurav1.NewHookServiceClient(conn).AskInterceptor(ctx, &aurav1.AskInterceptorRequest{Interceptor: pi.ic.ID, Task: req.Task})
	if err != nil {
		return fmt.Errorf("interceptor %s on node %s: %s", pi.ic.Name, pi.ic.Node, status.Convert(err).Message())
	}
	if !d.GetAllow() {
		resp.Deny(d.GetReason())
	}
	return nil
}
