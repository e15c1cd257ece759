package auth

import (
	"context"
	"crypto/x509"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	mwauth "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// Options configure a Guard.
type Options struct {
	// Registry is the loaded tokens file. Nil turns authentication off:
	// every caller is one anonymous principal holding every role, which is
	// only safe on loopback or a unix socket whose mode keeps others out.
	Registry *Registry
	// OpenHealth and OpenReflection let grpc.health.v1 and server
	// reflection be called without credentials. When closed they need the
	// read role.
	OpenHealth, OpenReflection bool
	Limits                     Limits
	// PlanOf returns the plan of a stored task, so a principal with a plan
	// allowlist can be refused GetTask, CancelTask and Stream on other
	// plans' tasks. Nil refuses those RPCs to such principals.
	PlanOf func(ctx context.Context, taskID string) (string, error)
	// MaxPriority is the highest priority a caller may give a submission
	// when its tokens-file entry sets no max_priority (the anonymous
	// principal included); 0 means DefaultMaxPriority, negative means no
	// caller may set a priority above 0.
	MaxPriority int32
	Logger      *slog.Logger
}

// Guard is the authentication, authorization and quota layer of the gRPC
// server. Build it with NewGuard and install ServerOptions.
type Guard struct {
	opts   Options // immutable after NewGuard
	authOn bool    // immutable: a Registry was given
	reg    atomic.Pointer[Registry]
	quotas *quotas
	// unauthStreams bounds, per client address, the streams of methods open
	// to callers without credentials (Limits.MaxStreams of them).
	unauthStreams *openStreams
	log           *slog.Logger

	logBudget *rate.Limiter // refusal log lines
	unlogged  atomic.Int64  // refusals not logged since the last line

	liveMu sync.Mutex               // guards live
	live   map[*liveStream]struct{} // open authenticated streams
}

// liveStream is an open streaming RPC, kept so that a reloaded tokens file
// can end the streams whose credentials it no longer honours.
type liveStream struct {
	ctx    context.Context // the stream's: its metadata and peer hold the credentials
	method string
	p      *Principal
	end    context.CancelCauseFunc
}

const refusalLogRate = 20

// NewGuard builds a guard.
func NewGuard(o Options) *Guard {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	g := &Guard{
		opts: o, authOn: o.Registry != nil, quotas: newQuotas(o.Limits), log: o.Logger,
		unauthStreams: newOpenStreams(o.Limits.MaxStreams),
		logBudget:     rate.NewLimiter(refusalLogRate, 2*refusalLogRate),
		live:          map[*liveStream]struct{}{},
	}
	g.reg.Store(o.Registry)
	return g
}

// SetRegistry swaps in a reloaded tokens file. Every open stream is
// authenticated again against it: one whose credentials it no longer holds
// ends with UNAUTHENTICATED, one whose principal's roles or plans changed
// ends with PERMISSION_DENIED (the caller reconnects with its new rights),
// and the others go on. A unary call already running finishes with the
// rights it started with. It cannot turn authentication on or off.
func (g *Guard) SetRegistry(r *Registry) {
	if !g.authOn || r == nil {
		return
	}
	g.reg.Store(r)
	g.liveMu.Lock()
	defer g.liveMu.Unlock()
	for ls := range g.live {
		p, _ := principalIn(ls.ctx, r)
		switch {
		case p == nil:
			ls.end(errRevoked)
		case !p.sameRights(ls.p):
			ls.end(errRightsChanged)
		default:
			continue
		}
		delete(g.live, ls)
		g.log.Info("stream ended by the tokens file reload", "principal", ls.p.Name, "method", ls.method, "revoked", p == nil)
	}
}

// ServerOptions are the interceptors, authentication first (through
// go-grpc-middleware's auth interceptor), then authorization and quotas.
// Install them inside the recovery interceptor and outside validation.
func (g *Guard) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(mwauth.UnaryServerInterceptor(g.authenticate), g.authorizeUnary),
		grpc.ChainStreamInterceptor(mwauth.StreamServerInterceptor(g.authenticate), g.authorizeStream),
	}
}

// The same answers whatever went wrong, so a caller learns nothing about
// which tokens or tasks exist.
var (
	errUnauthenticated = status.Error(codes.Unauthenticated, "authentication required")
	errDenied          = status.Error(codes.PermissionDenied, "permission denied")
	errRevoked         = status.Error(codes.Unauthenticated, "credentials revoked: the reloaded tokens file no longer accepts them")
	errRightsChanged   = status.Error(codes.PermissionDenied, "permissions changed by a tokens file reload; reconnect to continue with the new ones")
)

