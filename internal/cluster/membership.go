package cluster

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

// Keys under which the cluster lives in etcd.
const (
	// NodesPrefix holds one key per live node, /aura/nodes/<name>, on the
	// node's lease; its value is the node's Node as JSON.
	NodesPrefix = "/aura/nodes/"
	// LeaderPrefix is the election of the node that runs what must run
	// once (schedules, cluster-wide pruning).
	LeaderPrefix = "/aura/leader"
)

// DefaultTTL is the session TTL of --cluster-ttl: a node that stops
// refreshing its lease is gone this long after.
const DefaultTTL = 10 * time.Second

// publishEvery bounds how often a node rewrites its key when its load
// changes; it is rewritten at least every TTL/3 as well (its Updated time
// is the "last seen" of ListNodes).
const publishEvery = 500 * time.Millisecond

// MembershipParams build a Membership. Everything is required unless
// marked optional.
type MembershipParams struct {
	Endpoints []string    // etcd client URLs (--cluster-etcd)
	TLS       *tls.Config // optional: etcd client TLS (--etcd-ca/--etcd-cert/--etcd-key)
	// Name, Address and Version of this node; Membership fills Started and
	// Updated, and the rest comes from Load.
	Name, Address, Version string
	// TTL of the node's lease (--cluster-ttl); whole seconds, at least 1s
	// (etcd's lease granularity); 0 is DefaultTTL.
	TTL time.Duration
	// Load returns this node's pools, resources, capacity and load now
	// (the fields other than Name, Address, Version, Started, Updated).
	// It is called every publishEvery, so it must be cheap. Optional.
	Load   func() Node
	Logger *slog.Logger // optional
}

// Membership keeps this node in the cluster: one etcd client, a lease
// kept alive with the TTL, the node's key under NodesPrefix on it, and a
// live Directory of every node from a watch on NodesPrefix. A lost lease
// is replaced by a new one and the node registers again. Start it first
// among the cluster's parts and shut it down last.
//
// Other parts use Client for etcd, and Lease for the lease their own keys
// live on: Lease.Lost says when those keys can no longer be counted on.
type Membership struct {
	// Immutable after NewMembership.
	p       MembershipParams
	log     *slog.Logger
	ttl     time.Duration
	key     string
	started time.Time

	// Set by Start, read-only after.
	cli    *clientv3.Client
	ctx    context.Context // ends at Shutdown
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	lease *Lease          // the live lease; nil while one is being made
	ready chan struct{}   // closed when lease is set; replaced when it is lost
	nodes map[string]Node // the live nodes as the watch last saw them
	// changed is closed and replaced whenever nodes changes.
	changed chan struct{}
	// refresh wakes the publisher (Refresh).
	refresh chan struct{}
}

// Lease is one etcd lease of this node, kept alive while the node can
// reach etcd. Keys written with clientv3.WithLease(ID) vanish when it
// lapses; Session runs etcd's concurrency recipes (elections, mutexes,
// semaphores) on it.
type Lease struct {
	ID      clientv3.LeaseID
	Session *concurrency.Session
	// TTL is the lease's time to live: once Lost is closed, etcd may hand
	// what was held on the lease to another node no earlier than TTL/3
	// later, and no later than TTL later.
	TTL time.Duration

	lost     chan struct{}
	lostOnce sync.Once
}

// Lost is closed once this node can no longer count on the lease: no
// keepalive was answered for 2/3 of the TTL (so it closes before etcd can
// expire the lease, leaving TTL/3 to give up what was held on it), etcd
// said it expired, or the node shut down. The lease is then abandoned for
// good: Membership.Lease returns its successor.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

func (l *Lease) markLost() { l.lostOnce.Do(func() { close(l.lost) }) }

