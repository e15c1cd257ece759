package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/aura-dev/aura/internal/cluster/etcdtest"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// etcdLeader returns the index of the member that leads the etcd cluster,
// asking the members given (the others are stopped).
func etcdLeader(t *testing.T, ctx context.Context, etcd *etcdtest.Cluster, members ...int) int {
	t.Helper()
	var endpoints []string
	for _, i := range members {
		endpoints = append(endpoints, etcd.Endpoint(i))
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	leader := -1
	waitFor(t, "an etcd leader", 15*time.Second, func() bool {
		ids := map[uint64]int{}
		var lead uint64
		for _, i := range members {
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			st, err := cli.Status(sctx, etcd.Endpoint(i))
			cancel()
			if err != nil {
				return false
			}
			ids[st.Header.MemberId] = i
			lead = st.Leader
		}
		i, ok := ids[lead]
		leader = i
		return ok
	})
	return leader
}

// memberGate stands between the nodes and one etcd member. An embedded
// member stopped with open client streams (the nodes' watches and
// keepalives) drains them for etcd's request timeout (about 6s here)
// before it goes, still serving them meanwhile; a member that crashes
// drops them at once. The gate drops them at once: closed, it cuts every
// connection through it and refuses new ones (each accepted and closed at
// once, as a port whose process is gone refuses them), so the nodes see
// the member go the moment it is stopped; opened, it forwards again.
type memberGate struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	closed bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newMemberGate(t *testing.T, target string) *memberGate {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &memberGate{l: l, target: strings.TrimPrefix(target, "http://")}
	g.wg.Go(g.accept)
	t.Cleanup(func() {
		l.Close()
		g.close()
		g.wg.Wait()
	})
	return g
}

func (g *memberGate) url() string { return "http://" + g.l.Addr().String() }

func (g *memberGate) accept() {
	for {
		in, err := g.l.Accept()
		if err != nil {
			return
		}
		g.mu.Lock()
		closed := g.closed
		g.mu.Unlock()
		var out net.Conn
		if !closed {
			out, err = net.Dial("tcp", g.target)
		}
		if closed || err != nil {
			in.Close()
			continue
		}
		g.mu.Lock()
		if g.closed {
			g.mu.Unlock()
			in.Close()
			out.Close()
			continue
		}
		g.conns = append(g.conns, in, out)
		g.mu.Unlock()
		g.wg.Go(func() { _, _ = io.Copy(out, in); out.Close() })
		g.wg.Go(func() { _, _ = io.Copy(in, out); in.Close() })
	}
}

// close cuts every connection through the gate and refuses new ones.
func (g *memberGate) close() {
	g.mu.Lock()
	g.closed = true
	conns := g.conns
	g.conns = nil
	g.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// open forwards new connections again.
func (g *memberGate) open() {
	g.mu.Lock()
	g.closed = false
	g.mu.Unlock()
}

// submitted is one acknowledged submission of the load.
type submitted struct {
	id      string
	account bool // holds account:main, the cluster-scope resource of limit 1
}

// clusterLoad submits tasks to the nodes without pause until stopped, and
// keeps every acknowledged submission: on each node two callers submit a
// task holding account:main and wait for it, so that both nodes always
// want the one slot, and one caller submits batches of no-op tasks and
// waits for them.
type clusterLoad struct {
	mu       sync.Mutex
	acked    []submitted
	failures []string // submissions refused: nothing was acknowledged

	accountDone atomic.Int64 // account tasks their caller saw end
	quickDone   atomic.Int64
	stop        chan struct{}
	wg          sync.WaitGroup
}

func startClusterLoad(ctx context.Context, nodes []*daemon) *clusterLoad {
	l := &clusterLoad{stop: make(chan struct{})}
	login := &aurav1.SubmitRequest{Task: "account/login",
		Inputs: &structpb.Struct{Fields: map[string]*structpb.Value{"seconds": structpb.NewStringValue("0")}}}
	quick := &aurav1.SubmitRequest{Task: "e2e/quick"}
	for _, d := range nodes {
		for range 2 {
			l.wg.Go(func() { l.run(ctx, d, login, 1, true, &l.accountDone) })
		}
		l.wg.Go(func() { l.run(ctx, d, quick, 5, false, &l.quickDone) })
	}
	return l
}

func (l *clusterLoad) run(ctx context.Context, d *daemon, req *aurav1.SubmitRequest, batch int, account bool, done *atomic.Int64) {
	for {
		select {
		case <-l.stop:
			return
		case <-ctx.Done():
			return
		default:
		}
		var ids []string
		for range batch {
			resp, err := d.client.Submit(ctx, req)
			if err != nil {
				if ctx.Err() == nil {
					l.mu.Lock()
					l.failures = append(l.failures, fmt.Sprintf("Submit(%s) to %s: %v", req.Task, d.addr, err))
					l.mu.Unlock()
				}
				continue
			}
			l.mu.Lock()
			l.acked = append(l.acked, submitted{resp.TaskId, account})
			l.mu.Unlock()
			ids = append(ids, resp.TaskId)
		}
		for _, id := range ids {
			// A failed wait is not a verdict: every acknowledged task is
			// looked up again at the end.
			if _, err := d.client.Wait(ctx, id); err == nil {
				done.Add(1)
			}
		}
	}
}

// end stops the callers and waits for them to see their last tasks end.
func (l *clusterLoad) end() {
	close(l.stop)
	l.wg.Wait()
}

// progress waits until the callers have seen at least n more account tasks
// and n more no-op tasks end than when it was called.
func (l *clusterLoad) progress(t *testing.T, what string, n int64) {
	t.Helper()
	account, quick := l.accountDone.Load()+n, l.quickDone.Load()+n
	waitFor(t, fmt.Sprintf("%d more tasks of each kind to end %s", n, what), time.Minute, func() bool {
		return l.accountDone.Load() >= account && l.quickDone.Load() >= quick
	})
}

// An etcd member stopped and started again while two nodes run tasks
// without pause (tasks holding a cluster-scope resource of limit 1, and
// no-op tasks): every acknowledged task ends, none is lost, and the one
// slot is never held by two tasks at once. The member stopped first is the
// etcd leader, so the cluster also elects a new one; then, with the
// restarted member back, another member is stopped, so the quorum the
// nodes go on with includes the restarted member. The nodes are given
// every member's address, as in production, and their etcd clients move
// to the members still up.
func TestClusterEtcdMemberRestartUnderLoad(t *testing.T) {
	ctx := ctxT(t, 2*time.Minute)
	etcd := etcdtest.Start(t, 3)
	res := accountResources(t)
	var gates []*memberGate
	var endpoints []string
	for i := range 3 {
		gates = append(gates, newMemberGate(t, etcd.Endpoint(i)))
		endpoints = append(endpoints, gates[i].url())
	}
	var nodes []*daemon
	for _, name := range []string{"a", "b"} {
		nodes = append(nodes, startDaemon(t, daemonOpts{plans: []string{"testdata/plans/account", "testdata/plans/e2e"}, args: []string{
			"--cluster-etcd", strings.Join(endpoints, ","), "--node", name, "--advertise", "127.0.0.1:0",
			"--cluster-ttl", ledgerTTL.String(), "--resources", res,
		}}))
	}
	waitFor(t, "both nodes to see each other", 30*time.Second, func() bool {
		return len(listNodes(t, ctx, nodes[0]).Nodes) == 2 && len(listNodes(t, ctx, nodes[1]).Nodes) == 2
	})

	load := startClusterLoad(ctx, nodes)
	load.progress(t, "before any member stops", 4)

	stop := func(i int) {
		gates[i].close()
		etcd.Stop(i)
	}
	restart := func(i int) {
		etcd.Restart(i)
		gates[i].open()
	}
	first := etcdLeader(t, ctx, etcd, 0, 1, 2)
	stop(first)
	t.Logf("stopped etcd member %d, the leader", first)
	load.progress(t, "while the etcd leader is down", 4)
	restart(first)
	load.progress(t, "after the member restarted", 4)

	second := (first + 1) % 3
	stop(second)
	t.Logf("stopped etcd member %d: the quorum now needs the restarted member %d", second, first)
	load.progress(t, "with the restarted member in the quorum", 4)
	restart(second)
	t.Logf("restarted etcd member %d", second)
	load.progress(t, "with every member back", 2)
	load.end()
	t.Logf("load stopped")

	load.mu.Lock()
	acked, failures := load.acked, load.failures
	load.mu.Unlock()
	if len(failures) > 0 {
		t.Fatalf("%d of %d submissions were refused while an etcd member restarted; the first: %s",
			len(failures), len(failures)+len(acked), failures[0])
	}

	// A task holding the slot may end lease_lost only if its node really
	// doubted its etcd session (no renewal for half the TTL): what
	// docs/cluster.md promises then. It was not expected here: two of
	// three members kept a quorum throughout.
	doubted := map[string]bool{}
	for i, name := range []string{"a", "b"} {
		logs := nodes[i].logs()
		doubted[name] = strings.Contains(logs, "the node's etcd session is in doubt") || strings.Contains(logs, "the node's etcd lease is gone")
		if doubted[name] {
			t.Logf("node %s doubted its etcd session during the restart", name)
		}
	}

	type span struct {
		id         string
		start, end time.Time
		fence      int64
	}
	var spans []span
	counts := map[string]int{}
	for _, s := range acked {
		var task *aurav1.Task
		waitFor(t, s.id+" to end", 30*time.Second, func() bool {
			var err error
			task, err = nodes[0].client.Get(ctx, s.id)
			if err != nil {
				t.Fatalf("acknowledged task %s is lost: GetTask: %v", s.id, err)
			}
			return task.Status >= aurav1.TaskStatus_TASK_STATUS_SUCCEEDED && task.Status != aurav1.TaskStatus_TASK_STATUS_PAUSED
		})
		node, _, _ := strings.Cut(s.id, ".")
		kind := "no-op"
		if s.account {
			kind = "account"
		}
		counts[kind+" "+node+" "+task.Status.String()]++
		switch {
		case task.Status == aurav1.TaskStatus_TASK_STATUS_SUCCEEDED:
		case s.account && doubted[node] && (task.Error.GetKind() == "lease_lost" ||
			strings.Contains(task.Error.GetMessage(), "etcd session is in doubt")):
			t.Logf("task %s on %s ended %s: %v (its node doubted its session)", s.id, node, task.Status, task.Error)
		default:
			t.Fatalf("task %s on %s ended %s: %v", s.id, node, task.Status, task.Error)
		}
		if s.account && task.StartedAt != nil {
			spans = append(spans, span{s.id, task.StartedAt.AsTime(), task.FinishedAt.AsTime(), task.Fences["account:main"]})
		}
	}
	t.Logf("%d acknowledged tasks, all ended: %v", len(acked), counts)

	slices.SortFunc(spans, func(x, y span) int { return x.start.Compare(y.start) })
	nodesHolding := map[string]bool{}
	for i, cur := range spans {
		node, _, _ := strings.Cut(cur.id, ".")
		nodesHolding[node] = true
		if i == 0 {
			continue
		}
		prev := spans[i-1]
		if cur.start.Before(prev.end) {
			t.Fatalf("two holders of account:main at once: %s ran %s..%s, %s started at %s", prev.id,
				prev.start.Format(time.StampMicro), prev.end.Format(time.StampMicro), cur.id, cur.start.Format(time.StampMicro))
		}
		if cur.fence <= prev.fence {
			t.Fatalf("fencing revision of %s (%d) is not above that of %s, which held account:main before it (%d)", cur.id, cur.fence, prev.id, prev.fence)
		}
	}
	if len(nodesHolding) != 2 {
		t.Fatalf("account:main was held only on %v: the test needs both nodes to take turns", nodesHolding)
	}
}
