package server_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/aura-dev/aura/client"
	"github.com/aura-dev/aura/internal/daemon"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// TestClusterHookCallsOutsideACluster checks what a daemon that is not a
// node of a cluster answers to the cluster parts of HookService: a clear
// code and a message saying what to do, never a silent single-node stream.
func TestClusterHookCallsOutsideACluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := daemon.New(ctx, daemon.Config{
		PlansDir: "../../examples/plans", DataDir: ":memory:", CPUWorkers: -1, ShutdownGrace: time.Second, SkipBrokenPlans: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- d.Serve(lis) }()
	defer func() {
		d.Shutdown(context.Background())
		<-served
	}()
	c, err := client.Dial(lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	subscribe := func(req *aurav1.SubscribeRequest) error {
		s, err := c.Hooks.Subscribe(ctx, req)
		if err == nil {
			_, err = s.Recv()
		}
		return err
	}
	for _, tc := range []struct {
		req  *aurav1.SubscribeRequest
		code codes.Code
		msg  string
	}{
		{&aurav1.SubscribeRequest{Cluster: true}, codes.FailedPrecondition, "not in a cluster"},
		{&aurav1.SubscribeRequest{Cursor: &aurav1.ClusterCursor{After: map[string]uint64{"a": 1}}}, codes.InvalidArgument, "cursor: needs cluster"},
		{&aurav1.SubscribeRequest{Nodes: []string{"a"}}, codes.InvalidArgument, "nodes: needs cluster"},
		{&aurav1.SubscribeRequest{Cluster: true, Nodes: []string{"Not A Node"}}, codes.InvalidArgument, "nodes"},
	} {
		err := subscribe(tc.req)
		if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.msg) {
			t.Errorf("Subscribe %v: %v, want %s mentioning %q", tc.req, err, tc.code, tc.msg)
		}
	}
	_, err = c.Hooks.AskInterceptor(ctx, &aurav1.AskInterceptorRequest{Interceptor: "1-1", Task: &aurav1.Task{Id: "t", Task: "demo/hello"}})
	if status.Code(err) != codes.NotFound || !strings.Contains(status.Convert(err).Message(), "no interceptor") {
		t.Errorf("AskInterceptor for an interceptor not connected here: %v, want NOT_FOUND", err)
	}
	_, err = c.Hooks.AskInterceptor(ctx, &aurav1.AskInterceptorRequest{Interceptor: "1-1"})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "task") {
		t.Errorf("AskInterceptor without a task: %v, want INVALID_ARGUMENT naming task", err)
	}
}