// NewMembership checks p; nothing runs until Start.
func NewMembership(p MembershipParams) (*Membership, error) {
	if err := CheckNodeName(p.Name); err != nil {
		return nil, fmt.Errorf("--node: %w", err)
	}
	if len(p.Endpoints) == 0 {
		return nil, errors.New("--cluster-etcd: no etcd endpoint given")
	}
	if p.Address == "" {
		return nil, errors.New("--advertise: required in a cluster: the host:port other nodes and clients reach this node's gRPC at")
	}
	ttl := p.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl < time.Second || ttl%time.Second != 0 {
		return nil, fmt.Errorf("--cluster-ttl %s: want whole seconds, at least 1s (etcd leases count in seconds)", p.TTL)
	}
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	if p.Load == nil {
		p.Load = func() Node { return Node{} }
	}
	return &Membership{p: p, log: p.Logger.With("node", p.Name), ttl: ttl, key: NodesPrefix + p.Name,
		nodes: map[string]Node{}, changed: make(chan struct{}), ready: make(chan struct{}), refresh: make(chan struct{}, 1)}, nil
}

// Start connects to etcd, takes the node's name (refusing it while another
// live node has it) and starts keeping the lease, the node's key and the
// Directory. A Start that fails has stopped what it started.
func (m *Membership) Start(ctx context.Context) (err error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: m.p.Endpoints, TLS: m.p.TLS, DialTimeout: 5 * time.Second,
		// Without a logger of its own the client logs through zap to
		// stderr; its errors come back to us as errors instead.
		Logger: zap.NewNop(),
	})
	if err != nil {
		return fmt.Errorf("--cluster-etcd %s: %w", strings.Join(m.p.Endpoints, ","), err)
	}
	m.cli = cli
	m.ctx, m.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			m.cancel()
			m.wg.Wait()
			cli.Close()
		}
	}()
	m.started = time.Now().UTC()
	cctx, stop := context.WithTimeout(ctx, 10*time.Second)
	defer stop()
	if _, err := cli.Get(cctx, m.key); err != nil {
		return fmt.Errorf("--cluster-etcd %s: etcd does not answer (%w); check the URLs, the --etcd-ca/--etcd-cert/--etcd-key TLS settings and that etcd runs",
			strings.Join(m.p.Endpoints, ","), err)
	}
	l, err := m.register(ctx, 0, true)
	if err != nil {
		return err
	}
	m.setLease(l)
	rev, err := m.loadNodes(ctx)
	if err != nil {
		m.abandon(l)
		return fmt.Errorf("reading the cluster's nodes from etcd: %w", err)
	}
	m.wg.Add(3)
	go m.keepLoop(l)
	go m.publishLoop()
	go m.watchLoop(rev)
	m.log.Info("joined the cluster", "address", m.p.Address, "ttl", m.ttl, "nodes", len(m.Nodes()))
	return nil
}

// Shutdown leaves the cluster: the node's key is deleted and its lease
// revoked (what other parts held on it is released at once rather than
// after the TTL), then the client is closed. Parts that use Client or
// Lease shut down before it.
func (m *Membership) Shutdown() {
	m.cancel()
	m.wg.Wait()
	m.mu.Lock()
	l := m.lease
	m.lease = nil
	m.mu.Unlock()
	if l != nil {
		ctx, stop := context.WithTimeout(context.Background(), 2*time.Second)
		if _, err := m.cli.Delete(ctx, m.key, clientv3.WithIgnoreLease()); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			m.log.Debug("cluster: deleting the node's key", "err", err)
		}
		stop()
		m.abandon(l)
	}
	if err := m.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		m.log.Debug("cluster: closing the etcd client", "err", err)
	}
	m.log.Info("left the cluster")
}

// Client is the etcd client every cluster part shares.
func (m *Membership) Client() *clientv3.Client { return m.cli }

// TTL is the lease TTL (--cluster-ttl).
func (m *Membership) TTL() time.Duration { return m.ttl }

// Lease returns the node's live lease, waiting while a lost one is being
// replaced; it fails only when ctx ends or the node shuts down.
func (m *Membership) Lease(ctx context.Context) (*Lease, error) {
	for {
		m.mu.Lock()
		l, ready := m.lease, m.ready
		m.mu.Unlock()
		if l != nil {
			select {
			case <-l.Lost():
			default:
				return l, nil
			}
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-m.ctx.Done():
			return nil, errors.New("the node is leaving the cluster")
		}
	}
}

