package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// LeaseWatch tells when a node's etcd lease can no longer be trusted, in
// time to act before it lapses. It renews the lease itself, every TTL/6,
// and reports doubt once no renewal has succeeded for TTL/2: the lease
// then still has at least TTL/2 to live on the etcd side (etcd renewed it
// no earlier than the last success), which is the time a node has to stop
// what it does under the lease (the tasks holding cluster-scope slots)
// before etcd can hand it to someone else. etcd's own client renews a
// lease only every TTL/3, too seldom for that margin, hence the renewals
// of its own; they are harmless beside any other keepalive of the lease.
type LeaseWatch struct {
	cli        *clientv3.Client
	id         clientv3.LeaseID
	ttl        time.Duration
	doubtAfter time.Duration
	log        *slog.Logger
	onDoubt    func(cause error)
	onTrust    func()

	stop   context.CancelFunc
	done   chan struct{}
	lapsed chan struct{} // closed once etcd says the lease is gone

	// cb is held across a change between trusted and in doubt and its
	// callback, so that OnDoubt and OnTrust are heard in the order the
	// changes happened.
	cb    sync.Mutex
	mu    sync.Mutex
	last  time.Time // the last renewal that succeeded
	doubt error     // why the lease is in doubt; nil while trusted
	timer *time.Timer
}

// LeaseWatchConfig wires a LeaseWatch.
type LeaseWatchConfig struct {
	Client *clientv3.Client
	Lease  clientv3.LeaseID
	TTL    time.Duration // the lease's TTL
	// OnDoubt is called, once per spell of doubt, with its cause; OnTrust
	// when a renewal succeeds again after it. Either may be nil. They are
	// called from the watch's own goroutines, never both at once.
	OnDoubt func(cause error)
	OnTrust func()
	Logger  *slog.Logger
}

// WatchLease starts watching cfg.Lease, which is trusted from now; Close
// stops it.
func WatchLease(cfg LeaseWatchConfig) *LeaseWatch {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, stop := context.WithCancel(context.Background())
	w := &LeaseWatch{
		cli: cfg.Client, id: cfg.Lease, ttl: cfg.TTL, doubtAfter: cfg.TTL / 2, log: cfg.Logger,
		onDoubt: cfg.OnDoubt, onTrust: cfg.OnTrust,
		stop: stop, done: make(chan struct{}), lapsed: make(chan struct{}), last: time.Now(),
	}
	w.mu.Lock()
	w.timer = time.AfterFunc(w.doubtAfter, w.expired)
	w.mu.Unlock()
	go w.renew(ctx)
	return w
}

// Err says why the lease is in doubt, or nil while it is trusted.
func (w *LeaseWatch) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.doubt
}

// Lapsed is closed once etcd says the lease is gone: the node's session
// must be made anew, with a new lease.
func (w *LeaseWatch) Lapsed() <-chan struct{} { return w.lapsed }

// Close stops the watch (not the lease).
func (w *LeaseWatch) Close() {
	w.stop()
	<-w.done
	w.mu.Lock()
	w.timer.Stop()
	w.mu.Unlock()
}

func (w *LeaseWatch) renew(ctx context.Context) {
	defer close(w.done)
	every := max(w.ttl/6, 50*time.Millisecond)
	for {
		select {
		case <-time.After(every):
		case <-ctx.Done():
			return
		}
		rctx, cancel := context.WithTimeout(ctx, every)
		resp, err := w.cli.KeepAliveOnce(rctx, w.id)
		cancel()
		if ctx.Err() != nil {
			return
		}
		switch {
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			w.gone(fmt.Errorf("etcd says lease %x is gone (it lapsed)", int64(w.id)))
			return
		case err != nil:
			w.log.Debug("renewing the node's etcd lease failed", "lease", fmt.Sprintf("%x", int64(w.id)), "err", err)
		case resp.TTL <= 0:
			w.gone(fmt.Errorf("etcd says lease %x has lapsed", int64(w.id)))
			return
		default:
			w.renewed()
		}
	}
}

// renewed notes a renewal: the doubt, if any, is over.
func (w *LeaseWatch) renewed() {
	w.cb.Lock()
	defer w.cb.Unlock()
	w.mu.Lock()
	w.last = time.Now()
	w.timer.Reset(w.doubtAfter)
	was := w.doubt
	w.doubt = nil
	w.mu.Unlock()
	if was != nil {
		w.log.Info("the node's etcd lease is renewed again: cluster-scope resources are granted again", "lease", fmt.Sprintf("%x", int64(w.id)))
		if w.onTrust != nil {
			w.onTrust()
		}
	}
}

// expired runs when doubtAfter passed with no renewal.
func (w *LeaseWatch) expired() {
	w.cb.Lock()
	defer w.cb.Unlock()
	w.mu.Lock()
	if w.doubt != nil || time.Since(w.last) < w.doubtAfter {
		w.mu.Unlock()
		return
	}
	cause := fmt.Errorf("no renewal of the node's etcd lease %x succeeded for %s (TTL %s)",
		int64(w.id), time.Since(w.last).Round(time.Millisecond), w.ttl)
	w.doubt = cause
	w.mu.Unlock()
	w.log.Error("the node's etcd session is in doubt", "err", cause)
	if w.onDoubt != nil {
		w.onDoubt(cause)
	}
}

// gone notes that the lease lapsed for good.
func (w *LeaseWatch) gone(cause error) {
	w.cb.Lock()
	defer w.cb.Unlock()
	w.mu.Lock()
	w.timer.Stop()
	was := w.doubt
	w.doubt = cause
	w.mu.Unlock()
	close(w.lapsed)
	w.log.Error("the node's etcd lease is gone", "err", cause)
	if was == nil && w.onDoubt != nil {
		w.onDoubt(cause)
	}
}
