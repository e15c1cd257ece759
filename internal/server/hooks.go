package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/aura-dev/aura/internal/cluster"
	"github.com/aura-dev/aura/internal/hooks"
	"github.com/aura-dev/aura/internal/store"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// hookService implements aura.v1.HookService.
type hookService struct {
	aurav1.UnimplementedHookServiceServer
	d    Deps
	conn connected // interceptors connected here, for AskInterceptor
}

func (s *hookService) Subscribe(req *aurav1.SubscribeRequest, stream aurav1.HookService_SubscribeServer) error {
	for i, h := range req.GetHooks() {
		if !hooks.ValidPoint(h) {
			return invalid(fmt.Sprintf("hooks[%d]", i), fmt.Sprintf("unknown hook %q (want one of %s)", h, strings.Join(hooks.Points, ", ")))
		}
	}
	f := hooks.Filter{HooksOnly: true, Hooks: req.GetHooks(), Who: follower(stream.Context(), "subscribe", req.GetPlan())}
	if p := req.GetPlan(); p != "" {
		prefix := p + "/"
		f.Match = func(ev store.Event) bool {
			var he aurav1.HookEvent
			return proto.Unmarshal(ev.Data, &he) == nil && strings.HasPrefix(he.GetTask().GetTask(), prefix)
		}
	}
	if req.GetCluster() {
		return s.subscribeCluster(req, stream, f)
	}
	if req.Cursor != nil {
		return invalid("cursor", "needs cluster: true (a cursor names nodes of a cluster stream)")
	}
	if len(req.GetNodes()) > 0 {
		return invalid("nodes", "needs cluster: true")
	}
	var after *uint64
	if req.AfterSequence != nil {
		v := req.GetAfterSequence()
		after = &v
	}
	err := s.d.Hub.Follow(stream.Context(), after, f, func(ev store.Event) (bool, error) {
		return false, stream.SendMsg(withSequence(ev.Data, ev.Seq))
	})
	return toStatus(s.d.Logger, err)
}

func (s *hookService) Intercept(stream aurav1.HookService_InterceptServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	reg := first.GetRegister()
	if reg == nil {
		return invalid("register", "the first message must register the interceptor")
	}
	if reg.GetName() == "" {
		return invalid("register.name", "required")
	}
	for i, h := range reg.GetHooks() {
		if h != hooks.BeforeTaskRun {
			return invalid(fmt.Sprintf("register.hooks[%d]", i), fmt.Sprintf("only %s can be intercepted, got %q", hooks.BeforeTaskRun, h))
		}
	}
	timeout := 5 * time.Second
	if reg.Timeout != nil {
		if timeout = reg.Timeout.AsDuration(); timeout <= 0 || timeout > time.Minute {
			return invalid("register.timeout", "must be between 0 and 1m")
		}
	}
	ic := &remoteInterceptor{
		name: reg.GetName(), plan: reg.GetPlan(), timeout: timeout, failOpen: reg.GetFailOpen(),
		calls: make(chan interceptCall, interceptQueue), gone: make(chan struct{}),
		pending: map[string]chan *aurav1.InterceptDecision{},
	}
	// Both goroutines end once the stream does: gRPC cancels a stream when
	// its handler returns, which unblocks a Send or Recv still waiting.
	defer close(ic.gone)
	go ic.sendLoop(stream)
	received := make(chan error, 1)
	go func() { received <- ic.recvLoop(stream) }()
	remove := s.d.Hooks.AddInterceptor(ic)
	defer remove()
	id, forget := s.conn.add(ic)
	defer forget()
	if c := s.d.Cluster; c != nil && c.Interceptors != nil {
		// Every node asks it from now on; withdrawn before it is
		// forgotten here, so a node asking meanwhile hears NotFound.
		withdraw := c.Interceptors.Publish(id, cluster.Interceptor{Name: ic.name, Plan: ic.plan, Timeout: ic.timeout, FailOpen: ic.failOpen})
		defer withdraw()
	}
	s.d.Logger.Info("interceptor registered", "interceptor", ic.name, "id", id, "plan", ic.plan, "fail_open", ic.failOpen)
	select {
	case err := <-received:
		if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
			return nil
		}
		return err
	case <-stream.Context().Done():
		// Ended from this side (shutdown, revoked credentials): the
		// stream's cause says why.
		return toStatus(s.d.Logger, context.Cause(stream.Context()))
	}
}

