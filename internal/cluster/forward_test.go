package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// shared is the membership every test node sees.
type shared struct {
	mu    sync.Mutex
	nodes []Node
}

func (s *shared) view(self string) Directory { return &sharedView{s: s, self: self} }

type sharedView struct {
	s    *shared
	self string
}

func (v *sharedView) Self() string { return v.self }
func (v *sharedView) Nodes() []Node {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	return slices.Clone(v.s.nodes)
}
func (v *sharedView) Lookup(name string) (Node, bool) {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	return find(v.s.nodes, name)
}

func (s *shared) remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nodes = slices.DeleteFunc(s.nodes, func(n Node) bool { return n.Name == name })
}

// fakeExec is a node's ExecutionService: its own tasks, newest first, and
// the calls it was asked, with their credentials.
type fakeExec struct {
	aurav1.UnimplementedExecutionServiceServer
	name  string
	tasks []*aurav1.Task
	stall chan struct{} // non-nil: ListTasks and GetStats wait on it

	mu    sync.Mutex
	calls []string // method + " " + authorization + " " + forwarded-by
}

func (x *fakeExec) note(ctx context.Context, method string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	md, _ := metadata.FromIncomingContext(ctx)
	x.calls = append(x.calls, method+" "+strings.Join(md.Get("authorization"), ",")+" "+strings.Join(md.Get(ForwardedByKey), ","))
}

func (x *fakeExec) seen() []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return slices.Clone(x.calls)
}

func (x *fakeExec) find(id string) (*aurav1.Task, error) {
	for _, t := range x.tasks {
		if t.Id == id {
			return t, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "task %s not found on %s", id, x.name)
}

func (x *fakeExec) GetTask(ctx context.Context, r *aurav1.GetTaskRequest) (*aurav1.Task, error) {
	x.note(ctx, "GetTask")
	return x.find(r.TaskId)
}

func (x *fakeExec) CancelTask(ctx context.Context, r *aurav1.CancelTaskRequest) (*aurav1.CancelTaskResponse, error) {
	x.note(ctx, "CancelTask")
	t, err := x.find(r.TaskId)
	if err != nil {
		return nil, err
	}
	return &aurav1.CancelTaskResponse{Task: &aurav1.Task{Id: t.Id, Status: aurav1.TaskStatus_TASK_STATUS_CANCELLED}}, nil
}

func (x *fakeExec) Stream(r *aurav1.StreamRequest, ss aurav1.ExecutionService_StreamServer) error {
	x.note(ss.Context(), "Stream")
	if _, err := x.find(r.TaskId); err != nil {
		return err
	}
	for i, typ := range []string{"task.queued", "task.running", "task.finished"} {
		if err := ss.Send(&aurav1.TaskEvent{Sequence: uint64(i + 1), TaskId: r.TaskId, Type: typ}); err != nil {
			return err
		}
	}
	return nil
}

func (x *fakeExec) ListTasks(ctx context.Context, r *aurav1.ListTasksRequest) (*aurav1.ListTasksResponse, error) {
	x.note(ctx, "ListTasks")
	if x.stall != nil {
		<-x.stall
	}
	start := 0
	if r.PageToken != "" {
		i, err := strconv.Atoi(r.PageToken)
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, "page_token")
		}
		start = i + 1
	}
	resp := &aurav1.ListTasksResponse{}
	for i := start; i < len(x.tasks) && len(resp.Tasks) < int(r.PageSize); i++ {
		resp.Tasks = append(resp.Tasks, x.tasks[i])
		if r.PageTokens {
			resp.PageTokens = append(resp.PageTokens, strconv.Itoa(i))
		}
	}
	if last := start + len(resp.Tasks) - 1; last < len(x.tasks)-1 {
		resp.NextPageToken = strconv.Itoa(last)
	}
	return resp, nil
}

func (x *fakeExec) GetStats(ctx context.Context, _ *aurav1.GetStatsRequest) (*aurav1.Stats, error) {
	x.note(ctx, "GetStats")
	if x.stall != nil {
		<-x.stall
	}
	return &aurav1.Stats{
		Global:         &aurav1.ResourceStats{Key: "global", Limit: 4, InUse: 1},
		Resources:      []*aurav1.ResourceStats{{Key: "device:emu-" + x.name, Limit: 1, InUse: 1}},
		CountsByStatus: map[string]int64{"TASK_STATUS_SUCCEEDED": int64(len(x.tasks))},
	}, nil
}

