package daemon

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"

	"github.com/aura-dev/aura/client"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// A caller's trace continues into the task: the task span is a child of
// the caller's span (from the gRPC metadata), and admission and each step
// are children of the task span.
func TestTaskSpansContinueTheCallersTrace(t *testing.T) {
	serverSpans := tracetest.NewSpanRecorder()
	serverTP := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(serverSpans))
	defer serverTP.Shutdown(context.Background())
	ctx := context.Background()
	d, err := New(ctx, Config{
		PlansDir: "../../examples/plans", DataDir: ":memory:", CPUWorkers: -1, Resources: exampleResources(t),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), TracerProvider: serverTP,
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
		d.Shutdown(ctx)
		<-served
	}()

	clientSpans := tracetest.NewSpanRecorder()
	clientTP := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(clientSpans))
	defer clientTP.Shutdown(context.Background())
	c, err := client.Dial(lis.Addr().String(), client.WithDialOptions(grpc.WithStatsHandler(otelgrpc.NewClientHandler(
		otelgrpc.WithTracerProvider(clientTP), otelgrpc.WithPropagators(propagation.TraceContext{})))))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rctx, root := clientTP.Tracer("test").Start(ctx, "scheduler run")
	resp, err := c.Submit(rctx, &aurav1.SubmitRequest{Task: "demo/hello"})
	root.End()
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if task, err := c.Wait(wctx, resp.TaskId); err != nil || task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("task: %v %v", task, err)
	}
	// The task span ends just after task.finished is recorded.
	var spans map[string]sdktrace.ReadOnlySpan
	deadline := time.Now().Add(10 * time.Second)
	for {
		spans = map[string]sdktrace.ReadOnlySpan{}
		for _, s := range serverSpans.Ended() {
			spans[s.Name()] = s
		}
		if spans["task demo/hello"] != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	task := spans["task demo/hello"]
	if task == nil {
		t.Fatalf("no task span among %v", names(spans))
	}
	if task.SpanContext().TraceID() != root.SpanContext().TraceID() {
		t.Fatalf("task span is in trace %s, the caller's is %s", task.SpanContext().TraceID(), root.SpanContext().TraceID())
	}
	for _, child := range []string{"admission", "step greet", "step echo"} {
		s := spans[child]
		if s == nil || s.Parent().SpanID() != task.SpanContext().SpanID() {
			t.Fatalf("span %q missing or not a child of the task span; spans: %v", child, names(spans))
		}
	}
}

func names(m map[string]sdktrace.ReadOnlySpan) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
