package cluster

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/aura-dev/aura/internal/admission"
	"github.com/aura-dev/aura/internal/cluster/etcdtest"
)

// BenchmarkClusterSlot measures cluster-scope slots on a real etcd of
// three members (every grant is a Raft round trip, written to disk): two
// nodes' tasks, four at a time on each, take one slot of a resource and
// give it back. It reports whole acquire+release cycles per second and
// the latency of the grant. limit=64 never refuses (the cost of the
// transactions alone); limit=1 has every task but one refused at a time,
// waiting for the watch to say the slot is free (the FIFO line's cost).
// etcd-put-delete is the floor to hold them against: the same tasks each
// writing a key on the lease and deleting it, the two writes a slot needs
// at the least (its latency is the put's).
func BenchmarkClusterSlot(b *testing.B) {
	c := etcdtest.Start(b, 3)
	nodes := []*ledgerNode{
		startLedgerNode(b, []string{c.Endpoint(0)}, "a", 30*time.Second, true),
		startLedgerNode(b, []string{c.Endpoint(1)}, "b", 30*time.Second, true),
	}
	ctx := context.Background()
	b.Run("etcd-put-delete", func(b *testing.B) {
		cycles(b, nodes, func(n *ledgerNode, holder string) (time.Duration, error) {
			key := "/bench/" + holder
			t0 := time.Now()
			if _, err := n.cli.Put(ctx, key, n.name, clientv3.WithLease(n.lease)); err != nil {
				return 0, err
			}
			lat := time.Since(t0)
			_, err := n.cli.Delete(ctx, key)
			return lat, err
		})
	})
	for _, limit := range []int{64, 1} {
		b.Run(fmt.Sprintf("limit=%d", limit), func(b *testing.B) {
			claim := []admission.Claim{{Key: fmt.Sprintf("bench:%d", limit), Limit: limit}}
			cycles(b, nodes, func(n *ledgerNode, holder string) (time.Duration, error) {
				t0 := time.Now()
				for {
					ok, _, err := n.ledger.Acquire(ctx, holder, claim)
					if err != nil {
						return 0, err
					}
					if ok {
						break
					}
					select {
					case <-n.freed:
					case <-time.After(100 * time.Millisecond):
					}
				}
				lat := time.Since(t0)
				return lat, n.ledger.Release(ctx, holder, []string{claim[0].Key})
			})
		})
	}
}

// cycles runs b.N cycles, four tasks at a time on each node, and reports
// cycles/s and the p50 and p99 of the latencies cycle returns.
func cycles(b *testing.B, nodes []*ledgerNode, cycle func(n *ledgerNode, holder string) (time.Duration, error)) {
	const perNode = 4
	var (
		mu   sync.Mutex
		lats []time.Duration
		next int
		wg   sync.WaitGroup
	)
	take := func() (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		next++
		return next, next <= b.N
	}
	b.ResetTimer()
	start := time.Now()
	for _, n := range nodes {
		for w := range perNode {
			wg.Go(func() {
				for {
					i, ok := take()
					if !ok {
						return
					}
					lat, err := cycle(n, fmt.Sprintf("%s.%d.%d", n.name, w, i))
					if err != nil {
						b.Error(err)
						return
					}
					mu.Lock()
					lats = append(lats, lat)
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if len(lats) == 0 {
		return
	}
	slices.Sort(lats)
	b.ReportMetric(float64(len(lats))/elapsed.Seconds(), "cycles/s")
	b.ReportMetric(float64(lats[len(lats)/2].Microseconds())/1e3, "p50-ms")
	b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds())/1e3, "p99-ms")
}