// rule says what an RPC needs.
type rule struct {
	role       Role
	subscriber bool // counts against MaxSubscribers
}

var methodRules = map[string]rule{
	aurav1.ExecutionService_Submit_FullMethodName:       {role: RoleSubmit},
	aurav1.ExecutionService_SubmitStream_FullMethodName: {role: RoleSubmit},
	aurav1.ExecutionService_Stream_FullMethodName:       {role: RoleRead},
	aurav1.ExecutionService_GetTask_FullMethodName:      {role: RoleRead},
	aurav1.ExecutionService_ListTasks_FullMethodName:    {role: RoleRead},
	aurav1.ExecutionService_ListPlans_FullMethodName:    {role: RoleRead},
	aurav1.ExecutionService_GetStats_FullMethodName:     {role: RoleRead},
	aurav1.ExecutionService_CancelTask_FullMethodName:   {role: RoleCancel},
	aurav1.ExecutionService_ReloadPlans_FullMethodName:  {role: RoleAdmin},
	aurav1.HookService_Subscribe_FullMethodName:         {role: RoleHooks, subscriber: true},
	aurav1.HookService_Intercept_FullMethodName:         {role: RoleHooks, subscriber: true},
	// Another node asking an interceptor connected here about its task:
	// what a plugin with the hooks role on that plan would be told.
	aurav1.HookService_AskInterceptor_FullMethodName: {role: RoleHooks},

	aurav1.ExecutionService_ListResources_FullMethodName: {role: RoleRead},
	// Schedules: reading them is reading; steering them starts or stops
	// work: pausing and resuming is the operator's (admin), firing is
	// submitting.
	aurav1.ScheduleService_ListSchedules_FullMethodName:    {role: RoleRead},
	aurav1.ScheduleService_PauseSchedule_FullMethodName:    {role: RoleAdmin},
	aurav1.ScheduleService_ResumeSchedule_FullMethodName:   {role: RoleAdmin},
	aurav1.ScheduleService_TriggerSchedule_FullMethodName:  {role: RoleSubmit},
	aurav1.ScheduleService_BackfillSchedule_FullMethodName: {role: RoleSubmit},

	aurav1.ClusterService_ListNodes_FullMethodName: {role: RoleRead},
	// Interrupt rules: listing them is reading.
	aurav1.InterruptService_ListInterrupts_FullMethodName: {role: RoleRead},
}

// RequiredRole returns the role an RPC needs; false for methods the guard
// does not know, which are refused.
func RequiredRole(fullMethod string) (Role, bool) {
	if r, ok := methodRules[fullMethod]; ok {
		return r.role, true
	}
	if isHealth(fullMethod) || isReflection(fullMethod) {
		return RoleRead, true
	}
	return "", false
}

func isHealth(method string) bool { return strings.HasPrefix(method, "/grpc.health.v1.Health/") }
func isReflection(method string) bool {
	return strings.HasPrefix(method, "/grpc.reflection.v1.ServerReflection/") ||
		strings.HasPrefix(method, "/grpc.reflection.v1alpha.ServerReflection/")
}

// open reports whether method is served to anyone, credentials or not.
func (g *Guard) open(method string) bool {
	if !g.authOn {
		return false // everyone is the anonymous principal; limits still apply
	}
	return (g.opts.OpenHealth && isHealth(method)) || (g.opts.OpenReflection && isReflection(method))
}

// authenticate is the go-grpc-middleware AuthFunc: it attaches the caller's
// principal to ctx or refuses the call.
func (g *Guard) authenticate(ctx context.Context) (context.Context, error) {
	method, _ := grpc.Method(ctx)
	if g.open(method) {
		return ctx, nil
	}
	reg := g.reg.Load()
	if reg == nil {
		name := AnonymousName
		if cert := peerCertificate(ctx); cert != nil {
			if ids := CertificateIdentities(cert); len(ids) > 0 {
				name = "cert:" + ids[0]
			}
		}
		return NewContext(ctx, anonymous(name)), nil
	}
	p, why := principalIn(ctx, reg)
	if p == nil {
		var attrs []any
		if cert := peerCertificate(ctx); cert != nil && why == whyCertUnknown {
			attrs = append(attrs, "cert", strings.Join(CertificateIdentities(cert), ","))
		}
		g.refused(ctx, method, why, attrs...)
		return nil, errUnauthenticated
	}
	return NewContext(ctx, p), nil
}

const whyCertUnknown = "client certificate matches no principal"