// CurrentLease returns the live lease, or nil while there is none.
func (m *Membership) CurrentLease() *Lease {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lease
}

func (m *Membership) setLease(l *Lease) {
	m.mu.Lock()
	m.lease = l
	if l != nil {
		close(m.ready)
	} else {
		m.ready = make(chan struct{})
	}
	m.mu.Unlock()
}

// Self implements Directory.
func (m *Membership) Self() string { return m.p.Name }

// Nodes implements Directory.
func (m *Membership) Nodes() []Node {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := slices.Collect(maps.Values(m.nodes))
	slices.SortFunc(out, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Lookup implements Directory.
func (m *Membership) Lookup(name string) (Node, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.nodes[name]
	return n, ok
}

// Changed returns a channel closed the next time the set of nodes or
// what one of them publishes changes.
func (m *Membership) Changed() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changed
}

// ErrNameTaken is the error of a Start while another live node has the
// name.
var ErrNameTaken = errors.New("node name taken")

// register grants a lease and writes the node's key on it, unless a
// live node other than this one (whose earlier lease was prior) has the
// key. At start (first) it waits up to the TTL for an earlier holder's
// lease to lapse (this node restarted quickly after a crash) before
// refusing the name.
func (m *Membership) register(ctx context.Context, prior clientv3.LeaseID, first bool) (*Lease, error) {
	secs := int64(m.ttl / time.Second)
	gctx, stop := context.WithTimeout(ctx, m.ttl)
	grant, err := m.cli.Grant(gctx, secs)
	stop()
	if err != nil {
		return nil, fmt.Errorf("granting the node's etcd lease: %w", err)
	}
	id := grant.ID
	giveUp := time.Now().Add(m.ttl + time.Second)
	for {
		val, err := json.Marshal(m.snapshot())
		if err != nil {
			return nil, err
		}
		cmp := clientv3.Compare(clientv3.CreateRevision(m.key), "=", 0)
		if prior != 0 {
			// Our own key on the lease we gave up may still be there.
			cmp = clientv3.Compare(clientv3.LeaseValue(m.key), "=", int64(prior))
		}
		tctx, stop := context.WithTimeout(ctx, m.ttl)
		resp, err := m.cli.Txn(tctx).
			If(cmp).
			Then(clientv3.OpPut(m.key, string(val), clientv3.WithLease(id))).
			Else(clientv3.OpGet(m.key)).
			Commit()
		stop()
		if err == nil && !resp.Succeeded && prior != 0 && len(resp.Responses[0].GetResponseRange().Kvs) == 0 {
			prior = 0 // our old key lapsed meanwhile: take the name afresh
			continue
		}
		if err == nil && resp.Succeeded {
			s, err := concurrency.NewSession(m.cli, concurrency.WithLease(id), concurrency.WithTTL(int(secs)))
			if err != nil {
				m.revoke(id)
				return nil, fmt.Errorf("keeping the node's etcd lease alive: %w", err)
			}
			return &Lease{ID: id, Session: s, TTL: m.ttl, lost: make(chan struct{})}, nil
		}
		if err != nil {
			m.revoke(id)
			return nil, fmt.Errorf("registering node %s in etcd: %w", m.p.Name, err)
		}
		holder := describeHolder(resp.Responses[0].GetResponseRange().Kvs)
		if !first || time.Now().After(giveUp) {
			m.revoke(id)
			return nil, fmt.Errorf("%w: another live node is registered as %q (%s); give this node another --node name, or stop the other one", ErrNameTaken, m.p.Name, holder)
		}
		m.log.Info("cluster: the node name is registered by another lease; waiting for it to lapse (a restart after a crash) before refusing it", "holder", holder)
		select {
		case <-ctx.Done():
			m.revoke(id)
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		// Our own new lease must outlive the wait.
		kctx, stop := context.WithTimeout(ctx, m.ttl)
		_, err = m.cli.KeepAliveOnce(kctx, id)
		stop()
		if err != nil {
			return nil, fmt.Errorf("keeping the node's new etcd lease alive: %w", err)
		}
	}
}

func describeHolder(kvs []*mvccpb.KeyValue) string {
	if len(kvs) == 0 {
		return "gone"
	}
	var n Node
	if err := json.Unmarshal(kvs[0].Value, &n); err != nil {
		return "an unreadable registration"
	}
	return fmt.Sprintf("address %s, started %s", n.Address, n.Started.Format(time.RFC3339))
}

// snapshot is what this node publishes now.
func (m *Membership) snapshot() Node {
	n := m.p.Load()
	n.Name, n.Address, n.Version, n.Started = m.p.Name, m.p.Address, m.p.Version, m.started
	n.Updated = time.Now().UTC()
	return n
}

// keepLoop watches the live lease: it probes it every TTL/5 and declares
// it lost when no probe sent in the last 2/3 of the TTL was answered, or
// when etcd says it expired; then it registers the node again on a new
// lease, retrying until it can.
func (m *Membership) keepLoop(l *Lease) {
	defer m.wg.Done()
	for {
		m.watchLease(l)
		if m.ctx.Err() != nil {
			return
		}
		m.log.Warn("cluster: the node's etcd lease is lost; registering again on a new one", "lease", fmt.Sprintf("%x", l.ID))
		m.setLease(nil)
		m.abandon(l)
		prior := l.ID
		backoff := 100 * time.Millisecond
		for {
			next, err := m.register(m.ctx, prior, false)
			if err == nil {
				l = next
				m.setLease(l)
				m.log.Info("cluster: registered again on a new etcd lease", "lease", fmt.Sprintf("%x", l.ID))
				m.publish(l)
				break
			}
			if m.ctx.Err() != nil {
				return
			}
			m.log.Warn("cluster: registering again failed; retrying", "err", err, "in", backoff)
			select {
			case <-m.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, m.ttl/2)
		}
	}
}

// watchLease returns once l is lost or the node shuts down (then l is
// marked lost too).
func (m *Membership) watchLease(l *Lease) {
	defer l.markLost()
	every := m.ttl / 5
	deadline := m.ttl * 2 / 3
	lastOK := time.Now() // the lease was granted or renewed just now
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-l.Session.Done():
			return // etcd's keepalive found the lease gone
		case <-tick.C:
		}
		sent := time.Now()
		ctx, stop := context.WithTimeout(m.ctx, max(deadline-time.Since(lastOK), every))
		resp, err := m.cli.KeepAliveOnce(ctx, l.ID)
		stop()
		switch {
		case err == nil && resp.TTL > 0:
			lastOK = sent
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			return
		case err != nil && m.ctx.Err() == nil:
			m.log.Debug("cluster: lease keepalive failed", "err", err)
		}
		if time.Since(lastOK) >= deadline {
			return
		}
	}
}

