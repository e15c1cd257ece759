package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/aura-dev/aura/internal/admission"
	"github.com/aura-dev/aura/internal/cluster/etcdtest"
)

// ledgerNode is one node's side of the semaphores: its own etcd client,
// lease and Ledger.
type ledgerNode struct {
	name   string
	cli    *clientv3.Client
	lease  clientv3.LeaseID
	ledger *Ledger
	// freed is signalled (without blocking) each time the node's watch
	// says keys may have room.
	freed chan struct{}
}

func newClient(t testing.TB, endpoints []string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// startLedgerNode starts a node on endpoints with a lease of ttl. keep keeps the
// lease alive until the test ends; otherwise it lapses after ttl, as a
// dead node's does.
func startLedgerNode(t testing.TB, endpoints []string, name string, ttl time.Duration, keep bool) *ledgerNode {
	t.Helper()
	cli := newClient(t, endpoints)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	g, err := cli.Grant(ctx, int64(ttl/time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if keep {
		kctx, stop := context.WithCancel(context.Background())
		t.Cleanup(stop)
		ka, err := cli.KeepAlive(kctx, g.ID)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for range ka {
			}
		}()
	}
	n := &ledgerNode{name: name, cli: cli, lease: g.ID, freed: make(chan struct{}, 1)}
	n.ledger = NewLedger(LedgerConfig{Client: cli, Node: name, Lease: func() clientv3.LeaseID { return n.lease }})
	wctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.ledger.Watch(wctx, func([]string) {
			select {
			case n.freed <- struct{}{}:
			default:
			}
		})
	}()
	t.Cleanup(func() { stop(); <-done })
	return n
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func acquire(t testing.TB, n *ledgerNode, holder string, claims ...admission.Claim) (bool, int) {
	t.Helper()
	ok, full, err := n.ledger.Acquire(testCtx(t), holder, claims)
	if err != nil {
		t.Fatalf("%s: Acquire(%s): %v", n.name, holder, err)
	}
	return ok, full
}

func release(t testing.TB, n *ledgerNode, holder string, keys ...string) {
	t.Helper()
	if err := n.ledger.Release(testCtx(t), holder, keys); err != nil {
		t.Fatalf("%s: Release(%s): %v", n.name, holder, err)
	}
}

// acquireWhenFreed asks until granted, again each time the node's watch
// says a slot may be free (or, to be sure, every second).
func acquireWhenFreed(t testing.TB, n *ledgerNode, holder string, deadline time.Time, claims ...admission.Claim) {
	t.Helper()
	for {
		if ok, _ := acquire(t, n, holder, claims...); ok {
			return
		}
		select {
		case <-n.freed:
		case <-time.After(time.Second):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s was not granted %v by %v", n.name, holder, claims, deadline)
		}
	}
}

// Several nodes' tasks take random sets of keys, in random orders, and
// each waits (holding nothing) when refused: no key ever has more holders
// than its limit, and every task is granted in the end (no deadlock).
func TestLedgersNeverExceedALimit(t *testing.T) {
	c := etcdtest.Start(t, 1)
	nodes := make([]*ledgerNode, 3)
	for i := range nodes {
		nodes[i] = startLedgerNode(t, c.Endpoints(), fmt.Sprintf("n%d", i), 30*time.Second, true)
	}
	limits := map[string]int{"account:a": 1, "account:b": 1, "api:c": 2}
	keys := []string{"account:a", "account:b", "api:c"}
	var inUse sync.Map // key → *atomic.Int32
	for _, k := range keys {
		inUse.Store(k, new(atomic.Int32))
	}
	const perWorker = 6
	deadline := time.Now().Add(2 * time.Minute)
	var wg sync.WaitGroup
	var over atomic.Value
	for ni, n := range nodes {
		for w := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(ni), uint64(w)))
				for round := range perWorker {
					perm := rng.Perm(len(keys))[:1+rng.IntN(len(keys))]
					claims := make([]admission.Claim, len(perm))
					for i, p := range perm {
						claims[i] = admission.Claim{Key: keys[p], Limit: limits[keys[p]]}
					}
					holder := fmt.Sprintf("%s.w%d.r%d", n.name, w, round)
					acquireWhenFreed(t, n, holder, deadline, claims...)
					for _, cl := range claims {
						v, _ := inUse.Load(cl.Key)
						if got := v.(*atomic.Int32).Add(1); int(got) > cl.Limit {
							over.Store(fmt.Sprintf("%s has %d holders, its limit is %d", cl.Key, got, cl.Limit))
						}
					}
					time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
					for _, cl := range claims {
						v, _ := inUse.Load(cl.Key)
						v.(*atomic.Int32).Add(-1)
					}
					release(t, n, holder, claimKeys(claims)...)
				}
			}()
		}
	}
	wg.Wait()
	if msg := over.Load(); msg != nil {
		t.Fatal(msg)
	}
	// Nothing is left behind: no holder and no node in line.
	resp, err := nodes[0].cli.Get(testCtx(t), SemaphorePrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 0 {
		t.Fatalf("%d keys left under %s, first %s", len(resp.Kvs), SemaphorePrefix, resp.Kvs[0].Key)
	}
}