// principalIn finds the principal that ctx's credentials name in reg: the
// bearer token when one is sent (it wins over a certificate), else the
// verified client certificate. When there is none, why says what failed
// (for the log, never for the caller).
func principalIn(ctx context.Context, reg *Registry) (p *Principal, why string) {
	if len(metadata.ValueFromIncomingContext(ctx, "authorization")) > 0 {
		token, err := mwauth.AuthFromMD(ctx, "bearer")
		if err != nil {
			return nil, "malformed authorization metadata"
		}
		if p, ok := reg.ByToken(token); ok {
			return p, ""
		}
		return nil, "unknown bearer token"
	}
	if cert := peerCertificate(ctx); cert != nil {
		if p, ok := reg.ByCertificate(cert); ok {
			return p, ""
		}
		return nil, whyCertUnknown
	}
	return nil, "no credentials"
}

func (g *Guard) refused(ctx context.Context, method, why string, attrs ...any) {
	addr := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		addr = p.Addr.String()
	}
	g.warn("call refused: not authenticated", append([]any{"method", method, "peer", addr, "reason", why}, attrs...)...)
}

// warn logs a refusal, at most refusalLogRate a second: a flood of bad
// calls must not become a flood of log lines. The next line logged says how
// many were left out.
func (g *Guard) warn(msg string, attrs ...any) {
	if !g.logBudget.Allow() {
		g.unlogged.Add(1)
		return
	}
	if n := g.unlogged.Swap(0); n > 0 {
		attrs = append(attrs, "refusals_not_logged", n)
	}
	g.log.Warn(msg, attrs...)
}

// peerCertificate returns the client certificate the TLS handshake
// verified, or nil.
func peerCertificate(ctx context.Context) *x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return info.State.VerifiedChains[0][0]
}

// admit checks the role and takes one request from the rate budget.
func (g *Guard) admit(ctx context.Context, method string) (*Principal, rule, error) {
	p, ok := FromContext(ctx)
	if !ok {
		return nil, rule{}, errUnauthenticated
	}
	r, known := methodRules[method]
	if !known {
		role, ok := RequiredRole(method)
		if !ok {
			g.warn("call refused: unknown method", "method", method, "principal", p.Name)
			return nil, rule{}, errDenied
		}
		r = rule{role: role}
	}
	// The budget is taken first, so refused calls cost it too.
	if err := g.quotas.allow(p.Name); err != nil {
		g.warn("call refused: rate limited", "method", method, "principal", p.Name)
		return nil, rule{}, err
	}
	if !p.Has(r.role) {
		g.warn("call refused: role missing", "method", method, "principal", p.Name, "role", string(r.role))
		return nil, rule{}, errDenied
	}
	return p, r, nil
}

func (g *Guard) authorizeUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if g.open(info.FullMethod) {
		return handler(ctx, req)
	}
	p, _, err := g.admit(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	if err := g.checkPlan(ctx, p, info.FullMethod, req); err != nil {
		return nil, err
	}
	if err := g.checkPriority(p, req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (g *Guard) authorizeStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if g.open(info.FullMethod) {
		release, err := g.unauthStreams.open(ss.Context())
		if err != nil {
			g.warn("stream refused: limit reached", "method", info.FullMethod, "address", addressKey(ss.Context()), "err", err)
			return err
		}
		defer release()
		return handler(srv, ss)
	}
	ctx := ss.Context()
	p, r, err := g.admit(ctx, info.FullMethod)
	if err != nil {
		return err
	}
	release, err := g.quotas.openStream(p.Name, r.subscriber)
	if err != nil {
		g.warn("stream refused: limit reached", "method", info.FullMethod, "principal", p.Name, "err", err)
		return err
	}
	defer release()
	if g.authOn {
		var end func()
		ss, end = g.track(ss, info.FullMethod, p)
		defer end()
		ctx = ss.Context()
	}
	err = g.serveStream(srv, ss, info, handler, p)
	if cause := context.Cause(ctx); cause == errRevoked || cause == errRightsChanged {
		return cause // whatever the handler made of its cancelled context
	}
	return err
}

// track registers an authenticated stream for SetRegistry and gives it a
// context SetRegistry can end; end unregisters it.
func (g *Guard) track(ss grpc.ServerStream, method string, p *Principal) (_ grpc.ServerStream, end func()) {
	ctx, cancel := context.WithCancelCause(ss.Context())
	ls := &liveStream{ctx: ctx, method: method, p: p, end: cancel}
	g.liveMu.Lock()
	g.live[ls] = struct{}{}
	g.liveMu.Unlock()
	return &endableStream{ServerStream: ss, ctx: ctx}, func() {
		g.liveMu.Lock()
		delete(g.live, ls)
		g.liveMu.Unlock()
		cancel(nil)
	}
}

// endableStream is a stream whose context the guard can end.
type endableStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *endableStream) Context() context.Context { return s.ctx }

