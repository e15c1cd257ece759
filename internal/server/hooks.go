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

	"github.com/aura-dev/aura/internal/hooks"
	"github.com/aura-dev/aura/internal/store"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// hookService implements aura.v1.HookService.
type hookService struct {
	aurav1.UnimplementedHookServiceServer
	d Deps
}

func (s *hookService) Subscribe(req *aurav1.SubscribeRequest, stream aurav1.HookService_SubscribeServer) error {
	for i, h := range req.GetHooks() {
		if !hooks.ValidPoint(h) {
			return invalid(fmt.Sprintf("hooks[%d]", i), fmt.Sprintf("unknown hook %q (want one of %s)", h, strings.Join(hooks.Points, ", ")))
		}
	}
	f := hooks.Filter{HooksOnly: true, Hooks: req.GetHooks()}
	if p := req.GetPlan(); p != "" {
		prefix := p + "/"
		f.Match = func(ev store.Event) bool {
			var he aurav1.HookEvent
			return proto.Unmarshal(ev.Data, &he) == nil && strings.HasPrefix(he.GetTask().GetTask(), prefix)
		}
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
		stream: stream, pending: map[string]chan *aurav1.InterceptDecision{}, gone: make(chan struct{}),
	}
	remove := s.d.Hooks.AddInterceptor(ic)
	defer remove()
	defer close(ic.gone)
	s.d.Logger.Info("interceptor registered", "interceptor", ic.name, "plan", ic.plan, "fail_open", ic.failOpen)
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
			return nil
		}
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

// remoteInterceptor is a plugin connected over HookService.Intercept.
type remoteInterceptor struct {
	name     string
	plan     string
	timeout  time.Duration
	failOpen bool
	stream   aurav1.HookService_InterceptServer
	gone     chan struct{} // closed when the stream ends

	sendMu sync.Mutex // grpc streams allow one sender at a time

	mu      sync.Mutex
	nextID  uint64
	pending map[string]chan *aurav1.InterceptDecision
}

func (ic *remoteInterceptor) Name() string           { return ic.name }
func (ic *remoteInterceptor) Timeout() time.Duration { return ic.timeout }
func (ic *remoteInterceptor) FailOpen() bool         { return ic.failOpen }
func (ic *remoteInterceptor) Matches(t *aurav1.Task) bool {
	return ic.plan == "" || strings.HasPrefix(t.GetTask(), ic.plan+"/")
}

func (ic *remoteInterceptor) Decide(ctx context.Context, t *aurav1.Task) (bool, string, error) {
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
	ic.sendMu.Lock()
	err := ic.stream.Send(&aurav1.InterceptCall{CallId: id, Hook: hooks.BeforeTaskRun, Task: t})
	ic.sendMu.Unlock()
	if err != nil {
		return false, "", fmt.Errorf("interceptor %s: %w", ic.name, err)
	}
	select {
	case d := <-ch:
		return d.GetAllow(), d.GetReason(), nil
	case <-ic.gone:
		return false, "", fmt.Errorf("interceptor %s disconnected", ic.name)
	case <-ctx.Done():
		return false, "", fmt.Errorf("interceptor %s: no answer: %w", ic.name, ctx.Err())
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