func (x *fakeExec) Submit(ctx context.Context, r *aurav1.SubmitRequest) (*aurav1.SubmitResponse, error) {
	x.note(ctx, "Submit")
	return &aurav1.SubmitResponse{TaskId: TaskID(x.name, "new"), Status: aurav1.TaskStatus_TASK_STATUS_QUEUED}, nil
}

// testNode is one node: a gRPC server on loopback with the forwarder.
type testNode struct {
	exec  *fakeExec
	addr  string
	peers *Peers
}

// caller stands for the auth guard: a bearer token names its caller, the
// x-test-cert metadata stands for a verified client certificate, and a
// call with neither is anonymous.
func caller(ctx context.Context) (string, bool) {
	if v := metadata.ValueFromIncomingContext(ctx, "authorization"); len(v) > 0 {
		return strings.TrimPrefix(v[0], "Bearer "), false
	}
	if len(metadata.ValueFromIncomingContext(ctx, "x-test-cert")) > 0 {
		return "cert:ops.example", false
	}
	return "anonymous", true
}

func startNodes(t *testing.T, names ...string) (map[string]*testNode, *shared) {
	t.Helper()
	members := &shared{}
	nodes := map[string]*testNode{}
	for _, name := range names {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dir := members.view(name)
		quiet := slog.New(slog.DiscardHandler)
		peers := NewPeers(PeersParams{Directory: dir, PruneEvery: 20 * time.Millisecond, Logger: quiet})
		peers.Start()
		x := &fakeExec{name: name}
		fw := NewForwarder(ForwarderParams{Directory: dir, Peers: peers, FanOutTimeout: 500 * time.Millisecond, Logger: quiet,
			SubmitTags: func(r *aurav1.SubmitRequest) ([]string, error) { return r.ResourceTags, nil }, Caller: caller})
		gs := grpc.NewServer(fw.ServerOptions()...)
		aurav1.RegisterExecutionServiceServer(gs, x)
		go gs.Serve(lis)
		t.Cleanup(func() { gs.Stop(); peers.Shutdown() })
		nodes[name] = &testNode{exec: x, addr: lis.Addr().String(), peers: peers}
		members.nodes = append(members.nodes, Node{Name: name, Address: lis.Addr().String(), Capacity: 4,
			Pools: map[string][]string{"device": {"emu-" + name}}, Free: map[string][]string{"device": {"emu-" + name}}})
	}
	return nodes, members
}

func dialNode(t *testing.T, n *testNode) aurav1.ExecutionServiceClient {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+n.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return aurav1.NewExecutionServiceClient(cc)
}

func withToken(token string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}

func TestCallsAboutATaskReachItsOwnerWithTheCallersToken(t *testing.T) {
	nodes, _ := startNodes(t, "a", "b", "c")
	nodes["c"].exec.tasks = []*aurav1.Task{{Id: "c.1", Task: "demo/hello"}}
	a := dialNode(t, nodes["a"])
	ctx := withToken("alice")

	got, err := a.GetTask(ctx, &aurav1.GetTaskRequest{TaskId: "c.1"})
	if err != nil || got.Id != "c.1" {
		t.Fatalf("GetTask through a: %v, %v", got, err)
	}
	if _, err := a.CancelTask(ctx, &aurav1.CancelTaskRequest{TaskId: "c.1"}); err != nil {
		t.Fatalf("CancelTask through a: %v", err)
	}
	st, err := a.Stream(ctx, &aurav1.StreamRequest{TaskId: "c.1"})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for {
		ev, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Stream through a: %v", err)
		}
		types = append(types, ev.Type)
	}
	if strings.Join(types, ",") != "task.queued,task.running,task.finished" {
		t.Errorf("streamed %v", types)
	}
	want := []string{"GetTask Bearer alice a", "CancelTask Bearer alice a", "Stream Bearer alice a"}
	if got := nodes["c"].exec.seen(); !slices.Equal(got, want) {
		t.Errorf("c was asked %q; want %q", got, want)
	}
	if got := nodes["a"].exec.seen(); len(got) != 0 {
		t.Errorf("a answered itself: %q", got)
	}
	// The owner's own answer comes back as it is.
	_, err = a.GetTask(ctx, &aurav1.GetTaskRequest{TaskId: "c.404"})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "c.404") {
		t.Errorf("unknown task of c: %v", err)
	}
}

