package cluster

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// ForwardedByKey is the metadata a node sets on a call it forwards, with
// its own name. A node answers such a call itself and never forwards it
// again, so no call goes round the cluster. It grants nothing: the call is
// authenticated and authorized from the caller's own credentials, exactly
// as a client's, and a client that sets it only keeps its call on the
// node it called.
const ForwardedByKey = "aura-forwarded-by"

// ForwarderParams configure a Forwarder.
type ForwarderParams struct {
	Directory Directory
	Peers     *Peers
	// SubmitTags returns a submission's resource tags as rendered
	// (execmgr.Manager.SubmitTags); an error leaves the submission to this
	// node, which refuses it with the usual code.
	SubmitTags func(*aurav1.SubmitRequest) ([]string, error)
	// Caller names who is calling (the principal the auth guard attached)
	// and says whether it is anonymous: no credentials, authentication
	// off. Nil: every caller is anonymous.
	Caller func(ctx context.Context) (name string, anonymous bool)
	// Validate checks a request as the validation interceptor would
	// (validation.Request), for the calls this node answers by asking the
	// others: that interceptor runs after this one. Nil checks nothing.
	Validate func(any) error
	// FanOutTimeout bounds each node's answer to a cluster ListTasks or
	// GetStats (default 5s); a node that takes longer is named in
	// unreachable_nodes.
	FanOutTimeout time.Duration
	Logger        *slog.Logger
}

// Forwarder makes one node answer for the cluster. As gRPC interceptors
// (installed after authentication and authorization, so this node first
// accepts the call as it would any client's): GetTask, CancelTask and
// Stream with a task id of another node go to that node; ListTasks and
// GetStats ask every live node and merge; Submit goes where Place says.
// Every call to another node carries the caller's own bearer token and
// ForwardedByKey.
type Forwarder struct {
	// Immutable after NewForwarder.
	dir      Directory
	peers    *Peers
	tags     func(*aurav1.SubmitRequest) ([]string, error)
	validate func(any) error
	caller   func(context.Context) (string, bool)
	timeout  time.Duration
	log      *slog.Logger
}

// NewForwarder builds a Forwarder.
func NewForwarder(p ForwarderParams) *Forwarder {
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	if p.FanOutTimeout <= 0 {
		p.FanOutTimeout = 5 * time.Second
	}
	if p.Caller == nil {
		p.Caller = func(context.Context) (string, bool) { return "", true }
	}
	return &Forwarder{caller: p.Caller, dir: p.Directory, peers: p.Peers, tags: p.SubmitTags, validate: p.Validate, timeout: p.FanOutTimeout, log: p.Logger}
}

// ServerOptions are the interceptors, to install after the auth guard's.
func (f *Forwarder) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(f.unary), grpc.ChainStreamInterceptor(f.stream)}
}

// Forwarded reports whether ctx is a call another node forwarded.
func Forwarded(ctx context.Context) bool {
	return len(metadata.ValueFromIncomingContext(ctx, ForwardedByKey)) > 0
}

func (f *Forwarder) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if Forwarded(ctx) {
		return handler(ctx, req)
	}
	switch r := req.(type) {
	case *aurav1.GetTaskRequest:
		if node, remote := f.owner(r.GetTaskId()); remote {
			return callOn(ctx, f, node, func(ctx context.Context, c aurav1.ExecutionServiceClient) (*aurav1.Task, error) {
				return c.GetTask(ctx, r)
			})
		}
	case *aurav1.CancelTaskRequest:
		if node, remote := f.owner(r.GetTaskId()); remote {
			return callOn(ctx, f, node, func(ctx context.Context, c aurav1.ExecutionServiceClient) (*aurav1.CancelTaskResponse, error) {
				return c.CancelTask(ctx, r)
			})
		}
	case *aurav1.ListTasksRequest:
		return f.listTasks(ctx, r, handler)
	case *aurav1.GetStatsRequest:
		return f.getStats(ctx, r, handler)
	case *aurav1.SubmitRequest:
		node, err := f.place(ctx, r)
		if err != nil {
			return nil, err
		}
		if node != f.dir.Self() {
			return callOn(ctx, f, node, func(ctx context.Context, c aurav1.ExecutionServiceClient) (*aurav1.SubmitResponse, error) {
				return c.Submit(ctx, r)
			})
		}
	}
	return handler(ctx, req)
}

func (f *Forwarder) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if Forwarded(ss.Context()) {
		return handler(srv, ss)
	}
	switch info.FullMethod {
	case aurav1.ExecutionService_SubmitStream_FullMethodName:
		return f.submitStream(srv, ss, handler)
	case aurav1.ExecutionService_Stream_FullMethodName:
		return f.streamTask(srv, ss, handler)
	}
	return handler(srv, ss)
}

// streamTask serves Stream: another node's task's events from that node,
// anything else here.
func (f *Forwarder) streamTask(srv any, ss grpc.ServerStream, handler grpc.StreamHandler) error {
	req := new(aurav1.StreamRequest)
	if err := ss.RecvMsg(req); err != nil {
		return err
	}
	node, remote := f.owner(req.GetTaskId())
	if !remote {
		return handler(srv, &replayed{ServerStream: ss, first: req})
	}
	ctx, err := f.outgoing(ss.Context(), node)
	if err != nil {
		return err
	}
	cc, err := f.peers.Conn(node)
	if err != nil {
		return f.peerError(node, err)
	}
	events, err := aurav1.NewExecutionServiceClient(cc).Stream(ctx, req)
	if err != nil {
		return f.peerError(node, err)
	}
	for {
		ev, err := events.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return f.peerError(node, err)
		}
		if err := ss.SendMsg(ev); err != nil {
			return err
		}
	}
}

