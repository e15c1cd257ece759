package daemon

import (
	"context"
	"fmt"
	"slices"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/aura-dev/aura/internal/cluster"
	"github.com/aura-dev/aura/internal/execmgr"
	"github.com/aura-dev/aura/internal/resources"
)

// clusterLedger counts the slots of the resources declared scope: cluster
// as etcd semaphores shared by every node (cluster.Ledger): the manager
// claims them through it, its watch tells the manager when a slot may be
// free, and the lease guard ends the tasks holding slots when the node's
// etcd session comes into doubt.
type clusterLedger struct {
	ledger *cluster.Ledger
	keys   []string
}

// withClusterLedger gives the manager a cluster Ledger for the declared
// cluster-scope resources, if any: they need a cluster.
func (d *Daemon) withClusterLedger(mcfg *execmgr.Config) error {
	keys := d.cfg.Resources.ClusterKeys()
	if len(keys) == 0 {
		return nil
	}
	if d.cluster == nil {
		return fmt.Errorf("resources %q are declared scope: cluster, which counts them across a cluster's nodes: "+
			"start aurad as a node (--cluster-etcd, --node, --advertise), or declare them without scope: cluster", keys)
	}
	m := d.cluster.Membership
	l := cluster.NewLedger(cluster.LedgerConfig{
		Client: m.Client(), Node: m.Self(), Logger: d.log,
		Lease: func() clientv3.LeaseID {
			if cur := m.CurrentLease(); cur != nil {
				return cur.ID
			}
			return clientv3.NoLease
		},
	})
	mcfg.Ledger, mcfg.SharedResources = l, keys
	d.ledger = &clusterLedger{ledger: l, keys: keys}
	return nil
}

// startClusterLedger starts the cluster Ledger's watch and the lease
// guard, once the manager is built. They stop after the drain (which
// gives the last slots back) and before the membership.
func (d *Daemon) startClusterLedger() {
	if d.ledger == nil {
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { d.ledger.ledger.Watch(ctx, func(keys []string) { d.Manager.ResourcesFreed(keys...) }) })
	wg.Go(func() { d.guardLease(ctx) })
	d.parts.add("cluster ledger", func(context.Context) { stop(); wg.Wait() })
	d.log.Info("cluster-scope resources are counted in etcd", "resources", d.ledger.keys)
}

// guardLease watches each lease of the node in turn: a lease whose
// renewals stop for half its TTL is in doubt (cluster.LeaseWatch), and a
// lease the membership gives up is lost; either way the tasks holding
// cluster-scope slots are ended before the lease can lapse. A new lease
// is trusted again.
func (d *Daemon) guardLease(ctx context.Context) {
	m := d.cluster.Membership
	l := d.ledger.ledger
	for {
		lease, err := m.Lease(ctx)
		if err != nil {
			return // shutting down
		}
		l.Trust()
		w := cluster.WatchLease(cluster.LeaseWatchConfig{
			Client: m.Client(), Lease: lease.ID, TTL: lease.TTL, Logger: d.log,
			OnDoubt: d.leaseInDoubt, OnTrust: l.Trust,
		})
		select {
		case <-lease.Lost():
			w.Close()
			if ctx.Err() == nil {
				d.leaseInDoubt(fmt.Errorf("the node gave up its etcd lease %x (no keepalive answered, or etcd says it expired)", int64(lease.ID)))
			}
		case <-ctx.Done():
			w.Close()
			return
		}
	}
}

// leaseInDoubt stops granting cluster-scope slots and ends the tasks
// holding them INTERRUPTED, kind lease_lost.
func (d *Daemon) leaseInDoubt(cause error) {
	holders := d.ledger.ledger.Doubt(cause)
	if len(holders) == 0 {
		return
	}
	ended := d.Manager.EndInterrupted(holders, execmgr.KindLeaseLost,
		fmt.Errorf("this node's etcd session is in doubt, so the task was stopped before its cluster-scope resource slots could go to another node: %v", cause))
	d.log.Error("ended the tasks holding cluster-scope resources: the node's etcd session is in doubt",
		"tasks", ended, "cause", cause)
}

// checkScopes refuses a reload that changes which resources are
// cluster-scope: the manager counts those through its Ledger from start.
func checkScopes(old, fresh *resources.Declarations) error {
	if was, now := old.ClusterKeys(), fresh.ClusterKeys(); !slices.Equal(was, now) {
		return fmt.Errorf("the cluster-scope resources would change from %q to %q: changing a resource's scope needs a restart of aurad", was, now)
	}
	return nil
}
