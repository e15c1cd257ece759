package client_test

import (
	"context"
	"errors"
	"maps"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/aura-dev/aura/client"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// scriptedHooks is a HookService whose Subscribe plays one script per
// call, recording each request: a cluster stream as a node would send it.
type scriptedHooks struct {
	aurav1.UnimplementedHookServiceServer
	mu      sync.Mutex
	scripts [][]*aurav1.HookEvent // one per call; each ends the stream UNAVAILABLE
	reqs    []*aurav1.SubscribeRequest
}

func (s *scriptedHooks) Subscribe(req *aurav1.SubscribeRequest, stream aurav1.HookService_SubscribeServer) error {
	s.mu.Lock()
	s.reqs = append(s.reqs, proto.Clone(req).(*aurav1.SubscribeRequest))
	var script []*aurav1.HookEvent
	if len(s.scripts) > 0 {
		script, s.scripts = s.scripts[0], s.scripts[1:]
	}
	s.mu.Unlock()
	if script == nil {
		<-stream.Context().Done()
		return nil
	}
	for _, ev := range script {
		if err := stream.Send(ev); err != nil {
			return err
		}
	}
	return status.Error(codes.Unavailable, "the node restarts")
}

func event(node string, seq uint64, hook string) *aurav1.HookEvent {
	return &aurav1.HookEvent{Node: node, Sequence: seq, Hook: hook, Task: &aurav1.Task{Id: node + ".t"}}
}

func mark(node string, seq uint64) *aurav1.HookEvent {
	return &aurav1.HookEvent{Node: node, Sequence: seq}
}

// TestClusterSubscribeResumesFromItsCursor checks the Go client's side of
// a cluster stream: position marks move the cursor but are not passed on,
// a broken stream is opened again with the cursor (so the server resumes
// each node after what was passed), and the caller's Cursor is where it
// stopped.
func TestClusterSubscribeResumesFromItsCursor(t *testing.T) {
	srv := &scriptedHooks{scripts: [][]*aurav1.HookEvent{
		{mark("a", 10), mark("b", 0), event("a", 11, "before_task_run"), event("b", 1, "before_task_run")},
		// After the break the server resumes each node after the cursor.
		{event("b", 2, "after_task_run"), mark("c", 5), event("a", 12, "after_task_run")},
	}}
	gs := grpc.NewServer()
	aurav1.RegisterHookServiceServer(gs, srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	defer gs.Stop()
	c, err := client.Dial(lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cur := &aurav1.ClusterCursor{}
	var got []string
	stop := errors.New("seen enough")
	err = c.Subscribe(ctx, client.SubscribeOptions{Cluster: true, Cursor: cur, Hooks: []string{"before_task_run", "after_task_run"}},
		func(ev *aurav1.HookEvent) error {
			got = append(got, ev.Node+":"+ev.Hook)
			if len(got) == 4 {
				return stop
			}
			return nil
		})
	if !errors.Is(err, stop) {
		t.Fatalf("Subscribe: %v", err)
	}
	want := []string{"a:before_task_run", "b:before_task_run", "b:after_task_run", "a:after_task_run"}
	if !slices.Equal(got, want) {
		t.Fatalf("passed %v, want %v (marks are not events)", got, want)
	}
	if w := map[string]uint64{"a": 12, "b": 2, "c": 5}; !maps.Equal(cur.After, w) {
		t.Fatalf("cursor %v, want %v", cur.After, w)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.reqs) != 2 {
		t.Fatalf("%d Subscribe calls, want 2", len(srv.reqs))
	}
	first, second := srv.reqs[0], srv.reqs[1]
	if !first.Cluster || first.Cursor != nil || !second.Cluster {
		t.Fatalf("requests %v then %v: want cluster, no cursor at first", first, second)
	}
	if w := map[string]uint64{"a": 11, "b": 1}; !maps.Equal(second.GetCursor().GetAfter(), w) {
		t.Fatalf("resumed with cursor %v, want %v", second.GetCursor().GetAfter(), w)
	}
}
