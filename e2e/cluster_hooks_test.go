package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/aura-dev/aura/client"
	"github.com/aura-dev/aura/internal/auth"
	"github.com/aura-dev/aura/internal/cluster"
	"github.com/aura-dev/aura/internal/cluster/etcdtest"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// hookNode is one aurad of a test cluster, restartable with its data and
// address.
type hookNode struct {
	name, addr, plans, data string
	args                    []string
	token                   string // the test client's, when the nodes authenticate
	*daemon
}

// hookClusterOpts are a test cluster's extra aurad flags per node, and the
// token the test's clients present ("" none).
type hookClusterOpts struct {
	args  func(node string) []string
	token string
}

// startHookCluster starts a three-member etcd and one aurad per name, each
// with its own data directory, and waits until every node sees them all.
func startHookCluster(t *testing.T, o hookClusterOpts, names ...string) (*etcdtest.Cluster, map[string]*hookNode) {
	t.Helper()
	etcd := etcdtest.Start(t, 3)
	plans := t.TempDir()
	for _, src := range []string{"../examples/plans/demo", "testdata/plans/e2e"} {
		copyDir(t, src, filepath.Join(plans, filepath.Base(src)))
	}
	nodes := map[string]*hookNode{}
	for _, name := range names {
		nodes[name] = startHookNode(t, etcd, plans, o, name)
	}
	for _, n := range nodes {
		n.waitForNodes(t, len(names))
	}
	return etcd, nodes
}

// startHookNode starts one node of the cluster on etcd, with a data
// directory and an address of its own.
func startHookNode(t *testing.T, etcd *etcdtest.Cluster, plans string, o hookClusterOpts, name string) *hookNode {
	t.Helper()
	addr := freeLoopbackAddr(t)
	n := &hookNode{name: name, addr: addr, plans: plans, data: t.TempDir(),
		args: []string{"--listen", addr, "--cluster-etcd", strings.Join(etcd.Endpoints(), ","),
			"--node", name, "--advertise", addr, "--cluster-ttl", "3s"}, token: o.token}
	if o.args != nil {
		n.args = append(n.args, o.args(name)...)
	}
	n.start(t)
	return n
}

func (n *hookNode) start(t *testing.T) {
	t.Helper()
	n.daemon = startDaemonIn(t, n.plans, n.data, n.args...)
	if n.token != "" {
		n.client = dialAs(t, n.addr, client.WithToken(n.token))
	}
}

// waitForNodes waits until the node lists want live nodes.
func (n *hookNode) waitForNodes(t *testing.T, want int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("node %s to see %d nodes", n.name, want), 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := aurav1.NewClusterServiceClient(n.client.Conn()).ListNodes(ctx, &aurav1.ListNodesRequest{})
		return err == nil && len(resp.GetNodes()) == want
	})
}

// freeLoopbackAddr returns a loopback address whose port was free a
// moment ago: a node's --listen and --advertise, kept across its restart.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// hookLog collects hook events from a Subscribe.
type hookLog struct {
	mu  sync.Mutex
	evs []*aurav1.HookEvent
}

func (l *hookLog) add(ev *aurav1.HookEvent) error {
	l.mu.Lock()
	l.evs = append(l.evs, ev)
	l.mu.Unlock()
	return nil
}

func (l *hookLog) snapshot() []*aurav1.HookEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.evs)
}

// finished reports whether the log holds the after_task_run of every task in ids.
func (l *hookLog) finished(ids []string) bool {
	done := map[string]bool{}
	for _, ev := range l.snapshot() {
		if ev.Hook == "after_task_run" {
			done[ev.Task.GetId()] = true
		}
	}
	for _, id := range ids {
		if !done[id] {
			return false
		}
	}
	return true
}

// describe lists events one per line, for a failure message.
func describe(evs []*aurav1.HookEvent) string {
	var b strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&b, "  %s #%d %s %s\n", ev.Node, ev.Sequence, ev.Hook, ev.Task.GetId())
	}
	return b.String()
}

// submitEach submits n demo/hello tasks to each node and waits for them.
func submitEach(t *testing.T, ctx context.Context, nodes []*hookNode, n int) (ids []string) {
	t.Helper()
	for _, node := range nodes {
		for range n {
			id := node.submit(ctx, &aurav1.SubmitRequest{Task: "demo/hello"})
			if got, ok := cluster.NodeOf(id); !ok || got != node.name {
				t.Fatalf("a task submitted to node %s has id %s", node.name, id)
			}
			if task := node.wait(ctx, id); task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
				t.Fatalf("task %s on %s: %s %v", id, node.name, task.Status, task.Error)
			}
			ids = append(ids, id)
		}
	}
	return ids
}

