package server_test

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/aura-dev/aura/client"
	"github.com/aura-dev/aura/internal/daemon"
	"github.com/aura-dev/aura/internal/resources"
	"github.com/aura-dev/aura/internal/testbin"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// No RPC panics on purpose, so the test wraps the real handlers: a call
// carrying x-test-panic panics inside the interceptor chain, exactly where
// a handler bug would.
func panicUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if len(metadata.ValueFromIncomingContext(ctx, "x-test-panic")) > 0 {
		panic("boom from a handler")
	}
	return h(ctx, req)
}

func panicStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if len(metadata.ValueFromIncomingContext(ss.Context(), "x-test-panic")) > 0 {
		panic("boom from a stream handler")
	}
	return h(srv, ss)
}

func TestHandlerPanicIsInternalAndTheDaemonKeepsServing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var logs testbin.SyncBuffer
	decl, err := resources.Load("../../examples/resources.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(ctx, daemon.Config{
		PlansDir: "../../examples/plans", DataDir: ":memory:", CPUWorkers: -1, ShutdownGrace: time.Second, Resources: decl,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	}, grpc.ChainUnaryInterceptor(panicUnary), grpc.ChainStreamInterceptor(panicStream))
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
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	c, err := client.Dial(lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	boom := metadata.AppendToOutgoingContext(ctx, "x-test-panic", "1")
	_, err = c.Submit(boom, &aurav1.SubmitRequest{Task: "demo/hello"})
	if status.Code(err) != codes.Internal || status.Convert(err).Message() != "internal error" {
		t.Fatalf("Submit that panics: %v; want Internal with no detail", err)
	}
	s, err := c.Exec.Stream(boom, &aurav1.StreamRequest{})
	if err == nil {
		_, err = s.Recv()
	}
	if status.Code(err) != codes.Internal {
		t.Fatalf("Stream that panics: %v; want Internal", err)
	}

	// The same connection and the daemon still work.
	resp, err := c.Submit(ctx, &aurav1.SubmitRequest{Task: "demo/hello"})
	if err != nil {
		t.Fatalf("Submit after the panics: %v", err)
	}
	task, err := c.Wait(ctx, resp.TaskId)
	if err != nil || task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("task after the panics: %v, %v", task.GetStatus(), err)
	}
	out := logs.String()
	if !strings.Contains(out, "handler panicked") || !strings.Contains(out, "boom from a handler") || !strings.Contains(out, "goroutine ") {
		t.Fatalf("the panic was not logged with a stack:\n%s", out)
	}
}