// A slot that frees goes to the node that was refused first, whichever
// node asks first; a node that never waited does not overtake one that did.
func TestLedgerIsFIFOAcrossNodes(t *testing.T) {
	c := etcdtest.Start(t, 1)
	a := startLedgerNode(t, c.Endpoints(), "a", 30*time.Second, true)
	b := startLedgerNode(t, c.Endpoints(), "b", 30*time.Second, true)
	cn := startLedgerNode(t, c.Endpoints(), "c", 30*time.Second, true)
	d := startLedgerNode(t, c.Endpoints(), "d", 30*time.Second, true)
	acct := admission.Claim{Key: "account:main", Limit: 1}
	if ok, _ := acquire(t, a, "a.1", acct); !ok {
		t.Fatal("a free slot was refused")
	}
	// c is refused before b: c is first in line.
	if ok, full := acquire(t, cn, "c.1", acct); ok || full != 0 {
		t.Fatalf("c.1 granted a held slot: %v %d", ok, full)
	}
	if ok, _ := acquire(t, b, "b.1", acct); ok {
		t.Fatal("b.1 granted a held slot")
	}
	release(t, a, "a.1", acct.Key)
	// b and d ask first, but c waited longest.
	if ok, _ := acquire(t, b, "b.1", acct); ok {
		t.Fatal("b.1 overtook c.1, which waited longer")
	}
	if ok, _ := acquire(t, d, "d.1", acct); ok {
		t.Fatal("d.1, which never waited, overtook c.1")
	}
	if ok, _ := acquire(t, cn, "c.1", acct); !ok {
		t.Fatal("c.1, first in line, was refused a free slot")
	}
	release(t, cn, "c.1", acct.Key)
	// Next in line: b (refused before d).
	if ok, _ := acquire(t, d, "d.1", acct); ok {
		t.Fatal("d.1 overtook b.1")
	}
	if ok, _ := acquire(t, b, "b.1", acct); !ok {
		t.Fatal("b.1, first in line, was refused a free slot")
	}
	release(t, b, "b.1", acct.Key)
	if ok, _ := acquire(t, d, "d.1", acct); !ok {
		t.Fatal("d.1, alone in line, was refused a free slot")
	}
	// A node's own tasks share its place: another task of c takes the
	// slot c waited for, and c then goes to the back of the line.
	release(t, d, "d.1", acct.Key)
	if ok, _ := acquire(t, a, "a.2", acct); !ok {
		t.Fatal("a free slot with nobody in line was refused")
	}
	for _, h := range []string{"c.2", "c.3"} {
		if ok, _ := acquire(t, cn, h, acct); ok {
			t.Fatalf("%s granted a held slot", h)
		}
	}
	if ok, _ := acquire(t, b, "b.2", acct); ok {
		t.Fatal("b.2 granted a held slot")
	}
	release(t, a, "a.2", acct.Key)
	if ok, _ := acquire(t, cn, "c.3", acct); !ok {
		t.Fatal("c.3 could not use its node's place in line")
	}
	release(t, cn, "c.3", acct.Key)
	if ok, _ := acquire(t, cn, "c.2", acct); ok {
		t.Fatal("c kept the front of the line after a grant while b waited")
	}
	if ok, _ := acquire(t, b, "b.2", acct); !ok {
		t.Fatal("b.2 was refused although c went to the back")
	}
}

// Two nodes each want two keys, named in opposite orders, while another
// holds both: once it lets go one of them is granted both, and the other
// after it.
func TestLedgerOppositeOrdersDoNotDeadlock(t *testing.T) {
	c := etcdtest.Start(t, 1)
	a := startLedgerNode(t, c.Endpoints(), "a", 30*time.Second, true)
	b := startLedgerNode(t, c.Endpoints(), "b", 30*time.Second, true)
	h := startLedgerNode(t, c.Endpoints(), "h", 30*time.Second, true)
	x, y := admission.Claim{Key: "x", Limit: 1}, admission.Claim{Key: "y", Limit: 1}
	if ok, _ := acquire(t, h, "h.1", x, y); !ok {
		t.Fatal("free slots refused")
	}
	if ok, _ := acquire(t, a, "a.1", x, y); ok {
		t.Fatal("a.1 granted held slots")
	}
	if ok, _ := acquire(t, b, "b.1", y, x); ok {
		t.Fatal("b.1 granted held slots")
	}
	release(t, h, "h.1", "x", "y")
	okB, _ := acquire(t, b, "b.1", y, x)
	okA, _ := acquire(t, a, "a.1", x, y)
	if okA == okB {
		t.Fatalf("after the holder left: a granted %v, b granted %v; want exactly one", okA, okB)
	}
	if !okA {
		t.Fatal("b overtook a, which waited longer")
	}
	release(t, a, "a.1", "x", "y")
	if ok, _ := acquire(t, b, "b.1", y, x); !ok {
		t.Fatal("b.1 refused once a let go")
	}
}