// TestClusterHookStreamSeesEveryNodeOnceInOrder follows a three-node
// cluster's merged hook stream across a disconnect of the subscriber, a
// kill -9 and restart of one node and a fourth node joining, resuming from
// the client's cursor on another node, and checks that it passed every node's hook events exactly
// once, in each node's order: the same events, in the same order, as each
// node's own stream from its start.
func TestClusterHookStreamSeesEveryNodeOnceInOrder(t *testing.T) {
	etcd, nodes := startHookCluster(t, hookClusterOpts{}, "a", "b", "c")
	a, b, c := nodes["a"], nodes["b"], nodes["c"]
	all := []*hookNode{a, b, c}
	ctx := ctxT(t, 3*time.Minute)

	merged := &hookLog{}
	cursor := &aurav1.ClusterCursor{}
	zero := uint64(0)
	follow := func(via *hookNode) (stop func() error) {
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			// From the start of every node's log, then live; later
			// calls resume from the cursor.
			done <- via.client.Subscribe(sctx, client.SubscribeOptions{Cluster: true, After: &zero, Cursor: cursor}, merged.add)
		}()
		return func() error { cancel(); return <-done }
	}

	stop := follow(a)
	ids := submitEach(t, ctx, all, 2)
	waitFor(t, "the merged stream to show every task", 30*time.Second, func() bool { return merged.finished(ids) })

	// Disconnect; tasks run everywhere meanwhile.
	if err := stop(); status.Code(err) != codes.Canceled {
		t.Fatalf("Subscribe ended with %v, want it cancelled", err)
	}
	if got := len(cursor.After); got != 3 {
		t.Fatalf("the cursor names %d nodes (%v), want 3", got, cursor.After)
	}
	ids = append(ids, submitEach(t, ctx, all, 2)...)

	// Resume through another node, then kill -9 b and start it again:
	// the stream follows b again from where it was.
	stop = follow(c)
	ids = append(ids, submitEach(t, ctx, all, 1)...)
	b.kill()
	ids = append(ids, submitEach(t, ctx, []*hookNode{a, c}, 2)...)
	b.start(t)
	b.waitForNodes(t, 3)
	ids = append(ids, submitEach(t, ctx, all, 2)...)
	// A node that joins while the stream is open is followed from its
	// first event.
	d := startHookNode(t, etcd, a.plans, hookClusterOpts{}, "d")
	c.waitForNodes(t, 4)
	all = append(all, d)
	ids = append(ids, submitEach(t, ctx, all, 1)...)
	waitFor(t, "the merged stream to show every task", 60*time.Second, func() bool { return merged.finished(ids) })
	if err := stop(); status.Code(err) != codes.Canceled {
		t.Fatalf("Subscribe ended with %v, want it cancelled", err)
	}

	got := map[string][]*aurav1.HookEvent{}
	for _, ev := range merged.snapshot() {
		if owner, _ := cluster.NodeOf(ev.Task.GetId()); owner != ev.Node {
			t.Errorf("event %s #%d of task %s names the wrong node", ev.Node, ev.Sequence, ev.Task.GetId())
		}
		got[ev.Node] = append(got[ev.Node], ev)
	}
	for _, n := range all {
		// The node's own stream from its start is the truth.
		own := &hookLog{}
		var mine []string
		for _, id := range ids {
			if owner, _ := cluster.NodeOf(id); owner == n.name {
				mine = append(mine, id)
			}
		}
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- n.client.Subscribe(sctx, client.SubscribeOptions{After: &zero}, own.add) }()
		waitFor(t, "node "+n.name+"'s own stream to show its tasks", 30*time.Second, func() bool { return own.finished(mine) })
		cancel()
		<-done
		want := own.snapshot()
		if !sameEvents(got[n.name], want) {
			t.Errorf("node %s: the merged stream passed\n%sbut the node's own stream is\n%s", n.name, describe(got[n.name]), describe(want))
		}
	}

	// A position a node cannot serve is an error naming the node, never
	// a silent gap.
	stream, err := a.client.Hooks.Subscribe(ctx, &aurav1.SubscribeRequest{Cluster: true,
		Cursor: &aurav1.ClusterCursor{After: map[string]uint64{"a": 0, "b": 1 << 40, "c": 0}}})
	if err == nil {
		for err == nil {
			_, err = stream.Recv()
		}
	}
	if status.Code(err) != codes.OutOfRange || !strings.Contains(status.Convert(err).Message(), "node b:") {
		t.Fatalf("a cursor past node b's log: %v, want OUT_OF_RANGE naming node b", err)
	}

	// auractl hooks tail --cluster shows every node's events, each line
	// starting with its node.
	tail := exec.CommandContext(ctx, bin.auractl, "--addr", b.addr, "hooks", "tail", "--cluster", "--from", "0", "--hook", "after_task_run")
	out, err := tail.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := tail.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tail.Process.Kill(); _ = tail.Wait() }()
	pending := map[string]string{}
	for _, id := range ids {
		owner, _ := cluster.NodeOf(id)
		pending[id] = owner
	}
	lines := bufio.NewScanner(out)
	for len(pending) > 0 && lines.Scan() {
		f := strings.Fields(lines.Text()) // node#seq time hook id task status
		if len(f) >= 4 && strings.HasPrefix(f[0], pending[f[3]]+"#") {
			delete(pending, f[3])
		}
	}
	if len(pending) > 0 {
		t.Fatalf("auractl hooks tail --cluster did not show %d tasks with their node: %v", len(pending), pending)
	}
}

