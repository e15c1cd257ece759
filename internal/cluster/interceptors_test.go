package cluster

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/aura-dev/aura/internal/cluster/etcdtest"
)

// boardView is what a board's apply last saw, read with a deadline.
type boardView struct {
	mu   sync.Mutex
	last []Interceptor
}

func (v *boardView) apply(all []Interceptor) {
	v.mu.Lock()
	v.last = all
	v.mu.Unlock()
}

func (v *boardView) waitFor(t *testing.T, what string, ok func([]Interceptor) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		v.mu.Lock()
		got := slices.Clone(v.last)
		v.mu.Unlock()
		if ok(got) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the board shows %+v", what, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func etcdClient(t *testing.T, endpoints []string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// runBoard runs a board until the test ends, and returns what it shows.
func runBoard(t *testing.T, b *InterceptorBoard) (*boardView, context.CancelFunc) {
	v := &boardView{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.Run(ctx, v.apply) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return v, stop
}

func TestAnInterceptorPublishedOnOneNodeIsSeenByTheOthersUntilWithdrawn(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	a := NewInterceptorBoard(etcdClient(t, etcd.Endpoints()), "a", 2*time.Second, nil)
	b := NewInterceptorBoard(etcdClient(t, etcd.Endpoints()), "b", 2*time.Second, nil)
	_, stopA := runBoard(t, a)
	onB, _ := runBoard(t, b)

	want := Interceptor{Node: "a", ID: "1", Name: "guard", Plan: "demo", Timeout: 3 * time.Second, FailOpen: true}
	withdraw := a.Publish("1", Interceptor{Name: "guard", Plan: "demo", Timeout: 3 * time.Second, FailOpen: true})
	b.Publish("9", Interceptor{Name: "own"}) // a node's own interceptors are not its peers'
	onB.waitFor(t, "b sees a's interceptor", func(all []Interceptor) bool { return len(all) == 1 && all[0] == want })

	withdraw()
	onB.waitFor(t, "b no longer sees the withdrawn interceptor", func(all []Interceptor) bool { return len(all) == 0 })

	a.Publish("2", Interceptor{Name: "second"})
	onB.waitFor(t, "b sees a's second interceptor", func(all []Interceptor) bool { return len(all) == 1 && all[0].ID == "2" })
	// A node that stops (its lease revoked on the way out) takes its
	// interceptors with it.
	stopA()
	onB.waitFor(t, "b no longer sees the interceptors of a stopped node", func(all []Interceptor) bool { return len(all) == 0 })
}

func TestInterceptorsArePublishedAgainAfterTheSessionLapses(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	cli := etcdClient(t, etcd.Endpoints())
	a := NewInterceptorBoard(cli, "a", time.Second, nil)
	b := NewInterceptorBoard(etcdClient(t, etcd.Endpoints()), "b", time.Second, nil)
	runBoard(t, a)
	onB, _ := runBoard(t, b)
	a.Publish("1", Interceptor{Name: "guard"})
	onB.waitFor(t, "b sees a's interceptor", func(all []Interceptor) bool { return len(all) == 1 })

	// Revoke a's lease behind its back, as etcd does when it expires.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, InterceptorsPrefix+"a/1")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("a's key: %v %v", resp, err)
	}
	if _, err := cli.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	onB.waitFor(t, "the key is gone with its lease", func(all []Interceptor) bool { return len(all) == 0 })
	onB.waitFor(t, "a published it again on a new session", func(all []Interceptor) bool { return len(all) == 1 && all[0].Name == "guard" })
}
