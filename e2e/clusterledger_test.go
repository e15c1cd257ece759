package e2e

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/aura-dev/aura/internal/cluster"
	"github.com/aura-dev/aura/internal/cluster/etcdtest"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// ledgerTTL is the etcd session TTL of the nodes of these tests: long
// enough that a loaded machine renews the lease well within half of it,
// short enough that a dead node's slot comes back quickly.
const ledgerTTL = 4 * time.Second

// accountResources writes a resources file declaring the cluster-scope
// resource account:main with one slot in the whole cluster.
func accountResources(t *testing.T) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "resources.yaml")
	if err := os.WriteFile(file, []byte("resources:\n  \"account:main\": {limit: 1, scope: cluster}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// startAccountNode starts a node sharing account:main, talking to the etcd
// members at endpoints.
func startAccountNode(t *testing.T, endpoints []string, name, resources, data string) *daemon {
	t.Helper()
	return startDaemon(t, daemonOpts{plans: []string{"testdata/plans/account"}, data: data, args: []string{
		"--cluster-etcd", strings.Join(endpoints, ","), "--node", name, "--advertise", "127.0.0.1:0",
		"--cluster-ttl", ledgerTTL.String(), "--resources", resources,
	}})
}

func login(t *testing.T, ctx context.Context, d *daemon, seconds int) string {
	t.Helper()
	return d.submit(ctx, &aurav1.SubmitRequest{Task: "account/login",
		Inputs: &structpb.Struct{Fields: map[string]*structpb.Value{"seconds": structpb.NewStringValue(strconv.Itoa(seconds))}}})
}

// waitInLine waits until node has put itself in line for a cluster-scope
// slot in etcd: its task was refused and waits.
func waitInLine(t *testing.T, ctx context.Context, etcd *etcdtest.Cluster, members []int, node string) {
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
	waitFor(t, node+" in line for account:main", 30*time.Second, func() bool {
		resp, err := cli.Get(ctx, cluster.SemaphorePrefix+"w/"+node)
		return err == nil && len(resp.Kvs) == 1 && strings.Contains(string(resp.Kvs[0].Value), "account:main")
	})
}

func getTask(t *testing.T, ctx context.Context, d *daemon, id string) *aurav1.Task {
	t.Helper()
	task, err := d.client.Get(ctx, id)
	if err != nil {
		t.Fatalf("GetTask(%s) on %s: %v", id, d.addr, err)
	}
	return task
}

func waitStatusWithin(t *testing.T, ctx context.Context, d *daemon, id string, within time.Duration, want aurav1.TaskStatus) *aurav1.Task {
	t.Helper()
	var task *aurav1.Task
	waitFor(t, id+" "+want.String(), within, func() bool {
		task = getTask(t, ctx, d, id)
		return task.Status == want
	})
	return task
}

// A cluster-scope resource of limit 1 shared by tasks on three nodes: no
// two tasks ever hold it at once, each holder's fencing revision is above
// the one before, and a node killed with SIGKILL while holding it gives it
// to another node's waiting task within the TTL plus a second; restarted,
// it reports its task INTERRUPTED and does not run it again.
func TestClusterScopeResourceHasOneHolderAtATime(t *testing.T) {
	ctx := ctxT(t, 4*time.Minute)
	etcd := etcdtest.Start(t, 3)
	res := accountResources(t)
	dataA := t.TempDir()
	nodes := []*daemon{
		startAccountNode(t, etcd.Endpoints(), "a", res, dataA),
		startAccountNode(t, etcd.Endpoints(), "b", res, ""),
		startAccountNode(t, etcd.Endpoints(), "c", res, ""),
	}

	// Two tasks submitted to each node at once: they take turns.
	type submitted struct {
		node *daemon
		id   string
	}
	var all []submitted
	for range 2 {
		for _, d := range nodes {
			all = append(all, submitted{d, login(t, ctx, d, 1)})
		}
	}
	type span struct {
		id         string
		start, end time.Time
		fence      int64
	}
	var spans []span
	for _, s := range all {
		task := s.node.wait(ctx, s.id)
		if task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
			t.Fatalf("task %s: %s %v", s.id, task.Status, task.Error)
		}
		fence := task.Fences["account:main"]
		if fence <= 0 || task.Result.GetStringValue() != strconv.FormatInt(fence, 10) {
			t.Fatalf("task %s: Task.fences %v, its exec step saw AURA_FENCE_ACCOUNT_MAIN=%q", s.id, task.Fences, task.Result.GetStringValue())
		}
		spans = append(spans, span{s.id, task.StartedAt.AsTime(), task.FinishedAt.AsTime(), fence})
	}
	slices.SortFunc(spans, func(x, y span) int { return x.start.Compare(y.start) })
	for i := 1; i < len(spans); i++ {
		prev, cur := spans[i-1], spans[i]
		if cur.start.Before(prev.end) {
			t.Fatalf("two holders at once: %s ran %s..%s, %s started at %s", prev.id, prev.start.Format(time.StampMicro),
				prev.end.Format(time.StampMicro), cur.id, cur.start.Format(time.StampMicro))
		}
		if cur.fence <= prev.fence {
			t.Fatalf("fencing revision of %s (%d) is not above that of %s, which held the slot before it (%d)", cur.id, cur.fence, prev.id, prev.fence)
		}
	}

	// a holds the slot; b's task waits for it; a dies.
	held := login(t, ctx, nodes[0], 120)
	waitStatusWithin(t, ctx, nodes[0], held, 30*time.Second, aurav1.TaskStatus_TASK_STATUS_RUNNING)
	waiter := login(t, ctx, nodes[1], 1)
	waitInLine(t, ctx, etcd, []int{0, 1, 2}, "b")
	if task := getTask(t, ctx, nodes[1], waiter); task.Status != aurav1.TaskStatus_TASK_STATUS_QUEUED {
		t.Fatalf("b's task is %s while a holds the one slot", task.Status)
	}
	nodes[0].kill()
	killed := time.Now()
	task := waitStatusWithin(t, ctx, nodes[1], waiter, time.Minute, aurav1.TaskStatus_TASK_STATUS_RUNNING)
	if took := task.StartedAt.AsTime().Sub(killed); took > ledgerTTL+time.Second {
		t.Errorf("b's waiting task started %s after a was killed holding the slot; want within the TTL (%s) plus a second", took, ledgerTTL)
	} else {
		t.Logf("b's waiting task started %s after a was killed (TTL %s)", took.Round(time.Millisecond), ledgerTTL)
	}
	if task := nodes[1].wait(ctx, waiter); task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("b's task: %s %v", task.Status, task.Error)
	}

	// a, restarted on its data, reports the task INTERRUPTED and does not
	// run it again.
	a := startAccountNode(t, etcd.Endpoints(), "a", res, dataA)
	task = getTask(t, ctx, a, held)
	if task.Status != aurav1.TaskStatus_TASK_STATUS_INTERRUPTED || task.Attempt != 1 {
		t.Fatalf("a's task after the restart: %s attempt %d; want INTERRUPTED, attempt 1", task.Status, task.Attempt)
	}
	// The slot is free: a new task on a runs, and the interrupted one stays as it is.
	if next := a.wait(ctx, login(t, ctx, a, 0)); next.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("a new task on the restarted node: %s %v", next.Status, next.Error)
	}
	if again := getTask(t, ctx, a, held); again.Status != aurav1.TaskStatus_TASK_STATUS_INTERRUPTED || !again.StartedAt.AsTime().Equal(task.StartedAt.AsTime()) {
		t.Fatalf("the interrupted task changed after the restart: %s started %v", again.Status, again.StartedAt.AsTime())
	}
}

