package auth

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// pipelinedExec answers SubmitStream the way the real server does: one
// goroutine receives while responses go out in order from another, each
// after a little work.
type pipelinedExec struct {
	aurav1.UnimplementedExecutionServiceServer
}

func (pipelinedExec) SubmitStream(s aurav1.ExecutionService_SubmitStreamServer) error {
	pending := make(chan chan *aurav1.SubmitResponse, 16)
	go func() {
		defer close(pending)
		for i := 0; ; i++ {
			req, err := s.Recv()
			if err != nil {
				return
			}
			ch := make(chan *aurav1.SubmitResponse, 1)
			pending <- ch
			go func() {
				time.Sleep(time.Duration(i%3) * time.Millisecond) // answers finish out of order
				ch <- &aurav1.SubmitResponse{TaskId: req.GetTask()}
			}()
		}
	}()
	for ch := range pending {
		if err := s.Send(<-ch); err != nil {
			return err
		}
	}
	return nil
}

func TestCheckedStreamKeepsResponsesInRequestOrder(t *testing.T) {
	check := func(m any) error {
		if strings.HasPrefix(m.(*aurav1.SubmitRequest).GetTask(), "bad/") {
			return status.Error(codes.InvalidArgument, "task: bad")
		}
		return nil
	}
	srv := grpc.NewServer(grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		return h(srv, &CheckedStream{ServerStream: ss, Check: check, Reject: SubmitRejection})
	}))
	aurav1.RegisterExecutionServiceServer(srv, pipelinedExec{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = srv.Serve(lis); close(done) }()
	defer func() { srv.Stop(); <-done }()
	conn, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	s, err := aurav1.NewExecutionServiceClient(conn).SubmitStream(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	go func() {
		for i := range 300 {
			task := fmt.Sprintf("ok/%d", i)
			if i%4 == 1 || i%7 == 0 || i%7 == 1 {
				task = fmt.Sprintf("bad/%d", i)
			}
			if err := s.Send(&aurav1.SubmitRequest{Task: task}); err != nil {
				return
			}
		}
		_ = s.CloseSend()
	}()
	for i := range 300 {
		if i%4 == 1 || i%7 == 0 || i%7 == 1 {
			want = append(want, "InvalidArgument")
		} else {
			want = append(want, fmt.Sprintf("ok/%d", i))
		}
	}
	var got []string
	for {
		r, err := s.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if e := r.GetError(); e != nil {
			got = append(got, codes.Code(e.GetCode()).String())
		} else {
			got = append(got, r.GetTaskId())
		}
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("responses out of order or missing:\n got %v\nwant %v", got, want)
	}
}
