package cluster

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/aura-dev/aura/internal/cluster/etcdtest"
)

// startNode starts a Membership called name on endpoints and shuts it
// down when the test ends.
func startNode(t *testing.T, endpoints []string, name string, ttl time.Duration, load func() Node) *Membership {
	t.Helper()
	m, err := NewMembership(MembershipParams{Endpoints: endpoints, Name: name, Address: name + ":7070", Version: "test", TTL: ttl, Load: load})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		t.Fatalf("starting node %s: %v", name, err)
	}
	t.Cleanup(m.Shutdown)
	return m
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func names(d Directory) []string {
	var out []string
	for _, n := range d.Nodes() {
		out = append(out, n.Name)
	}
	return out
}

func TestNodesSeeEachOtherAndTheirLoad(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	var running atomic.Int64
	a := startNode(t, etcd.Endpoints(), "a", 2*time.Second, func() Node {
		return Node{Pools: map[string][]string{"phone": {"p1", "p2"}}, Capacity: 4, Running: int(running.Load())}
	})
	b := startNode(t, etcd.Endpoints(), "b", 2*time.Second, nil)
	for _, d := range []Directory{a, b} {
		waitFor(t, 10*time.Second, d.Self()+" sees a and b", func() bool { return slices.Equal(names(d), []string{"a", "b"}) })
	}
	n, ok := b.Lookup("a")
	if !ok || n.Address != "a:7070" || n.Version != "test" || n.Capacity != 4 || !slices.Equal(n.Pools["phone"], []string{"p1", "p2"}) || n.Started.IsZero() {
		t.Fatalf("b sees a as %+v", n)
	}
	running.Store(3)
	waitFor(t, 5*time.Second, "b sees a's new load", func() bool { n, _ := b.Lookup("a"); return n.Running == 3 })
	// A node that leaves says so: the others see it gone at once, not
	// after its TTL.
	a.Shutdown()
	waitFor(t, time.Second, "b sees a gone", func() bool { return slices.Equal(names(b), []string{"b"}) })
}

func TestASecondNodeWithTheSameNameIsRefused(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	startNode(t, etcd.Endpoints(), "a", time.Second, nil)
	dup, err := NewMembership(MembershipParams{Endpoints: etcd.Endpoints(), Name: "a", Address: "elsewhere:7070", TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = dup.Start(context.Background())
	if !errors.Is(err, ErrNameTaken) || !strings.Contains(err.Error(), "a:7070") || !strings.Contains(err.Error(), "--node") {
		t.Fatalf("a second node a started: %v", err)
	}
}

func TestANodeRestartedAfterACrashTakesItsNameBack(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	cli := client(t, etcd.Endpoints())
	// What a node killed with SIGKILL leaves: its key on a lease nobody
	// keeps alive.
	grant, err := cli.Grant(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(context.Background(), NodesPrefix+"a", `{"address":"a:7070"}`, clientv3.WithLease(grant.ID)); err != nil {
		t.Fatal(err)
	}
	a := startNode(t, etcd.Endpoints(), "a", time.Second, nil)
	if n, ok := a.Lookup("a"); !ok || n.Started.IsZero() {
		t.Fatalf("the restarted node is not registered: %+v", n)
	}
}

func TestALostLeaseIsReplacedAndTheNodeRegistersAgain(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	a := startNode(t, etcd.Endpoints(), "a", 2*time.Second, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first, err := a.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	etcd.Stop(0)
	lostAt := time.Now()
	select {
	case <-first.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("the lease is not reported lost while etcd is down")
	}
	// Lost comes before etcd could expire the lease (the TTL after the
	// last keepalive it answered).
	if took := time.Since(lostAt); took >= 2*time.Second {
		t.Errorf("Lost closed %s after etcd went away; the TTL is 2s", took)
	}
	etcd.Restart(0)
	next, err := a.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if next.ID == first.ID {
		t.Fatal("the lost lease was handed out again")
	}
	cli := client(t, etcd.Endpoints())
	waitFor(t, 10*time.Second, "the node's key back on the new lease", func() bool {
		resp, err := cli.Get(ctx, NodesPrefix+"a")
		return err == nil && len(resp.Kvs) == 1 && clientv3.LeaseID(resp.Kvs[0].Lease) == next.ID
	})
}

func TestOneNodeLeadsAndAnotherTakesOverWhenItLeaves(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	var ran [2]atomic.Int64
	var leaders [2]*Leadership
	var nodes [2]*Membership
	for i, name := range []string{"a", "b"} {
		nodes[i] = startNode(t, etcd.Endpoints(), name, time.Second, nil)
		leaders[i] = NewLeadership(LeadershipParams{Membership: nodes[i], Lead: []func(context.Context){func(ctx context.Context) {
			ran[i].Add(1)
			<-ctx.Done()
		}}})
		leaders[i].Start()
		t.Cleanup(leaders[i].Shutdown)
	}
	first := -1
	waitFor(t, 10*time.Second, "a leader", func() bool {
		for i, l := range leaders {
			if l.IsLeader() {
				first = i
			}
		}
		return first >= 0
	})
	other := 1 - first
	if leaders[other].IsLeader() {
		t.Fatal("two leaders at once")
	}
	name, err := leaders[other].Leader(context.Background())
	if err != nil || name != nodes[first].Self() {
		t.Fatalf("Leader() = %q, %v; want %s", name, err, nodes[first].Self())
	}
	leaders[first].Shutdown()
	if ran[first].Load() != 1 {
		t.Fatalf("the leader ran its work %d times", ran[first].Load())
	}
	waitFor(t, 10*time.Second, "the other node leads", leaders[other].IsLeader)
	if ran[other].Load() != 1 {
		t.Fatalf("the new leader ran its work %d times", ran[other].Load())
	}
}

func client(t *testing.T, endpoints []string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}