func TestAForwardedCallIsNeverForwardedAgain(t *testing.T) {
	nodes, _ := startNodes(t, "a", "b")
	a := dialNode(t, nodes["a"])
	ctx := metadata.AppendToOutgoingContext(withToken("alice"), ForwardedByKey, "x")
	_, err := a.GetTask(ctx, &aurav1.GetTaskRequest{TaskId: "b.1"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("got %v; want a's own NOT_FOUND", err)
	}
	if len(nodes["b"].exec.seen()) != 0 {
		t.Errorf("b was asked %q", nodes["b"].exec.seen())
	}
}

func TestACallForANodeThatIsNotLiveSaysSo(t *testing.T) {
	nodes, members := startNodes(t, "a", "b")
	a := dialNode(t, nodes["a"])
	members.remove("b")
	for _, id := range []string{"b.1", "zz.1"} {
		_, err := a.GetTask(withToken("alice"), &aurav1.GetTaskRequest{TaskId: id})
		node, _ := NodeOf(id)
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "node "+node+" is not live") || !strings.Contains(err.Error(), "start node "+node) {
			t.Errorf("%s: got %v; want UNAVAILABLE naming node %s and what to do", id, err, node)
		}
	}
	// The connection to b was closed once b left.
	deadline := time.Now().Add(5 * time.Second)
	for nodes["a"].peers.Open() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("a still holds %d peer connections after b left", nodes["a"].peers.Open())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestACertificateIdentityIsNotForwarded(t *testing.T) {
	nodes, _ := startNodes(t, "a", "b")
	a := dialNode(t, nodes["a"])
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-test-cert", "1")
	_, err := a.GetTask(ctx, &aurav1.GetTaskRequest{TaskId: "b.1"})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "call node b directly") {
		t.Errorf("got %v; want FAILED_PRECONDITION saying to call b directly", err)
	}
	if len(nodes["b"].exec.seen()) != 0 {
		t.Errorf("b was asked %q", nodes["b"].exec.seen())
	}
}

func TestListTasksAnswersForTheCluster(t *testing.T) {
	nodes, _ := startNodes(t, "a", "b", "c")
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	total := 0
	for i, name := range []string{"a", "b", "c"} {
		for j := 9 - 2*i; j >= 0; j-- { // a has 10, b 8, c 6, interleaved in time
			nodes[name].exec.tasks = append(nodes[name].exec.tasks, &aurav1.Task{Id: fmt.Sprintf("%s.%d", name, j), CreatedAt: timestamppb.New(base.Add(time.Duration(3*j+i) * time.Second))})
			total++
		}
	}
	b := dialNode(t, nodes["b"])
	seen := map[string]bool{}
	token := ""
	for page := 0; page < 10; page++ {
		resp, err := b.ListTasks(withToken("alice"), &aurav1.ListTasksRequest{PageSize: 7, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.UnreachableNodes) != 0 {
			t.Fatalf("unreachable: %v", resp.UnreachableNodes)
		}
		for _, tk := range resp.Tasks {
			if seen[tk.Id] {
				t.Fatalf("%s listed twice", tk.Id)
			}
			seen[tk.Id] = true
		}
		if token = resp.NextPageToken; token == "" {
			break
		}
	}
	if len(seen) != total {
		t.Errorf("listed %d of %d tasks", len(seen), total)
	}
	for _, call := range nodes["c"].exec.seen() {
		if call != "ListTasks Bearer alice b" {
			t.Errorf("c was asked %q", call)
		}
	}
	_, err := b.ListTasks(withToken("alice"), &aurav1.ListTasksRequest{PageToken: "YTEw"})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "page_token") {
		t.Errorf("a node's own token: %v", err)
	}
}

