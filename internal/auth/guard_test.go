package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/aura-dev/aura/internal/testbin"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// The guard is tested on a real gRPC server over loopback. Behind it sit
// minimal service implementations that answer with what they were asked:
// the guard, not the services, is under test here (e2e/security_test.go
// runs the real daemon).
type echoExec struct {
	aurav1.UnimplementedExecutionServiceServer
}

func (echoExec) Submit(_ context.Context, r *aurav1.SubmitRequest) (*aurav1.SubmitResponse, error) {
	return &aurav1.SubmitResponse{TaskId: "id-" + r.GetTask()}, nil
}
func (echoExec) SubmitStream(s aurav1.ExecutionService_SubmitStreamServer) error {
	for {
		r, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.Send(&aurav1.SubmitResponse{TaskId: "id-" + r.GetTask()}); err != nil {
			return err
		}
	}
}
func (echoExec) Stream(_ *aurav1.StreamRequest, s aurav1.ExecutionService_StreamServer) error {
	if err := s.Send(&aurav1.TaskEvent{Type: "hello"}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}
func (echoExec) GetTask(_ context.Context, r *aurav1.GetTaskRequest) (*aurav1.Task, error) {
	return &aurav1.Task{Id: r.GetTaskId()}, nil
}
func (echoExec) ListTasks(context.Context, *aurav1.ListTasksRequest) (*aurav1.ListTasksResponse, error) {
	return &aurav1.ListTasksResponse{}, nil
}
func (echoExec) CancelTask(_ context.Context, r *aurav1.CancelTaskRequest) (*aurav1.CancelTaskResponse, error) {
	return &aurav1.CancelTaskResponse{Task: &aurav1.Task{Id: r.GetTaskId()}}, nil
}
func (echoExec) ListPlans(context.Context, *aurav1.ListPlansRequest) (*aurav1.ListPlansResponse, error) {
	return &aurav1.ListPlansResponse{}, nil
}
func (echoExec) GetStats(context.Context, *aurav1.GetStatsRequest) (*aurav1.Stats, error) {
	return &aurav1.Stats{}, nil
}
func (echoExec) ReloadPlans(context.Context, *aurav1.ReloadPlansRequest) (*aurav1.ReloadPlansResponse, error) {
	return &aurav1.ReloadPlansResponse{}, nil
}

type echoHooks struct {
	aurav1.UnimplementedHookServiceServer
}

func (echoHooks) Subscribe(_ *aurav1.SubscribeRequest, s aurav1.HookService_SubscribeServer) error {
	if err := s.Send(&aurav1.HookEvent{Hook: "hello"}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}
func (echoHooks) Intercept(s aurav1.HookService_InterceptServer) error {
	if _, err := s.Recv(); err != nil {
		return err
	}
	if err := s.Send(&aurav1.InterceptCall{CallId: "registered"}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

type echoSchedules struct {
	aurav1.UnimplementedScheduleServiceServer
}

func (echoSchedules) ListSchedules(context.Context, *aurav1.ListSchedulesRequest) (*aurav1.ListSchedulesResponse, error) {
	return &aurav1.ListSchedulesResponse{}, nil
}
func (echoSchedules) PauseSchedule(context.Context, *aurav1.PauseScheduleRequest) (*aurav1.Schedule, error) {
	return &aurav1.Schedule{}, nil
}
func (echoSchedules) ResumeSchedule(context.Context, *aurav1.ResumeScheduleRequest) (*aurav1.Schedule, error) {
	return &aurav1.Schedule{}, nil
}
func (echoSchedules) TriggerSchedule(context.Context, *aurav1.TriggerScheduleRequest) (*aurav1.TriggerScheduleResponse, error) {
	return &aurav1.TriggerScheduleResponse{}, nil
}
func (echoSchedules) BackfillSchedule(context.Context, *aurav1.BackfillScheduleRequest) (*aurav1.BackfillScheduleResponse, error) {
	return &aurav1.BackfillScheduleResponse{}, nil
}

type echoInterrupts struct {
	aurav1.UnimplementedInterruptServiceServer
}

func (echoInterrupts) ListInterrupts(context.Context, *aurav1.ListInterruptsRequest) (*aurav1.ListInterruptsResponse, error) {
	return &aurav1.ListInterruptsResponse{}, nil
}

// tasks' plans, for PlanOf.
var taskPlans = map[string]string{"t-demo": "demo", "t-web": "web"}

func planOf(_ context.Context, id string) (string, error) {
	if p, ok := taskPlans[id]; ok {
		return p, nil
	}
	return "", fmt.Errorf("no task %q", id)
}

type rig struct {
	guard *Guard
	exec  aurav1.ExecutionServiceClient
	hooks aurav1.HookServiceClient
	sched aurav1.ScheduleServiceClient
	intr  aurav1.InterruptServiceClient
	conn  *grpc.ClientConn
}

func startGuarded(t *testing.T, o Options) *rig {
	t.Helper()
	if o.PlanOf == nil {
		o.PlanOf = planOf
	}
	g := NewGuard(o)
	srv := grpc.NewServer(g.ServerOptions()...)
	aurav1.RegisterExecutionServiceServer(srv, echoExec{})
	aurav1.RegisterHookServiceServer(srv, echoHooks{})
	aurav1.RegisterScheduleServiceServer(srv, echoSchedules{})
	aurav1.RegisterInterruptServiceServer(srv, echoInterrupts{})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = srv.Serve(lis); close(done) }()
	conn, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Stop()
		<-done
	})
	return &rig{guard: g, exec: aurav1.NewExecutionServiceClient(conn), hooks: aurav1.NewHookServiceClient(conn), sched: aurav1.NewScheduleServiceClient(conn),
		intr: aurav1.NewInterruptServiceClient(conn), conn: conn}
}

func withToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// token names a principal's roles: "tok-submit-read" holds submit and read.
func registryWith(t *testing.T, extra string) *Registry {
	t.Helper()
	var b strings.Builder
	b.WriteString("tokens:\n")
	for _, r := range Roles {
		fmt.Fprintf(&b, "  - {name: only-%s, sha256: %s, roles: [%s]}\n", r, HashToken("tok-"+string(r)), r)
		var others []string
		for _, o := range Roles {
			if o != r {
				others = append(others, string(o))
			}
		}
		fmt.Fprintf(&b, "  - {name: all-but-%s, sha256: %s, roles: [%s]}\n", r, HashToken("tok-no-"+string(r)), strings.Join(others, ", "))
	}
	fmt.Fprintf(&b, "  - {name: demo-only, sha256: %s, roles: [submit, read, cancel, hooks], plans: [demo]}\n", HashToken("tok-demo"))
	b.WriteString(extra)
	reg, err := Parse([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// call makes the RPC named by method with a valid request and returns its
// error; streams count as succeeded once the first message arrives.
func (r *rig) call(ctx context.Context, method string) error {
	switch method {
	case "Submit":
		_, err := r.exec.Submit(ctx, &aurav1.SubmitRequest{Task: "demo/hello"})
		return err
	case "SubmitStream":
		s, err := r.exec.SubmitStream(ctx)
		if err != nil {
			return err
		}
		// A Send on a stream the server already ended is io.EOF; the
		// status the server ended it with comes from Recv.
		if err := s.Send(&aurav1.SubmitRequest{Task: "demo/hello"}); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		resp, err := s.Recv()
		if err != nil {
			return err
		}
		if e := resp.GetError(); e != nil {
			return status.Error(codes.Code(e.GetCode()), e.GetMessage())
		}
		return s.CloseSend()
	case "Stream":
		s, err := r.exec.Stream(ctx, &aurav1.StreamRequest{TaskId: "t-demo"})
		if err != nil {
			return err
		}
		_, err = s.Recv()
		return err
	case "GetTask":
		_, err := r.exec.GetTask(ctx, &aurav1.GetTaskRequest{TaskId: "t-demo"})
		return err
	case "ListTasks":
		_, err := r.exec.ListTasks(ctx, &aurav1.ListTasksRequest{Plan: "demo"})
		return err
	case "ListPlans":
		_, err := r.exec.ListPlans(ctx, &aurav1.ListPlansRequest{})
		return err
	case "GetStats":
		_, err := r.exec.GetStats(ctx, &aurav1.GetStatsRequest{})
		return err
	case "CancelTask":
		_, err := r.exec.CancelTask(ctx, &aurav1.CancelTaskRequest{TaskId: "t-demo"})
		return err
	case "ReloadPlans":
		_, err := r.exec.ReloadPlans(ctx, &aurav1.ReloadPlansRequest{})
		return err
	case "Subscribe":
		s, err := r.hooks.Subscribe(ctx, &aurav1.SubscribeRequest{Plan: "demo"})
		if err != nil {
			return err
		}
		_, err = s.Recv()
		return err
	case "Intercept":
		s, err := r.hooks.Intercept(ctx)
		if err != nil {
			return err
		}
		if err := s.Send(&aurav1.InterceptReply{Msg: &aurav1.InterceptReply_Register{Register: &aurav1.InterceptRegistration{Name: "p", Plan: "demo"}}}); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		_, err = s.Recv()
		return err
	case "ListSchedules":
		_, err := r.sched.ListSchedules(ctx, &aurav1.ListSchedulesRequest{Plan: "demo"})
		return err
	case "PauseSchedule":
		_, err := r.sched.PauseSchedule(ctx, &aurav1.PauseScheduleRequest{Schedule: "demo/nightly"})
		return err
	case "ResumeSchedule":
		_, err := r.sched.ResumeSchedule(ctx, &aurav1.ResumeScheduleRequest{Schedule: "demo/nightly"})
		return err
	case "TriggerSchedule":
		_, err := r.sched.TriggerSchedule(ctx, &aurav1.TriggerScheduleRequest{Schedule: "demo/nightly"})
		return err
	case "BackfillSchedule":
		_, err := r.sched.BackfillSchedule(ctx, &aurav1.BackfillScheduleRequest{Schedule: "demo/nightly"})
		return err
	case "ListInterrupts":
		_, err := r.intr.ListInterrupts(ctx, &aurav1.ListInterruptsRequest{Plan: "demo"})
		return err
	}
	panic("unknown method " + method)
}

var methodRole = map[string]Role{
	"Submit": RoleSubmit, "SubmitStream": RoleSubmit,
	"Stream": RoleRead, "GetTask": RoleRead, "ListTasks": RoleRead, "ListPlans": RoleRead, "GetStats": RoleRead,
	"CancelTask": RoleCancel, "ReloadPlans": RoleAdmin, "Subscribe": RoleHooks, "Intercept": RoleHooks,
	"ListSchedules": RoleRead, "PauseSchedule": RoleAdmin, "ResumeSchedule": RoleAdmin,
	"TriggerSchedule": RoleSubmit, "BackfillSchedule": RoleSubmit,
	"ListInterrupts": RoleRead,
}

func TestEachRoleIsNeededForItsRPCs(t *testing.T) {
	r := startGuarded(t, Options{Registry: registryWith(t, "")})
	for method, role := range methodRole {
		t.Run(method, func(t *testing.T) {
			ctx, cancel := context.WithCancel(testCtx(t))
			defer cancel()
			if err := r.call(withToken(ctx, "tok-"+string(role)), method); err != nil {
				t.Errorf("with role %s: %v", role, err)
			}
			err := r.call(withToken(ctx, "tok-no-"+string(role)), method)
			if status.Code(err) != codes.PermissionDenied {
				t.Errorf("with every role but %s: %v; want PermissionDenied", role, err)
			}
			if err != nil && status.Convert(err).Message() != "permission denied" {
				t.Errorf("denial says %q; want no detail", status.Convert(err).Message())
			}
		})
	}
}

func TestMissingAndWrongTokensLookAlike(t *testing.T) {
	r := startGuarded(t, Options{Registry: registryWith(t, "")})
	ctx := testCtx(t)
	var msgs []string
	for _, c := range []context.Context{
		ctx,
		withToken(ctx, "nope"),
		withToken(ctx, HashToken("tok-read")), // the stored hash is not the token
		metadata.AppendToOutgoingContext(ctx, "authorization", "Basic dG9rLXJlYWQ="),
		metadata.AppendToOutgoingContext(ctx, "authorization", "tok-read"),
	} {
		_, err := r.exec.GetStats(c, &aurav1.GetStatsRequest{})
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("GetStats: %v; want Unauthenticated", err)
		}
		msgs = append(msgs, status.Convert(err).Message())
	}
	for _, m := range msgs[1:] {
		if m != msgs[0] {
			t.Fatalf("refusals differ (%q vs %q): a caller could tell them apart", m, msgs[0])
		}
	}
}

func TestHealthOpenOrClosedByConfig(t *testing.T) {
	ctx := testCtx(t)
	open := startGuarded(t, Options{Registry: registryWith(t, ""), OpenHealth: true})
	if _, err := healthpb.NewHealthClient(open.conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("open health without credentials: %v", err)
	}
	closed := startGuarded(t, Options{Registry: registryWith(t, "")})
	hc := healthpb.NewHealthClient(closed.conn)
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("closed health without credentials: %v; want Unauthenticated", err)
	}
	if _, err := hc.Check(withToken(ctx, "tok-read"), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("closed health with a read token: %v", err)
	}
	if _, err := hc.Check(withToken(ctx, "tok-submit"), &healthpb.HealthCheckRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("closed health with a submit-only token: %v; want PermissionDenied", err)
	}
}

func TestPlanAllowlist(t *testing.T) {
	r := startGuarded(t, Options{Registry: registryWith(t, "")})
	ctx := withToken(testCtx(t), "tok-demo")
	if _, err := r.exec.Submit(ctx, &aurav1.SubmitRequest{Task: "demo/hello"}); err != nil {
		t.Fatalf("Submit demo/hello: %v", err)
	}
	denied := map[string]error{}
	_, denied["Submit web/x"] = r.exec.Submit(ctx, &aurav1.SubmitRequest{Task: "web/x"})
	_, denied["GetTask of a web task"] = r.exec.GetTask(ctx, &aurav1.GetTaskRequest{TaskId: "t-web"})
	_, denied["GetTask of an unknown task"] = r.exec.GetTask(ctx, &aurav1.GetTaskRequest{TaskId: "t-none"})
	_, denied["CancelTask of a web task"] = r.exec.CancelTask(ctx, &aurav1.CancelTaskRequest{TaskId: "t-web"})
	_, denied["ListTasks of every plan"] = r.exec.ListTasks(ctx, &aurav1.ListTasksRequest{})
	_, denied["ListTasks of web"] = r.exec.ListTasks(ctx, &aurav1.ListTasksRequest{Plan: "web"})
	_, denied["ListSchedules of every plan"] = r.sched.ListSchedules(ctx, &aurav1.ListSchedulesRequest{})
	_, denied["TriggerSchedule of web"] = r.sched.TriggerSchedule(ctx, &aurav1.TriggerScheduleRequest{Schedule: "web/nightly"})
	_, denied["BackfillSchedule of web"] = r.sched.BackfillSchedule(ctx, &aurav1.BackfillScheduleRequest{Schedule: "web/nightly"})
	_, denied["ListInterrupts of every plan"] = r.intr.ListInterrupts(ctx, &aurav1.ListInterruptsRequest{})
	_, denied["ListInterrupts of web"] = r.intr.ListInterrupts(ctx, &aurav1.ListInterruptsRequest{Plan: "web"})
	if s, err := r.hooks.Subscribe(ctx, &aurav1.SubscribeRequest{}); err == nil {
		_, denied["Subscribe to every plan"] = s.Recv()
	}
	if s, err := r.exec.Stream(ctx, &aurav1.StreamRequest{}); err == nil {
		_, denied["Stream of every task"] = s.Recv()
	}
	for what, err := range denied {
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s: %v; want PermissionDenied", what, err)
		}
	}
	if _, err := r.exec.GetTask(ctx, &aurav1.GetTaskRequest{TaskId: "t-demo"}); err != nil {
		t.Errorf("GetTask of a demo task: %v", err)
	}
	if _, err := r.sched.TriggerSchedule(ctx, &aurav1.TriggerScheduleRequest{Schedule: "demo/nightly"}); err != nil {
		t.Errorf("TriggerSchedule of a demo schedule: %v", err)
	}
}

func TestSubmitStreamAnswersADeniedRequestInPlace(t *testing.T) {
	r := startGuarded(t, Options{Registry: registryWith(t, "")})
	s, err := r.exec.SubmitStream(withToken(testCtx(t), "tok-demo"))
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range []string{"demo/a", "web/b", "demo/c"} {
		if err := s.Send(&aurav1.SubmitRequest{Task: task}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		resp, err := s.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if e := resp.GetError(); e != nil {
			got = append(got, codes.Code(e.GetCode()).String())
		} else {
			got = append(got, resp.GetTaskId())
		}
	}
	if want := "id-demo/a PermissionDenied id-demo/c"; strings.Join(got, " ") != want {
		t.Fatalf("responses %q; want %q", got, want)
	}
}

func TestRateLimitPerPrincipal(t *testing.T) {
	r := startGuarded(t, Options{Registry: registryWith(t, ""), Limits: Limits{Rate: 0.001, Burst: 3}})
	ctx := testCtx(t)
	for i := range 3 {
		if _, err := r.exec.GetStats(withToken(ctx, "tok-read"), &aurav1.GetStatsRequest{}); err != nil {
			t.Fatalf("call %d within the burst: %v", i, err)
		}
	}
	_, err := r.exec.GetStats(withToken(ctx, "tok-read"), &aurav1.GetStatsRequest{})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("call beyond the burst: %v; want ResourceExhausted", err)
	}
	// Another principal has its own budget.
	if _, err := r.exec.GetStats(withToken(ctx, "tok-no-admin"), &aurav1.GetStatsRequest{}); err != nil {
		t.Fatalf("another principal: %v", err)
	}
}

func TestStreamAndSubscriberLimitsPerPrincipal(t *testing.T) {
	r := startGuarded(t, Options{Registry: registryWith(t, ""), Limits: Limits{MaxStreams: 2, MaxSubscribers: 1}})
	ctx := withToken(testCtx(t), "tok-no-admin") // read and hooks
	open := func(method string) (context.CancelFunc, error) {
		c, cancel := context.WithCancel(ctx)
		err := r.call(c, method)
		if err != nil {
			cancel()
		}
		return cancel, err
	}
	cancelSub, err := open("Subscribe")
	if err != nil {
		t.Fatalf("first subscriber: %v", err)
	}
	defer cancelSub()
	if _, err := open("Subscribe"); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second subscriber: %v; want ResourceExhausted", err)
	}
	cancelStream, err := open("Stream")
	if err != nil {
		t.Fatalf("second stream: %v", err)
	}
	defer cancelStream()
	if _, err := open("Stream"); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("third stream: %v; want ResourceExhausted", err)
	}
	// Another principal has its own slots.
	if c, err := func() (context.CancelFunc, error) {
		c, cancel := context.WithCancel(withToken(testCtx(t), "tok-hooks"))
		return cancel, r.call(c, "Subscribe")
	}(); err != nil {
		t.Fatalf("another principal's subscriber: %v", err)
	} else {
		c()
	}
	// Ending the subscriber frees its slots once its handler returns.
	cancelSub()
	deadline := time.Now().Add(5 * time.Second)
	for {
		cancel, err := open("Subscribe")
		if err == nil {
			cancel()
			break
		}
		if status.Code(err) != codes.ResourceExhausted || time.Now().After(deadline) {
			t.Fatalf("subscriber after the first ended: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWithoutRegistryEveryoneIsAnonymousButLimited(t *testing.T) {
	r := startGuarded(t, Options{Limits: Limits{Rate: 0.001, Burst: 2}})
	ctx := testCtx(t)
	for _, m := range []string{"ReloadPlans", "GetStats"} {
		if err := r.call(ctx, m); err != nil {
			t.Fatalf("%s without auth: %v", m, err)
		}
	}
	if err := r.call(ctx, "Submit"); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("third call: %v; want ResourceExhausted", err)
	}
}

func TestSetRegistryRevokesAToken(t *testing.T) {
	reg := registryWith(t, "")
	g := NewGuard(Options{Registry: reg})
	ctx := testCtx(t)
	md := metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer tok-read"))
	if _, err := g.authenticate(md); err != nil {
		t.Fatalf("before reload: %v", err)
	}
	smaller, err := Parse([]byte("tokens: [{name: x, sha256: " + HashToken("tok-x") + ", roles: [read]}]"))
	if err != nil {
		t.Fatal(err)
	}
	g.SetRegistry(smaller)
	if _, err := g.authenticate(md); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("after reload without the token: %v; want Unauthenticated", err)
	}
}