// A handler that does not watch its context (server reflection) is ended
// at its next message instead: once the stream is ended nothing more is
// received or sent on it.
func (s *endableStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if s.ctx.Err() != nil {
		return context.Cause(s.ctx)
	}
	return nil
}

func (s *endableStream) SendMsg(m any) error {
	if s.ctx.Err() != nil {
		return context.Cause(s.ctx)
	}
	return s.ServerStream.SendMsg(m)
}

// serveStream runs the handler with the principal's plan allowlist (and,
// on SubmitStream, its rate budget) applied to every message.
func (g *Guard) serveStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler, p *Principal) error {
	ctx := ss.Context()
	check := func(m any) error { return g.checkPlan(ctx, p, info.FullMethod, m) }
	if info.FullMethod == aurav1.ExecutionService_SubmitStream_FullMethodName {
		// Every streamed submission is a request against the rate budget.
		return handler(srv, &CheckedStream{ServerStream: ss, Reject: SubmitRejection, Check: func(m any) error {
			if err := check(m); err != nil {
				return err
			}
			if err := g.checkPriority(p, m); err != nil {
				return err
			}
			return g.quotas.allow(p.Name)
		}})
	}
	return handler(srv, &recvChecked{ServerStream: ss, check: check})
}

// SubmitRejection is SubmitStream's in-place answer to a refused request.
func SubmitRejection(err error) any {
	st := status.Convert(err)
	return &aurav1.SubmitResponse{Error: &aurav1.SubmitError{Code: int32(st.Code()), Message: st.Message()}}
}

// recvChecked ends the stream on the first message check refuses.
type recvChecked struct {
	grpc.ServerStream
	check func(any) error
}

func (s *recvChecked) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return s.check(m)
}

// checkPlan enforces a principal's plan allowlist on one request.
func (g *Guard) checkPlan(ctx context.Context, p *Principal, method string, msg any) error {
	if !p.Scoped() {
		return nil
	}
	allowed := func(plan string) error {
		if plan == "" || !p.PlanAllowed(plan) {
			g.warn("call refused: plan not allowed", "method", method, "principal", p.Name, "plan", plan)
			return errDenied
		}
		return nil
	}
	switch m := msg.(type) {
	case *aurav1.SubmitRequest:
		return allowed(PlanOfTask(m.GetTask()))
	case *aurav1.ListTasksRequest:
		return allowed(m.GetPlan())
	case *aurav1.SubscribeRequest:
		return allowed(m.GetPlan())
	case *aurav1.InterceptReply:
		if reg := m.GetRegister(); reg != nil {
			return allowed(reg.GetPlan())
		}
	case *aurav1.AskInterceptorRequest:
		return allowed(PlanOfTask(m.GetTask().GetTask()))
	case *aurav1.GetTaskRequest:
		return g.checkTaskPlan(ctx, method, m.GetTaskId(), allowed)
	case *aurav1.CancelTaskRequest:
		return g.checkTaskPlan(ctx, method, m.GetTaskId(), allowed)
	case *aurav1.ListSchedulesRequest:
		return allowed(m.GetPlan())
	case *aurav1.PauseScheduleRequest:
		return allowed(PlanOfTask(m.GetSchedule()))
	case *aurav1.ResumeScheduleRequest:
		return allowed(PlanOfTask(m.GetSchedule()))
	case *aurav1.TriggerScheduleRequest:
		return allowed(PlanOfTask(m.GetSchedule()))
	case *aurav1.BackfillScheduleRequest:
		return allowed(PlanOfTask(m.GetSchedule()))
	case *aurav1.ListInterruptsRequest:
		return allowed(m.GetPlan())
	case *aurav1.StreamRequest:
		if m.GetTaskId() == "" {
			return allowed("") // every plan's events: not for a scoped principal
		}
		return g.checkTaskPlan(ctx, method, m.GetTaskId(), allowed)
	}
	return nil
}

func (g *Guard) checkTaskPlan(ctx context.Context, method, taskID string, allowed func(string) error) error {
	if taskID == "" {
		return nil // validation answers INVALID_ARGUMENT
	}
	if g.opts.PlanOf == nil {
		return allowed("")
	}
	plan, err := g.opts.PlanOf(ctx, taskID)
	if err != nil {
		// Unknown and foreign tasks look the same to a scoped principal,
		// so it cannot probe other plans' task ids.
		return allowed("")
	}
	return allowed(plan)
}
