package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// InterceptorsPrefix is where nodes publish the interceptors connected to
// them: /aura/interceptors/<node>/<id>, each key on its node's lease.
const InterceptorsPrefix = "/aura/interceptors/"

// Interceptor is an interceptor as published: enough for any node to
// decide whether it wants a task and to ask it through its node.
type Interceptor struct {
	Node     string        `json:"node"` // the node it is connected to
	ID       string        `json:"id"`   // its id on that node (AskInterceptorRequest.interceptor)
	Name     string        `json:"name"`
	Plan     string        `json:"plan,omitempty"` // only tasks of this plan; "" = all
	Timeout  time.Duration `json:"timeout"`
	FailOpen bool          `json:"fail_open"`
}

// Key is the etcd key of ic.
func (ic Interceptor) Key() string { return InterceptorsPrefix + ic.Node + "/" + ic.ID }

// InterceptorBoard publishes the interceptors connected to this node in
// etcd and follows those of every other node. Its keys live on a lease of
// its own (a session with the cluster's TTL), so that a node that dies
// takes its interceptors with it once the TTL lapses, and a node whose
// session lapsed while it lived publishes them again on a new one.
type InterceptorBoard struct {
	// Immutable after NewInterceptorBoard.
	cli  *clientv3.Client
	self string
	ttl  time.Duration
	log  *slog.Logger

	mu   sync.Mutex // guards own
	own  map[string]Interceptor
	wake chan struct{} // one pending change for the publisher; never closed
}

// NewInterceptorBoard returns a board for node self; Run starts it.
func NewInterceptorBoard(cli *clientv3.Client, self string, ttl time.Duration, log *slog.Logger) *InterceptorBoard {
	if log == nil {
		log = slog.Default()
	}
	return &InterceptorBoard{cli: cli, self: self, ttl: ttl, log: log, own: map[string]Interceptor{}, wake: make(chan struct{}, 1)}
}

// Publish announces an interceptor connected to this node under id, and
// returns the function that takes it back. It does not wait for etcd: the
// board's publisher puts the key as soon as it can.
func (b *InterceptorBoard) Publish(id string, ic Interceptor) (withdraw func()) {
	ic.Node, ic.ID = b.self, id
	b.mu.Lock()
	b.own[id] = ic
	b.mu.Unlock()
	b.poke()
	return func() {
		b.mu.Lock()
		delete(b.own, id)
		b.mu.Unlock()
		b.poke()
	}
}

func (b *InterceptorBoard) poke() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Run publishes this node's interceptors and calls apply with the full set
// of the other nodes' interceptors whenever it changes, until ctx ends.
// apply is called from one goroutine at a time.
func (b *InterceptorBoard) Run(ctx context.Context, apply func([]Interceptor)) {
	var wg sync.WaitGroup
	wg.Go(func() { b.publish(ctx) })
	wg.Go(func() { b.follow(ctx, apply) })
	wg.Wait()
}

// publish keeps the etcd keys in step with own, on a session it renews
// when it lapses.
func (b *InterceptorBoard) publish(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := b.publishOn(ctx)
		if ctx.Err() != nil {
			return
		}
		b.log.Warn("interceptor registrations: etcd session lost; publishing them again on a new one", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// publishOn opens a session and publishes on it until it lapses or ctx ends.
func (b *InterceptorBoard) publishOn(ctx context.Context) error {
	s, err := concurrency.NewSession(b.cli, concurrency.WithTTL(max(1, int(b.ttl/time.Second))), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("opening a session: %w", err)
	}
	defer func() {
		// Revoke: this node's interceptors go at once, not after the TTL.
		rctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, _ = b.cli.Revoke(rctx, s.Lease())
		s.Orphan()
	}()
	put := map[string]Interceptor{} // what etcd holds on this session
	for {
		b.mu.Lock()
		want := maps.Clone(b.own)
		b.mu.Unlock()
		for id, ic := range want {
			if old, ok := put[id]; ok && old == ic {
				continue
			}
			v, err := json.Marshal(ic)
			if err != nil {
				return err
			}
			if _, err := b.cli.Put(ctx, ic.Key(), string(v), clientv3.WithLease(s.Lease())); err != nil {
				return fmt.Errorf("publishing interceptor %s: %w", ic.Name, err)
			}
			put[id] = ic
		}
		for id, ic := range put {
			if _, ok := want[id]; ok {
				continue
			}
			if _, err := b.cli.Delete(ctx, ic.Key()); err != nil {
				return fmt.Errorf("withdrawing interceptor %s: %w", ic.Name, err)
			}
			delete(put, id)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.Done():
			return fmt.Errorf("session %x lapsed", s.Lease())
		case <-b.wake:
		}
	}
}

// follow reads every other node's interceptors, then watches for changes,
// reading them all again whenever the watch breaks.
func (b *InterceptorBoard) follow(ctx context.Context, apply func([]Interceptor)) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := b.followOnce(ctx, apply)
		if ctx.Err() != nil {
			return
		}
		b.log.Warn("interceptor registrations: reading them again", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (b *InterceptorBoard) followOnce(ctx context.Context, apply func([]Interceptor)) error {
	resp, err := b.cli.Get(ctx, InterceptorsPrefix, clientv3.WithPrefix())
	if err != nil {
		return err
	}
	all := map[string]Interceptor{}
	for _, kv := range resp.Kvs {
		b.note(all, string(kv.Key), kv.Value)
	}
	apply(b.others(all))
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range b.cli.Watch(wctx, InterceptorsPrefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1)) {
		if err := wr.Err(); err != nil {
			return err
		}
		for _, ev := range wr.Events {
			if ev.Type == clientv3.EventTypeDelete {
				delete(all, string(ev.Kv.Key))
			} else {
				b.note(all, string(ev.Kv.Key), ev.Kv.Value)
			}
		}
		apply(b.others(all))
	}
	return fmt.Errorf("watch ended: %w", context.Cause(wctx))
}

// note records the interceptor under key, skipping (and logging) a value
// that is not one.
func (b *InterceptorBoard) note(all map[string]Interceptor, key string, value []byte) {
	var ic Interceptor
	if err := json.Unmarshal(value, &ic); err != nil || ic.Key() != key {
		b.log.Warn("interceptor registrations: skipping a key that holds no interceptor", "key", key, "err", err)
		return
	}
	all[key] = ic
}

// others lists the interceptors of nodes other than this one, by key.
func (b *InterceptorBoard) others(all map[string]Interceptor) []Interceptor {
	var out []Interceptor
	for _, key := range slices.Sorted(maps.Keys(all)) {
		if !strings.HasPrefix(key, InterceptorsPrefix+b.self+"/") {
			out = append(out, all[key])
		}
	}
	return out
}