// A node that dies holding a slot gives it back when its lease lapses:
// a waiter on another node is told and granted it.
func TestLedgerSlotsComeBackWhenALeaseLapses(t *testing.T) {
	c := etcdtest.Start(t, 1)
	const ttl = 2 * time.Second
	dead := startLedgerNode(t, c.Endpoints(), "dead", ttl, false) // its lease is never renewed
	live := startLedgerNode(t, c.Endpoints(), "live", 30*time.Second, true)
	acct := admission.Claim{Key: "account:main", Limit: 1}
	if ok, _ := acquire(t, dead, "dead.1", acct); !ok {
		t.Fatal("a free slot was refused")
	}
	start := time.Now()
	if ok, _ := acquire(t, live, "live.1", acct); ok {
		t.Fatal("a held slot was granted")
	}
	select {
	case <-live.freed:
	case <-time.After(time.Minute):
		t.Fatal("the watch never said the dead node's slot was freed")
	}
	if ok, _ := acquire(t, live, "live.1", acct); !ok {
		t.Fatal("the dead node's slot was not granted once its lease lapsed")
	}
	t.Logf("granted %s after the dead node's grant (lease TTL %s)", time.Since(start).Round(time.Millisecond), ttl)
}

// A grant's revision is the task's fencing token: the holder key's
// revision in etcd, higher for every later holder of the key.
func TestLedgerRecordsTheGrantRevision(t *testing.T) {
	c := etcdtest.Start(t, 1)
	n := startLedgerNode(t, c.Endpoints(), "n", 30*time.Second, true)
	acct, api := admission.Claim{Key: "account:main", Limit: 1}, admission.Claim{Key: "api:x", Limit: 3}
	if ok, _ := acquire(t, n, "n.1", acct, api); !ok {
		t.Fatal("free slots refused")
	}
	first := n.ledger.Fences("n.1")
	slot, ok := n.ledger.slotOf("n.1", acct.Key)
	if !ok {
		t.Fatal("no slot noted for n.1")
	}
	resp, err := n.cli.Get(testCtx(t), slot)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("holder key: %v %v", resp, err)
	}
	if first[acct.Key] != resp.Kvs[0].ModRevision || first[api.Key] != first[acct.Key] {
		t.Fatalf("fences %v, holder key written at %d", first, resp.Kvs[0].ModRevision)
	}
	release(t, n, "n.1", acct.Key, api.Key)
	if f := n.ledger.Fences("n.1"); f != nil {
		t.Fatalf("fences kept after the release: %v", f)
	}
	if ok, _ := acquire(t, n, "n.2", acct); !ok {
		t.Fatal("a free slot was refused")
	}
	if second := n.ledger.Fences("n.2")[acct.Key]; second <= first[acct.Key] {
		t.Fatalf("a later grant's fence %d is not above the earlier %d", second, first[acct.Key])
	}
	// Acquiring what one holds is not counted twice.
	if ok, _ := acquire(t, n, "n.2", acct); !ok {
		t.Fatal("acquiring a held slot again was refused")
	}
}

// link is a TCP link from a loopback port to an etcd member that the test
// can block and heal: the network between a node and its member.
type link struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newLink(t *testing.T, target string) *link {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	k := &link{l: l, target: strings.TrimPrefix(target, "http://")}
	k.wg.Go(k.accept)
	t.Cleanup(func() { k.block(); l.Close(); k.wg.Wait() })
	return k
}

func (k *link) url() string { return "http://" + k.l.Addr().String() }

func (k *link) accept() {
	for {
		in, err := k.l.Accept()
		if err != nil {
			return
		}
		k.mu.Lock()
		down := k.down
		k.mu.Unlock()
		var out net.Conn
		if !down {
			out, err = net.Dial("tcp", k.target)
		}
		if down || err != nil {
			in.Close()
			continue
		}
		k.mu.Lock()
		k.conns = append(k.conns, in, out)
		k.mu.Unlock()
		k.wg.Go(func() { _, _ = io.Copy(out, in); out.Close() })
		k.wg.Go(func() { _, _ = io.Copy(in, out); in.Close() })
	}
}