// abandon gives up l: its session stops, and the lease is revoked when
// etcd can be reached within a moment (otherwise it lapses by its TTL).
func (m *Membership) abandon(l *Lease) {
	l.markLost()
	l.Session.Orphan()
	m.revoke(l.ID)
}

func (m *Membership) revoke(id clientv3.LeaseID) {
	ctx, stop := context.WithTimeout(context.Background(), time.Second)
	defer stop()
	if _, err := m.cli.Revoke(ctx, id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		m.log.Debug("cluster: revoking an abandoned lease", "lease", fmt.Sprintf("%x", id), "err", err)
	}
}

// publishLoop rewrites the node's key when what it publishes changes, at
// most every publishEvery, and at least every TTL/3.
func (m *Membership) publishLoop() {
	defer m.wg.Done()
	tick := time.NewTicker(publishEvery)
	defer tick.Stop()
	var last Node
	var lastPut time.Time
	var lastLease clientv3.LeaseID
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-tick.C:
		case <-m.refresh:
		}
		l := m.CurrentLease()
		if l == nil {
			continue
		}
		n := m.snapshot()
		cmp := n
		cmp.Updated = last.Updated
		if l.ID == lastLease && reflect.DeepEqual(cmp, last) && time.Since(lastPut) < m.ttl/3 {
			continue
		}
		if m.put(l, n) {
			last, lastPut, lastLease = n, time.Now(), l.ID
		}
	}
}