// replayed hands the handler the request the interceptor already read.
type replayed struct {
	grpc.ServerStream
	first any
}

func (s *replayed) RecvMsg(m any) error {
	if s.first == nil {
		return s.ServerStream.RecvMsg(m)
	}
	src := s.first.(*aurav1.StreamRequest)
	dst, ok := m.(*aurav1.StreamRequest)
	if !ok {
		return status.Error(codes.Internal, "internal error")
	}
	dst.TaskId = src.GetTaskId()
	s.first = nil
	return nil
}

// owner returns the node a task id names when it is another live or dead
// node than this one; false for this node's ids and ids that name none.
func (f *Forwarder) owner(id string) (string, bool) {
	node, ok := NodeOf(id)
	if !ok || node == f.dir.Self() {
		return "", false
	}
	return node, true
}

// callOn calls one ExecutionService method on node with the caller's
// credentials.
func callOn[T any](ctx context.Context, f *Forwarder, node string, call func(context.Context, aurav1.ExecutionServiceClient) (T, error)) (T, error) {
	var zero T
	out, err := f.outgoing(ctx, node)
	if err != nil {
		return zero, err
	}
	cc, err := f.peers.Conn(node)
	if err != nil {
		return zero, f.peerError(node, err)
	}
	resp, err := call(out, aurav1.NewExecutionServiceClient(cc))
	if err != nil {
		return zero, f.peerError(node, err)
	}
	return resp, nil
}

// GetTask asks the task's owner for it, with the caller's credentials in
// ctx (the auth guard's plan check of another node's task).
func (f *Forwarder) GetTask(ctx context.Context, id string) (*aurav1.Task, error) {
	node, remote := f.owner(id)
	if !remote {
		return nil, status.Errorf(codes.Internal, "task %s is not another node's", id)
	}
	return callOn(ctx, f, node, func(ctx context.Context, c aurav1.ExecutionServiceClient) (*aurav1.Task, error) {
		return c.GetTask(ctx, &aurav1.GetTaskRequest{TaskId: id})
	})
}

// Remote reports whether a task id names another node than this one.
func (f *Forwarder) Remote(id string) bool {
	_, remote := f.owner(id)
	return remote
}

// outgoing is the context of a call to node on the caller's behalf: its
// bearer token, as it sent it, and ForwardedByKey. A caller known only by
// its client certificate cannot be forwarded: this node cannot present the
// caller's certificate, and presenting its own would make the owner
// authorize this node instead of the caller.
func (f *Forwarder) outgoing(ctx context.Context, node string) (context.Context, error) {
	md := metadata.MD{ForwardedByKey: []string{f.dir.Self()}}
	if authz := metadata.ValueFromIncomingContext(ctx, "authorization"); len(authz) > 0 {
		md["authorization"] = authz
	} else if name, anonymous := f.caller(ctx); !anonymous {
		return nil, status.Errorf(codes.FailedPrecondition,
			"this call needs node %s, and a caller known by its client certificate (%s) cannot be forwarded to another node: call node %s directly, or authenticate with a bearer token (aurad --auth-tokens)",
			node, name, node)
	}
	return metadata.NewOutgoingContext(ctx, md), nil
}

// peerError is the caller's error for a call to node that failed: the
// owner's own answer as it is (NOT_FOUND, PERMISSION_DENIED...), a node
// that is not live or could not be reached as UNAVAILABLE naming it and
// saying what to do.
func (f *Forwarder) peerError(node string, err error) error {
	var down *NodeDownError
	if errors.As(err, &down) {
		return status.Errorf(codes.Unavailable, "%v: its tasks stay in its own store; start node %s again and retry (auractl nodes lists the live nodes)", down, node)
	}
	st, ok := status.FromError(err)
	if !ok {
		return status.Errorf(codes.Unavailable, "node %s: %v", node, err)
	}
	if st.Code() == codes.Unavailable {
		addr := ""
		if n, ok := f.dir.Lookup(node); ok {
			addr = " at " + n.Address
		}
		return status.Errorf(codes.Unavailable, "node %s%s: %s; retry, or check that node (auractl nodes)", node, addr, st.Message())
	}
	return err
}

// place is the node a submission goes to; an error ends the call.
func (f *Forwarder) place(ctx context.Context, r *aurav1.SubmitRequest) (string, error) {
	self := f.dir.Self()
	nodes := f.dir.Nodes()
	if len(nodes) == 0 || f.tags == nil {
		return self, nil // this node's session is down: it answers alone
	}
	tags, err := f.tags(r)
	if err != nil {
		return self, nil
	}
	affinity := ""
	if key := r.GetIdempotencyKey(); key != "" {
		who, _ := f.caller(ctx)
		affinity = who + "\x00" + r.GetTask() + "\x00" + key
	}
	pl, err := Place(self, nodes, tags, affinity)
	var none *NoNodeError
	if errors.As(err, &none) {
		return "", status.Error(codes.Unavailable, none.Error())
	}
	if err != nil {
		return "", err
	}
	if pl.Node != self {
		f.log.Debug("submission routed", "task", r.GetTask(), "node", pl.Node, "reason", pl.Reason)
	}
	return pl.Node, nil
}
