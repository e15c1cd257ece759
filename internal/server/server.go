package server

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// Server is the gRPC server with every Aura service registered.
type Server struct {
	GRPC   *grpc.Server
	Health *health.Server
}

// New builds the gRPC server. opts are appended (TLS credentials, limits,
// the auth interceptors), inside the recovery interceptor.
func New(d Deps, opts ...grpc.ServerOption) *Server {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	panics := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		d.Logger.Error("handler panicked", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		return status.Error(codes.Internal, "internal error")
	})
	base := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(recovery.UnaryServerInterceptor(panics)),
		grpc.ChainStreamInterceptor(recovery.StreamServerInterceptor(panics)),
		grpc.MaxRecvMsgSize(4 << 20),
		grpc.ForceServerCodecV2(newCodec()),
		// Bounds on what one connection may hold before any interceptor
		// sees it: streams at once, header bytes, and a handshake that
		// never finishes.
		grpc.MaxConcurrentStreams(1024),
		grpc.MaxHeaderListSize(1 << 20),
		grpc.ConnectionTimeout(10 * time.Second),
	}
	// Validation runs innermost: after authentication and authorization
	// (passed in opts), so an unauthenticated caller learns nothing more.
	validation := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(ValidationUnaryInterceptor),
		grpc.ChainStreamInterceptor(ValidationStreamInterceptor),
	}
	gs := grpc.NewServer(append(append(base, opts...), validation...)...)
	aurav1.RegisterExecutionServiceServer(gs, &executionService{d: d})
	aurav1.RegisterHookServiceServer(gs, &hookService{d: d})
	if d.Schedules != nil {
		aurav1.RegisterScheduleServiceServer(gs, &scheduleService{d: d})
	}
	if d.Nodes != nil {
		aurav1.RegisterClusterServiceServer(gs, &clusterService{d: d})
	}
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	s := &Server{GRPC: gs, Health: hs}
	s.SetServing(true)
	return s
}

// healthServices are the names grpc.health.v1 answers for: the server as
// a whole ("") and each Aura service.
var healthServices = []string{"", aurav1.ExecutionService_ServiceDesc.ServiceName, aurav1.HookService_ServiceDesc.ServiceName}

// SetServing marks every service SERVING or NOT_SERVING, and tells
// health watchers. Once Draining, it changes nothing.
func (s *Server) SetServing(serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	for _, svc := range healthServices {
		s.Health.SetServingStatus(svc, st)
	}
}

// Draining marks every service NOT_SERVING.
func (s *Server) Draining() {
	s.Health.Shutdown()
}