// block drops every connection through the link and refuses new ones.
func (k *link) block() {
	k.mu.Lock()
	k.down = true
	conns := k.conns
	k.conns = nil
	k.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

func (k *link) heal() {
	k.mu.Lock()
	k.down = false
	k.mu.Unlock()
}

// A node that cannot renew its lease stops granting and names its
// holders before the lease lapses; it grants again once renewals succeed.
func TestLeaseWatchDoubtsBeforeTheLeaseLapses(t *testing.T) {
	c := etcdtest.Start(t, 1)
	const ttl = 6 * time.Second
	// The node reaches etcd through a link the test cuts; the test itself
	// asks etcd directly.
	k := newLink(t, c.Endpoint(0))
	n := startLedgerNode(t, []string{k.url()}, "n", ttl, false)
	direct := newClient(t, c.Endpoints())
	acct := admission.Claim{Key: "account:main", Limit: 1}
	if ok, _ := acquire(t, n, "n.1", acct); !ok {
		t.Fatal("a free slot was refused")
	}
	type doubt struct {
		cause   error
		holders []string
		ttlLeft int64 // the lease's TTL left at the doubt, asked of etcd directly
	}
	doubts := make(chan doubt, 1)
	trusted := make(chan struct{}, 1)
	w := WatchLease(LeaseWatchConfig{Client: n.cli, Lease: n.lease, TTL: ttl,
		OnDoubt: func(cause error) {
			holders := n.ledger.Doubt(cause)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			left := int64(-2)
			if r, err := direct.TimeToLive(ctx, n.lease); err == nil {
				left = r.TTL
			}
			doubts <- doubt{cause, holders, left}
		},
		OnTrust: func() { n.ledger.Trust(); trusted <- struct{}{} },
	})
	defer w.Close()
	k.block()
	var d doubt
	select {
	case d = <-doubts:
	case <-time.After(time.Minute):
		t.Fatal("no doubt reported with the node cut off from etcd")
	}
	if len(d.holders) != 1 || d.holders[0] != "n.1" {
		t.Fatalf("holders at the doubt %v, want [n.1]", d.holders)
	}
	if d.ttlLeft <= 0 {
		t.Fatalf("the lease had %ds left when the doubt was reported: too late", d.ttlLeft)
	}
	if _, _, err := n.ledger.Acquire(testCtx(t), "n.2", []admission.Claim{{Key: "other", Limit: 1}}); !errors.Is(err, ErrLeaseInDoubt) {
		t.Fatalf("Acquire in doubt: %v, want ErrLeaseInDoubt", err)
	}
	t.Logf("doubt: %v (lease had %ds left)", d.cause, d.ttlLeft)
	// Healed before the lease lapsed, the next renewal ends the doubt;
	// had it lapsed, the node stays in doubt (its session is made anew).
	k.heal()
	select {
	case <-trusted:
		if ok, _, err := n.ledger.Acquire(testCtx(t), "n.2", []admission.Claim{{Key: "other", Limit: 1}}); err != nil || !ok {
			t.Fatalf("after the renewal: %v %v", ok, err)
		}
	case <-w.Lapsed():
		if w.Err() == nil {
			t.Fatal("lapsed but not in doubt")
		}
		t.Log("the lease lapsed before the link was healed and a renewal got through")
	case <-time.After(time.Minute):
		t.Fatal("neither renewed nor lapsed a minute after the link was healed")
	}
}

// A release that fails (here: its context ended before etcd answered, as
// when etcd cannot be reached) is made again once etcd answers: a lease
// that outlives the trouble does not keep the slot held.
func TestAFailedReleaseIsMadeOnceEtcdAnswers(t *testing.T) {
	c := etcdtest.Start(t, 1)
	n := startLedgerNode(t, c.Endpoints(), "n", 30*time.Second, true)
	acct := admission.Claim{Key: "account:main", Limit: 1}
	if ok, _ := acquire(t, n, "n.1", acct); !ok {
		t.Fatal("a free slot was refused")
	}
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	if err := n.ledger.Release(ended, "n.1", []string{acct.Key}); err == nil {
		t.Fatal("a release on an ended context succeeded")
	}
	slot, ok := n.ledger.slotOf("n.1", acct.Key)
	if !ok {
		t.Fatal("the slot whose release failed is forgotten")
	}
	if resp, err := n.cli.Get(testCtx(t), slot); err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "n.1" {
		t.Fatalf("the slot should still be held after the failed release: %v %v", resp, err)
	}
	n.ledger.Trust() // as a renewal after a doubt does
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := n.cli.Get(testCtx(t), slot)
		if err == nil && len(resp.Kvs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the failed release was never made")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ok, _ := acquire(t, n, "n.2", acct); !ok {
		t.Fatal("the slot whose release failed is still held")
	}
}