func TestAFanOutNamesTheNodeThatDidNotAnswer(t *testing.T) {
	nodes, _ := startNodes(t, "a", "b", "c")
	stall := make(chan struct{})
	defer close(stall)
	nodes["c"].exec.stall = stall
	nodes["b"].exec.tasks = []*aurav1.Task{{Id: "b.1", CreatedAt: timestamppb.Now()}}
	a := dialNode(t, nodes["a"])
	resp, err := a.ListTasks(withToken("alice"), &aurav1.ListTasksRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(resp.UnreachableNodes, []string{"c"}) || len(resp.Tasks) != 1 || resp.NextPageToken == "" {
		t.Errorf("got unreachable %v, %d tasks, next %q; want c named, b's task, and a token that asks c again", resp.UnreachableNodes, len(resp.Tasks), resp.NextPageToken)
	}
	stats, err := a.GetStats(withToken("alice"), &aurav1.GetStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(stats.UnreachableNodes, []string{"c"}) || len(stats.Nodes) != 2 || stats.Global.Limit != 8 || stats.Global.InUse != 2 || len(stats.Resources) != 2 {
		t.Errorf("stats: unreachable %v, %d nodes, global %v, %d resources", stats.UnreachableNodes, len(stats.Nodes), stats.Global, len(stats.Resources))
	}
}

func TestSubmitGoesToTheNodeWithTheDevice(t *testing.T) {
	nodes, _ := startNodes(t, "a", "b", "c")
	a := dialNode(t, nodes["a"])
	resp, err := a.Submit(withToken("alice"), &aurav1.SubmitRequest{Task: "demo/hello", ResourceTags: []string{"device:emu-c"}})
	if err != nil || resp.TaskId != "c.new" {
		t.Fatalf("got %v, %v; want c's task", resp, err)
	}
	if got := nodes["c"].exec.seen(); !slices.Equal(got, []string{"Submit Bearer alice a"}) {
		t.Errorf("c was asked %q", got)
	}
	resp, err = a.Submit(withToken("alice"), &aurav1.SubmitRequest{Task: "demo/hello"})
	if err != nil || resp.TaskId != "a.new" {
		t.Errorf("untagged: got %v, %v; want it kept on a", resp, err)
	}
	_, err = a.Submit(withToken("alice"), &aurav1.SubmitRequest{Task: "demo/hello", ResourceTags: []string{"device:emu-z"}})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "emu-c@c") {
		t.Errorf("an instance no live node has: %v", err)
	}
}

func (x *fakeExec) SubmitStream(ss aurav1.ExecutionService_SubmitStreamServer) error {
	x.note(ss.Context(), "SubmitStream")
	for i := 0; ; i++ {
		req, err := ss.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := ss.Send(&aurav1.SubmitResponse{TaskId: TaskID(x.name, req.Labels["n"])}); err != nil {
			return err
		}
	}
}

func TestSubmitStreamRoutesEachRequestAndKeepsTheOrder(t *testing.T) {
	nodes, _ := startNodes(t, "a", "b", "c")
	a := dialNode(t, nodes["a"])
	st, err := a.SubmitStream(withToken("alice"))
	if err != nil {
		t.Fatal(err)
	}
	devices := []string{"emu-c", "emu-a", "emu-b", "emu-z", "emu-c", "emu-c", "emu-a", "emu-b"}
	var want []string
	go func() {
		for i, dev := range devices {
			_ = st.Send(&aurav1.SubmitRequest{Task: "demo/hello", ResourceTags: []string{"device:" + dev}, Labels: map[string]string{"n": strconv.Itoa(i)}})
		}
		_ = st.CloseSend()
	}()
	for i, dev := range devices {
		if dev == "emu-z" {
			want = append(want, "error")
			continue
		}
		want = append(want, TaskID(strings.TrimPrefix(dev, "emu-"), strconv.Itoa(i)))
	}
	var got []string
	for {
		resp, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		if resp.Error != nil {
			if codes.Code(resp.Error.Code) != codes.Unavailable {
				t.Errorf("emu-z answered %v", resp.Error)
			}
			got = append(got, "error")
			continue
		}
		got = append(got, resp.TaskId)
	}
	if !slices.Equal(got, want) {
		t.Errorf("answers %v; want %v", got, want)
	}
	if calls := nodes["c"].exec.seen(); !slices.Equal(calls, []string{"SubmitStream Bearer alice a"}) {
		t.Errorf("c was asked %q; want one stream with alice's token", calls)
	}
}