// linkTo is a TCP link from a loopback port to target, which the test can
// cut: the network between a node and its etcd member, as a partition
// breaks it.
type linkTo struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	cutOff bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newLink(t *testing.T, target string) *linkTo {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	k := &linkTo{l: l, target: target}
	k.wg.Go(k.accept)
	t.Cleanup(k.cut)
	return k
}

func (k *linkTo) url() string { return "http://" + k.l.Addr().String() }

func (k *linkTo) accept() {
	for {
		in, err := k.l.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", k.target)
		if err != nil {
			in.Close()
			continue
		}
		k.mu.Lock()
		if k.cutOff {
			k.mu.Unlock()
			in.Close()
			out.Close()
			return
		}
		k.conns = append(k.conns, in, out)
		k.mu.Unlock()
		k.wg.Go(func() { _, _ = io.Copy(out, in); out.Close() })
		k.wg.Go(func() { _, _ = io.Copy(in, out); in.Close() })
	}
}

// cut closes the link and every connection through it, and waits for its
// goroutines.
func (k *linkTo) cut() {
	k.mu.Lock()
	k.cutOff = true
	conns := k.conns
	k.conns = nil
	k.mu.Unlock()
	k.l.Close()
	for _, c := range conns {
		c.Close()
	}
	k.wg.Wait()
}

// A node cut off from etcd (the one member it talks to unreachable) ends
// the task holding the cluster-scope slot INTERRUPTED, kind lease_lost,
// before a task on another node is granted the slot.
func TestClusterScopeResourcePartitionedNodeLetsGoFirst(t *testing.T) {
	ctx := ctxT(t, 3*time.Minute)
	etcd := etcdtest.Start(t, 3)
	res := accountResources(t)
	link := newLink(t, strings.TrimPrefix(etcd.Endpoint(0), "http://"))
	cut := startAccountNode(t, []string{link.url()}, "cut", res, "")
	other := startAccountNode(t, []string{etcd.Endpoint(1), etcd.Endpoint(2)}, "other", res, "")

	held := login(t, ctx, cut, 120)
	waitStatusWithin(t, ctx, cut, held, 30*time.Second, aurav1.TaskStatus_TASK_STATUS_RUNNING)
	waiter := login(t, ctx, other, 1)
	waitInLine(t, ctx, etcd, []int{1, 2}, "other")
	if task := getTask(t, ctx, other, waiter); task.Status != aurav1.TaskStatus_TASK_STATUS_QUEUED {
		t.Fatalf("the other node's task is %s while the cut node holds the one slot", task.Status)
	}
	link.cut()

	ended := waitStatusWithin(t, ctx, cut, held, time.Minute, aurav1.TaskStatus_TASK_STATUS_INTERRUPTED)
	if ended.Error.GetKind() != "lease_lost" || !strings.Contains(ended.Error.GetMessage(), "etcd session is in doubt") {
		t.Fatalf("the cut node's task ended %v; want kind lease_lost saying the session is in doubt", ended.Error)
	}
	next := other.wait(ctx, waiter)
	if next.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("the other node's task: %s %v", next.Status, next.Error)
	}
	if end, start := ended.FinishedAt.AsTime(), next.StartedAt.AsTime(); !end.Before(start) {
		t.Fatalf("the other node's task started at %s, before the cut node's holder ended at %s", start.Format(time.StampMicro), end.Format(time.StampMicro))
	} else {
		t.Logf("the cut node's holder ended %s before the other node's task started", start.Sub(end).Round(time.Millisecond))
	}
	if fence := next.Fences["account:main"]; fence <= ended.Fences["account:main"] {
		t.Fatalf("the new holder's fencing revision %d is not above the cut node's %d", fence, ended.Fences["account:main"])
	}
}