// interceptQueue bounds the calls waiting to be sent to one interceptor.
// A plugin that stops reading holds at most this many; the tasks behind
// them wait for room only until their own interceptor timeout.
const interceptQueue = 64

// remoteInterceptor is a plugin connected over HookService.Intercept.
//
// Calls reach the plugin through one sender goroutine, never from the
// asking task's goroutine: a plugin that stops reading fills its HTTP/2
// flow-control window and blocks that sender in Send, and a task must not
// wait on that beyond its interceptor timeout.
type remoteInterceptor struct {
	// Immutable after Intercept builds it.
	name     string
	plan     string
	timeout  time.Duration
	failOpen bool
	calls    chan interceptCall // Decide -> sendLoop
	gone     chan struct{}      // closed when the stream ends

	mu      sync.Mutex // guards the fields below
	nextID  uint64
	pending map[string]chan *aurav1.InterceptDecision
}

// interceptCall is one question waiting for the sender.
type interceptCall struct {
	ctx context.Context // the asking task's; once done, the call is not sent
	msg *aurav1.InterceptCall
}

func (ic *remoteInterceptor) Name() string           { return ic.name }
func (ic *remoteInterceptor) Timeout() time.Duration { return ic.timeout }
func (ic *remoteInterceptor) FailOpen() bool         { return ic.failOpen }
func (ic *remoteInterceptor) Matches(req *hooks.BeforeRunRequest) bool {
	return ic.plan == "" || req.Plan == ic.plan
}

// Decide asks the plugin and waits for its answer, for the plugin to go, or
// for ctx (the interceptor's timeout within the task's), whichever is first.
func (ic *remoteInterceptor) Decide(ctx context.Context, req *hooks.BeforeRunRequest, resp *hooks.BeforeRunResponse) error {
	ch := make(chan *aurav1.InterceptDecision, 1)
	ic.mu.Lock()
	ic.nextID++
	id := strconv.FormatUint(ic.nextID, 10)
	ic.pending[id] = ch
	ic.mu.Unlock()
	defer func() {
		ic.mu.Lock()
		delete(ic.pending, id)
		ic.mu.Unlock()
	}()
	select {
	case ic.calls <- interceptCall{ctx: ctx, msg: &aurav1.InterceptCall{CallId: id, Hook: hooks.BeforeTaskRun, Task: req.Task}}:
	case <-ic.gone:
		return fmt.Errorf("interceptor %s disconnected", ic.name)
	case <-ctx.Done():
		return fmt.Errorf("interceptor %s is not reading its calls: %w", ic.name, ctx.Err())
	}
	select {
	case d := <-ch:
		if !d.GetAllow() {
			resp.Deny(d.GetReason())
		}
		return nil
	case <-ic.gone:
		return fmt.Errorf("interceptor %s disconnected", ic.name)
	case <-ctx.Done():
		return fmt.Errorf("interceptor %s: no answer: %w", ic.name, ctx.Err())
	}
}

// sendLoop is the stream's only sender. It skips calls whose task stopped
// waiting while they were queued, so a plugin that catches up after a
// stall is not sent questions nobody will read the answer to.
func (ic *remoteInterceptor) sendLoop(stream aurav1.HookService_InterceptServer) {
	for {
		select {
		case c := <-ic.calls:
			select {
			case <-ic.gone:
				return // the handler has returned: no new sends on its stream
			default:
			}
			if c.ctx.Err() != nil {
				continue
			}
			if err := stream.Send(c.msg); err != nil {
				return // the stream is over; Decide sees gone
			}
		case <-ic.gone:
			return
		}
	}
}

// recvLoop delivers the plugin's decisions until the stream ends.
func (ic *remoteInterceptor) recvLoop(stream aurav1.HookService_InterceptServer) error {
	for {
		msg, err := stream.Recv()
		if err != nil {
			return err
		}
		d := msg.GetDecision()
		if d == nil {
			return invalid("decision", "expected a decision after registration")
		}
		ic.deliver(d)
	}
}

func (ic *remoteInterceptor) deliver(d *aurav1.InterceptDecision) {
	ic.mu.Lock()
	ch := ic.pending[d.GetCallId()]
	ic.mu.Unlock()
	if ch != nil {
		select {
		case ch <- d:
		default:
		}
	}
}
