package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/aura-dev/aura/internal/auth"
	"github.com/aura-dev/aura/internal/cluster"
	"github.com/aura-dev/aura/internal/execmgr"
	"github.com/aura-dev/aura/internal/hooks"
	"github.com/aura-dev/aura/internal/store"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// Cluster is what the server needs of the cluster this node is in. Nil
// outside a cluster.
type Cluster struct {
	// Directory is the live set of nodes, this one included.
	Directory cluster.Directory
	// Conn returns a connection to the live node called name, dialled
	// with the node-to-node TLS settings. Calls on it carry whatever
	// credentials their context's outgoing metadata holds.
	Conn func(ctx context.Context, node string) (grpc.ClientConnInterface, error)
	// OwnCredentials returns ctx with the credentials this node presents
	// on calls made on its own behalf (asking another node's
	// interceptors); nil when the connection's TLS certificate is all it
	// presents.
	OwnCredentials func(ctx context.Context) context.Context
	// AuthOn says the nodes authenticate callers (--auth-tokens): a call
	// made on a caller's behalf must then carry the caller's own token.
	AuthOn bool
	// Interceptors publishes the interceptors connected to this node, so
	// that every node asks them (nil: they apply to this node only).
	Interceptors InterceptorPublisher
}

// InterceptorPublisher makes an interceptor connected here known to the
// other nodes.
type InterceptorPublisher interface {
	// Publish announces the interceptor with id; withdraw takes it back.
	Publish(id string, reg cluster.Interceptor) (withdraw func())
}

// rescanEvery is how often a cluster stream looks at the directory for
// nodes that joined or left.
const rescanEvery = 250 * time.Millisecond

// withNode is a stored hook event as a cluster stream sends it: its bytes,
// its sequence and the node it is of.
func withNode(data []byte, seq uint64, node string) *encoded {
	e := encoded(execmgr.AppendNode(execmgr.AppendSequence(data, seq), node))
	return &e
}

// subscribeCluster serves a Subscribe with cluster set.
func (s *hookService) subscribeCluster(req *aurav1.SubscribeRequest, stream aurav1.HookService_SubscribeServer, f hooks.Filter) error {
	c := s.d.Cluster
	if c == nil {
		return status.Error(codes.FailedPrecondition, "cluster: this aurad is not in a cluster (start it with --cluster-etcd, --node and --advertise); subscribe without cluster to follow this node")
	}
	self := c.Directory.Self()
	if nodes := req.GetNodes(); len(nodes) == 1 && nodes[0] == self {
		// A leg of another node's merged stream, or a client that wants
		// this node's events with their node named.
		return s.serveLeg(stream.Context(), req, f, self, func(m *legMsg) error { return stream.SendMsg(m.msg) })
	}
	m := &merger{s: s, c: c, req: req, stream: stream, filter: f, log: s.d.Logger,
		out: make(chan *legMsg, 64), pos: map[string]uint64{}, legs: map[string]*leg{}}
	return m.run()
}

// legMsg is one message of one node's part of a cluster stream: an event,
// a position mark, or the error that ended the part for good.
type legMsg struct {
	node string
	seq  uint64
	mark bool
	msg  any // *encoded or *aurav1.HookEvent
	err  error
}

// startAfter is where a leg of node starts: after the returned sequence,
// or live from now when nil.
func startAfter(req *aurav1.SubscribeRequest, node string) *uint64 {
	if v, ok := req.GetCursor().GetAfter()[node]; ok {
		return &v
	}
	if req.AfterSequence != nil {
		v := req.GetAfterSequence()
		return &v
	}
	return nil
}

// serveLeg sends this node's hook events matching f, each naming the
// node, starting with a position mark: where they start. A cursor or
// after_sequence the log no longer holds, or one past its end (the node's
// store was replaced), is OUT_OF_RANGE naming the node.
func (s *hookService) serveLeg(ctx context.Context, req *aurav1.SubscribeRequest, f hooks.Filter, self string, emit func(*legMsg) error) error {
	after := startAfter(req, self)
	last := s.d.Hub.Last()
	if after == nil {
		after = &last
	} else if *after > last {
		return status.Errorf(codes.OutOfRange, "node %s: cursor %d is past this node's last event %d: its event log is not the one the cursor was taken from (a new data directory?); resume without a cursor for node %s", self, *after, last, self)
	}
	mark := &aurav1.HookEvent{Sequence: *after, Node: self}
	if err := emit(&legMsg{node: self, seq: *after, mark: true, msg: mark}); err != nil {
		return err
	}
	err := s.d.Hub.Follow(ctx, after, f, func(ev store.Event) (bool, error) {
		return false, emit(&legMsg{node: self, seq: ev.Seq, msg: withNode(ev.Data, ev.Seq, self)})
	})
	var oor *hooks.OutOfRangeError
	switch {
	case errors.As(err, &oor):
		return status.Errorf(codes.OutOfRange, "node %s: %v", self, err)
	case errors.Is(err, hooks.ErrClosed):
		return status.Errorf(codes.Unavailable, "node %s is shutting down", self)
	}
	return toStatus(s.d.Logger, err)
}