// Refresh asks for the node's record to be published again soon (within
// publishEvery), e.g. once what Load reads from exists or has changed in
// a way the periodic check would see late.
func (m *Membership) Refresh() {
	select {
	case m.refresh <- struct{}{}:
	default:
	}
}

// publish writes the node's key now (after registering again).
func (m *Membership) publish(l *Lease) { m.put(l, m.snapshot()) }

func (m *Membership) put(l *Lease, n Node) bool {
	val, err := json.Marshal(n)
	if err != nil {
		m.log.Error("cluster: encoding the node's record", "err", err)
		return false
	}
	ctx, stop := context.WithTimeout(m.ctx, m.ttl/3)
	defer stop()
	// Only while the key is still ours: a key that lapsed is taken again
	// by register, never silently recreated here.
	resp, err := m.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.LeaseValue(m.key), "=", int64(l.ID))).
		Then(clientv3.OpPut(m.key, string(val), clientv3.WithLease(l.ID))).
		Commit()
	if err != nil {
		if m.ctx.Err() == nil {
			m.log.Debug("cluster: publishing the node's record", "err", err)
		}
		return false
	}
	if !resp.Succeeded {
		// The key lapsed while the lease lives on (a lease cannot lose a
		// key otherwise): treat the lease as lost so the node registers
		// again.
		m.log.Warn("cluster: the node's key is gone from etcd; registering again")
		l.markLost()
		return false
	}
	return true
}

// loadNodes reads every node's key and returns the revision read at.
func (m *Membership) loadNodes(ctx context.Context) (int64, error) {
	ctx, stop := context.WithTimeout(ctx, m.ttl)
	defer stop()
	resp, err := m.cli.Get(ctx, NodesPrefix, clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	nodes := make(map[string]Node, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if n, ok := m.decode(kv.Key, kv.Value); ok {
			nodes[n.Name] = n
		}
	}
	m.mu.Lock()
	m.nodes = nodes
	m.notifyLocked()
	m.mu.Unlock()
	return resp.Header.Revision, nil
}

func (m *Membership) notifyLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

func (m *Membership) decode(key, val []byte) (Node, bool) {
	var n Node
	if err := json.Unmarshal(val, &n); err != nil {
		m.log.Warn("cluster: an unreadable node record in etcd", "key", string(key), "err", err)
		return Node{}, false
	}
	n.Name = strings.TrimPrefix(string(key), NodesPrefix)
	return n, true
}

// watchLoop keeps the Directory: it follows NodesPrefix from rev on and
// reads it whole again whenever the watch breaks.
func (m *Membership) watchLoop(rev int64) {
	defer m.wg.Done()
	for m.ctx.Err() == nil {
		// WithRequireLeader: a member cut off from the others ends the
		// watch instead of keeping it open on a frozen view.
		wctx, stop := context.WithCancel(clientv3.WithRequireLeader(m.ctx))
		for resp := range m.cli.Watch(wctx, NodesPrefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
			if err := resp.Err(); err != nil {
				m.log.Debug("cluster: the watch on the nodes broke", "err", err)
				break
			}
			m.mu.Lock()
			for _, ev := range resp.Events {
				name := strings.TrimPrefix(string(ev.Kv.Key), NodesPrefix)
				if ev.Type == clientv3.EventTypeDelete {
					delete(m.nodes, name)
					continue
				}
				if n, ok := m.decode(ev.Kv.Key, ev.Kv.Value); ok {
					m.nodes[name] = n
				}
			}
			m.notifyLocked()
			m.mu.Unlock()
			rev = resp.Header.Revision
		}
		stop()
		for m.ctx.Err() == nil {
			r, err := m.loadNodes(m.ctx)
			if err == nil {
				rev = r
				break
			}
			select {
			case <-m.ctx.Done():
			case <-time.After(m.ttl / 5):
			}
		}
	}
}