// sameEvents reports whether the merged stream's events of one node are
// exactly the node's own: same sequences, hooks and tasks, same order.
func sameEvents(merged, own []*aurav1.HookEvent) bool {
	if len(merged) != len(own) {
		return false
	}
	for i := range merged {
		m, o := merged[i], own[i]
		if m.Sequence != o.Sequence || m.Hook != o.Hook || m.Task.GetId() != o.Task.GetId() {
			return false
		}
	}
	return true
}

// TestClusterInterceptorOnOneNodeDeniesATaskOnAnother registers an
// interceptor on node a and submits to node b, with authentication on: b
// asks a's interceptor with its own token (--cluster-token-file), which
// a's tokens file gives only the hooks role, and the interceptor denies
// the task; once it disconnects, b's tasks run. On the same cluster, a
// merged hook stream carries the caller's own token to every node: a
// token only node a accepts is refused by node b, and the stream ends
// saying so.
func TestClusterInterceptorOnOneNodeDeniesATaskOnAnother(t *testing.T) {
	nodeToken := filepath.Join(t.TempDir(), "node-token")
	if err := os.WriteFile(nodeToken, []byte("tok-node\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	node := fmt.Sprintf("  - {name: node, sha256: %s, roles: [hooks]}\n", auth.HashToken("tok-node"))
	tokensA := writeTokens(t, node+fmt.Sprintf("  - {name: a-only, sha256: %s, roles: [hooks]}\n", auth.HashToken("tok-a-only")))
	tokensB := writeTokens(t, node)
	_, nodes := startHookCluster(t, hookClusterOpts{token: "ops", args: func(name string) []string {
		tokens := tokensB
		if name == "a" {
			tokens = tokensA
		}
		return []string{"--auth-tokens", tokens, "--cluster-token-file", nodeToken}
	}}, "a", "b")
	a, b := nodes["a"], nodes["b"]
	ctx := ctxT(t, 2*time.Minute)

	calls, stop := interceptor(t, a.daemon, &aurav1.InterceptRegistration{Name: "farm-policy", Plan: "demo"},
		func(c *aurav1.InterceptCall) *aurav1.InterceptDecision {
			return &aurav1.InterceptDecision{CallId: c.CallId, Allow: false, Reason: "no hello on this farm"}
		})
	// b learns of the interceptor through etcd: submit until it asks.
	var denied *aurav1.Task
	waitFor(t, "a task on b to be denied by a's interceptor", 30*time.Second, func() bool {
		denied = b.wait(ctx, b.submit(ctx, &aurav1.SubmitRequest{Task: "demo/hello"}))
		return denied.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED
	})
	if denied.Status != aurav1.TaskStatus_TASK_STATUS_FAILED || denied.Error.GetKind() != "denied" ||
		!strings.Contains(denied.Error.GetMessage(), "denied by farm-policy: no hello on this farm") {
		t.Fatalf("task on b: %s %v, want FAILED, denied by farm-policy", denied.Status, denied.Error)
	}
	if owner, _ := cluster.NodeOf(denied.Id); owner != "b" {
		t.Fatalf("the denied task %s is not b's", denied.Id)
	}
	asked := false
	for len(calls) > 0 {
		if call := <-calls; call.Task.GetId() == denied.Id {
			asked = true
		}
	}
	if !asked {
		t.Fatalf("a's interceptor was not asked about b's task %s", denied.Id)
	}
	// Tasks of other plans are not sent to it.
	if task := b.wait(ctx, b.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"})); task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("e2e/quick on b: %s %v", task.Status, task.Error)
	}

	// Gone from a, it is gone from b.
	stop()
	waitFor(t, "b to run demo/hello again once the interceptor is gone", 30*time.Second, func() bool {
		return b.wait(ctx, b.submit(ctx, &aurav1.SubmitRequest{Task: "demo/hello"})).Status == aurav1.TaskStatus_TASK_STATUS_SUCCEEDED
	})

	// A merged stream asks each node with the caller's own token.
	zero := uint64(0)
	err := dialAs(t, a.addr, client.WithToken("ops")).Subscribe(ctx, client.SubscribeOptions{Cluster: true, After: &zero},
		func(*aurav1.HookEvent) error { return errSeenEnough })
	if !errors.Is(err, errSeenEnough) {
		t.Fatalf("a merged stream as ops: %v", err)
	}
	err = dialAs(t, a.addr, client.WithToken("tok-a-only")).Subscribe(ctx, client.SubscribeOptions{Cluster: true, After: &zero},
		func(*aurav1.HookEvent) error { return nil })
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(status.Convert(err).Message(), "node b:") {
		t.Fatalf("a merged stream with a token only node a accepts: %v, want UNAUTHENTICATED naming node b", err)
	}
}

var errSeenEnough = errors.New("seen enough")
