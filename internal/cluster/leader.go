package cluster

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// LeadershipParams build a Leadership.
type LeadershipParams struct {
	Membership *Membership
	// Lead are what runs on the leader only: each is started in a
	// goroutine of its own when this node is elected, with a context that
	// ends when it stops leading (its lease is lost, or it shuts down),
	// and must return soon after. The node campaigns again only once all
	// have returned, so two nodes never run them at once as far as their
	// leases tell.
	Lead   []func(ctx context.Context)
	Logger *slog.Logger // optional
}

// Leadership campaigns for LeaderPrefix (an etcd election on the node's
// lease) and runs Lead while this node is the leader. A leader that loses
// its lease stops leading before etcd can expire the lease and elect
// another (Lease.Lost); a leader that dies is replaced once its lease
// lapses, within the TTL.
type Leadership struct {
	// Immutable after NewLeadership.
	p   LeadershipParams
	log *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	leading atomic.Bool
}

// NewLeadership returns a Leadership; nothing runs until Start.
func NewLeadership(p LeadershipParams) *Leadership {
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Leadership{p: p, log: p.Logger, ctx: ctx, cancel: cancel}
}

// Lead adds fn to what runs on the leader (LeadershipParams.Lead); call
// it before Start.
func (l *Leadership) Lead(fn func(ctx context.Context)) { l.p.Lead = append(l.p.Lead, fn) }

// Start starts campaigning.
func (l *Leadership) Start() {
	l.wg.Add(1)
	go l.campaignLoop()
}

// Shutdown stops leading (Lead's contexts end and they return) and
// campaigning; the election key goes with the lease, or is resigned now.
func (l *Leadership) Shutdown() {
	l.cancel()
	l.wg.Wait()
}

// IsLeader reports whether this node leads now.
func (l *Leadership) IsLeader() bool { return l.leading.Load() }

// Leader returns the name of the node that leads now, "" while none does
// (between a leader's lease lapsing and the next one elected).
func (l *Leadership) Leader(ctx context.Context) (string, error) {
	return LeaderOf(ctx, l.p.Membership.Client())
}

// LeaderOf returns the name of the node that leads the cluster cli talks
// to, "" when none does.
func LeaderOf(ctx context.Context, cli *clientv3.Client) (string, error) {
	resp, err := cli.Get(ctx, LeaderPrefix+"/", append(clientv3.WithFirstCreate(), clientv3.WithPrefix())...)
	if err != nil {
		return "", err
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}

func (l *Leadership) campaignLoop() {
	defer l.wg.Done()
	m := l.p.Membership
	for l.ctx.Err() == nil {
		lease, err := m.Lease(l.ctx)
		if err != nil {
			return
		}
		l.term(lease)
		if l.ctx.Err() == nil {
			// A failed campaign (etcd unreachable) is not retried in a
			// tight loop.
			select {
			case <-l.ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// term campaigns on one lease and leads until it is lost.
func (l *Leadership) term(lease *Lease) {
	ctx, stop := context.WithCancel(l.ctx)
	defer stop()
	go func() {
		select {
		case <-lease.Lost():
			stop()
		case <-ctx.Done():
		}
	}()
	e := concurrency.NewElection(lease.Session, LeaderPrefix)
	if err := e.Campaign(ctx, l.p.Membership.Self()); err != nil {
		if ctx.Err() == nil {
			l.log.Warn("cluster: campaigning for leadership failed; trying again", "err", err)
		}
		return
	}
	l.leading.Store(true)
	l.log.Info("cluster: this node leads the cluster")
	var wg sync.WaitGroup
	for _, run := range l.p.Lead {
		wg.Go(func() { run(ctx) })
	}
	<-ctx.Done()
	wg.Wait()
	l.leading.Store(false)
	l.log.Info("cluster: this node no longer leads the cluster")
	select {
	case <-lease.Lost():
		return // the key goes with the lease
	default:
	}
	rctx, rstop := context.WithTimeout(context.Background(), time.Second)
	defer rstop()
	if err := e.Resign(rctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		l.log.Debug("cluster: resigning the leadership", "err", err)
	}
}