func TestSetRegistryEndsTheStreamsOfRevokedAndChangedTokens(t *testing.T) {
	r := startGuarded(t, Options{Registry: registryWith(t, "")})
	ctx := testCtx(t)
	subscribe := func(token string) aurav1.HookService_SubscribeClient {
		t.Helper()
		s, err := r.hooks.Subscribe(withToken(ctx, token), &aurav1.SubscribeRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatalf("%s subscribes: %v", token, err)
		}
		return s
	}
	revoked, changed, kept := subscribe("tok-hooks"), subscribe("tok-no-read"), subscribe("tok-no-submit")
	// only-hooks is gone; all-but-read gains read; all-but-submit is unchanged.
	reload, err := Parse([]byte(fmt.Sprintf("tokens:\n"+
		"  - {name: all-but-read, sha256: %s, roles: [submit, read, cancel, hooks, admin]}\n"+
		"  - {name: all-but-submit, sha256: %s, roles: [read, cancel, hooks, admin]}\n",
		HashToken("tok-no-read"), HashToken("tok-no-submit"))))
	if err != nil {
		t.Fatal(err)
	}
	r.guard.SetRegistry(reload)
	if _, err := revoked.Recv(); status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("stream of a removed token: %v; want Unauthenticated saying revoked", err)
	}
	if _, err := changed.Recv(); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "reconnect") {
		t.Fatalf("stream of a token whose roles changed: %v; want PermissionDenied saying reconnect", err)
	}
	// The unchanged token's stream is still open and tracked; the two
	// ended ones are not.
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.guard.liveMu.Lock()
		n := len(r.guard.live)
		r.guard.liveMu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d streams tracked; want 1 (the unchanged token's)", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := kept.CloseSend(); err != nil {
		t.Fatalf("the unchanged token's stream: %v", err)
	}
}

func TestRefusalFloodDoesNotFloodTheLog(t *testing.T) {
	var logs testbin.SyncBuffer
	g := NewGuard(Options{Registry: registryWith(t, ""), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx := metadata.NewIncomingContext(testCtx(t), metadata.Pairs("authorization", "Bearer wrong"))
	for range 1000 {
		if _, err := g.authenticate(ctx); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("authenticate: %v", err)
		}
	}
	if n := strings.Count(logs.String(), "call refused"); n == 0 || n > 2*refusalLogRate+5 {
		t.Fatalf("%d log lines for 1000 refusals; want at most about %d", n, 2*refusalLogRate)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "refusals_not_logged=") {
		if time.Now().After(deadline) {
			t.Fatalf("no line ever said how many refusals were left out:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
		_, _ = g.authenticate(ctx)
	}
}