// merger serves one merged stream: a leg per live node feeds out, and the
// merger sends what comes in, keeping each node's position.
type merger struct {
	s      *hookService
	c      *Cluster
	req    *aurav1.SubscribeRequest
	stream aurav1.HookService_SubscribeServer
	filter hooks.Filter
	log    *slog.Logger
	out    chan *legMsg

	// Only the merger's goroutine touches these.
	pos   map[string]uint64 // per node, the last sequence sent
	legs  map[string]*leg   // running legs
	first bool              // the first scan is done
}

// leg follows one node until its context ends, it fails for good, or the
// node leaves the directory.
type leg struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (m *merger) run() error {
	ctx, cancel := context.WithCancel(m.stream.Context())
	defer func() {
		cancel()
		for _, l := range m.legs {
			<-l.done
		}
	}()
	// Calls to other nodes carry the caller's own credentials: a node
	// serves a leg only to a caller it would serve itself.
	legCtx, err := forwardCredentials(ctx, m.c.AuthOn)
	if err != nil {
		return err
	}
	tick := time.NewTicker(rescanEvery)
	defer tick.Stop()
	m.scan(legCtx)
	for {
		select {
		case <-ctx.Done():
			return toStatus(m.log, context.Cause(ctx))
		case <-tick.C:
			m.scan(legCtx)
		case msg := <-m.out:
			if msg.err != nil {
				return msg.err
			}
			if err := m.send(msg); err != nil {
				return err
			}
		}
	}
}

// send passes one message on unless the node's position is already past
// it (a leg that was restarted replays from the position sent, so what an
// earlier leg had queued is not sent twice).
func (m *merger) send(msg *legMsg) error {
	p, known := m.pos[msg.node]
	if known && msg.seq <= p {
		return nil
	}
	if msg.mark && known {
		return nil
	}
	if err := m.stream.SendMsg(msg.msg); err != nil {
		return err
	}
	m.pos[msg.node] = msg.seq
	return nil
}

// scan starts a leg for every live node that has none (and is asked for),
// and lets the legs of nodes that left end.
func (m *merger) scan(ctx context.Context) {
	for name, l := range m.legs {
		select {
		case <-l.done:
			delete(m.legs, name)
		default:
		}
	}
	want := m.req.GetNodes()
	for _, n := range m.c.Directory.Nodes() {
		if len(want) > 0 && !slices.Contains(want, n.Name) {
			continue
		}
		if _, running := m.legs[n.Name]; running {
			continue
		}
		m.legs[n.Name] = m.startLeg(ctx, n.Name, m.legStart(n.Name))
	}
	m.first = true
}

// legStart is where a new leg of node starts: after the position this
// stream has sent; at its first start, as the request says; for a node
// that joined while the stream was open (or since the cursor was taken),
// from the start of its log, so nothing it did since joining is missed.
func (m *merger) legStart(node string) *uint64 {
	if p, ok := m.pos[node]; ok {
		return &p
	}
	if after := startAfter(m.req, node); after != nil {
		return after
	}
	if m.first || m.req.GetCursor() != nil {
		var zero uint64
		return &zero
	}
	return nil
}

func (m *merger) startLeg(ctx context.Context, node string, after *uint64) *leg {
	ctx, cancel := context.WithCancel(ctx)
	l := &leg{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		defer cancel()
		m.follow(ctx, node, after)
	}()
	return l
}

// follow runs one node's leg, opening it again after a broken stream
// (backing off while the node cannot be reached) from the last sequence
// it handed on, for as long as the node is live.
func (m *merger) follow(ctx context.Context, node string, after *uint64) {
	emit := func(msg *legMsg) error {
		select {
		case m.out <- msg:
			seq := msg.seq // a mark's is where the leg starts
			after = &seq
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	fail := func(err error) {
		select {
		case m.out <- &legMsg{node: node, err: err}:
		case <-ctx.Done():
		}
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		progressed := false
		err := m.attempt(ctx, node, after, func(msg *legMsg) error {
			progressed = true
			return emit(msg)
		})
		if ctx.Err() != nil {
			return
		}
		if fatal(err) {
			fail(legError(node, err))
			return
		}
		if _, live := m.c.Directory.Lookup(node); !live {
			m.log.Info("cluster hook stream: node left; following it again if it comes back", "node", node)
			return
		}
		if progressed {
			backoff = 100 * time.Millisecond
		}
		m.log.Debug("cluster hook stream: following the node again", "node", node, "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// attempt opens one stream of node's events after *after (live when nil)
// and hands on what it receives until it breaks.
func (m *merger) attempt(ctx context.Context, node string, after *uint64, emit func(*legMsg) error) error {
	req := &aurav1.SubscribeRequest{Hooks: m.req.GetHooks(), Plan: m.req.GetPlan(), Cluster: true, Nodes: []string{node}}
	if after != nil {
		req.Cursor = &aurav1.ClusterCursor{After: map[string]uint64{node: *after}}
	}
	if node == m.c.Directory.Self() {
		return m.s.serveLeg(ctx, req, m.filter, node, emit)
	}
	conn, err := m.c.Conn(ctx, node)
	if err != nil {
		return status.Errorf(codes.Unavailable, "node %s: %v", node, err)
	}
	stream, err := aurav1.NewHookServiceClient(conn).Subscribe(ctx, req)
	if err != nil {
		return err
	}
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return status.Errorf(codes.Unavailable, "node %s ended its stream", node)
		}
		if err != nil {
			return err
		}
		if ev.GetNode() != node {
			return status.Errorf(codes.FailedPrecondition, "node %s sent an event of node %q: is it an aurad of this version?", node, ev.GetNode())
		}
		if err := emit(&legMsg{node: node, seq: ev.GetSequence(), mark: ev.GetHook() == "" && ev.GetTask() == nil, msg: ev}); err != nil {
			return err
		}
	}
}

// fatal reports whether a leg's error ends the whole stream: the node
// refused the caller or the request, or cannot serve the position asked;
// retrying would not change its answer.
func fatal(err error) bool {
	switch status.Code(err) {
	case codes.OutOfRange, codes.PermissionDenied, codes.Unauthenticated, codes.InvalidArgument,
		codes.FailedPrecondition, codes.Unimplemented:
		return true
	}
	return false
}

// legError is a leg's error as the merged stream's caller sees it: its
// code, and a message naming the node.
func legError(node string, err error) error {
	st := status.Convert(err)
	msg := st.Message()
	if !strings.HasPrefix(msg, "node "+node+":") {
		msg = fmt.Sprintf("node %s: %s", node, msg)
	}
	return status.Error(st.Code(), msg)
}

// forwardCredentials returns ctx with the caller's bearer token as
// outgoing metadata, for calls made on the caller's behalf to other nodes.
// A caller known only by its client certificate cannot be forwarded: this
// node cannot present the caller's certificate, and presenting its own
// would make the other node authorize this node instead of the caller.
func forwardCredentials(ctx context.Context, authOn bool) (context.Context, error) {
	md := metadata.MD{}
	if authz := metadata.ValueFromIncomingContext(ctx, "authorization"); len(authz) > 0 {
		md["authorization"] = authz
	} else if p, ok := auth.FromContext(ctx); ok && authOn {
		return nil, status.Errorf(codes.FailedPrecondition,
			"cluster: a caller known by its client certificate (%s) cannot be followed on other nodes: each node must authorize the caller itself; authenticate with a bearer token (aurad --auth-tokens), or subscribe to each node", p.Name)
	}
	return metadata.NewOutgoingContext(ctx, md), nil
}

// interceptorIDs hands out ids for interceptors connected to this node:
// unique across restarts of the node (they start with the process's start
// time), so an id another node read before a restart never names a new
// interceptor.
type interceptorIDs struct {
	mu     sync.Mutex
	prefix string
	next   uint64
}

func (g *interceptorIDs) id() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.prefix == "" {
		g.prefix = fmt.Sprintf("%x", time.Now().UnixNano())
	}
	g.next++
	return fmt.Sprintf("%s-%d", g.prefix, g.next)
}
