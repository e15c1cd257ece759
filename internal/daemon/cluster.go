package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/aura-dev/aura/internal/admission"
	"github.com/aura-dev/aura/internal/cluster"
	"github.com/aura-dev/aura/internal/execmgr"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// ClusterConfig makes the daemon a node of a cluster on etcd (aurad
// --cluster-etcd); Config.Cluster nil keeps it alone, with nothing of
// the cluster started.
type ClusterConfig struct {
	Endpoints []string    // etcd client URLs (--cluster-etcd)
	TLS       *tls.Config // etcd client TLS (--etcd-ca/--etcd-cert/--etcd-key); nil: plaintext
	Node      string      // this node's name (--node), also in its task ids
	Advertise string      // host:port other nodes and clients reach this node's gRPC at (--advertise)
	TTL       time.Duration
	// PeerTLS is how this node dials the others (nil: plaintext), and
	// Token the bearer token it presents on calls made on its own behalf
	// (--cluster-token-file; "" presents none).
	PeerTLS *tls.Config
	Token   string
}

// clusterParts are the cluster's parts of a daemon; nil outside a cluster.
type clusterParts struct {
	// Membership is the node's etcd client, lease and Directory.
	Membership *cluster.Membership
	// Leadership runs what must run once in the cluster on its leader.
	Leadership *cluster.Leadership
	// manager is what the node's load is read from once it is built: the
	// membership publishes from its own goroutine, from before the
	// manager exists.
	manager atomic.Pointer[execmgr.Manager]
}

// Cluster returns the node's membership: the etcd client (Client), the
// lease its keys live on and when it is lost (Lease), and the live
// Directory of nodes. Nil outside a cluster.
func (d *Daemon) Cluster() *cluster.Membership {
	if d.cluster == nil {
		return nil
	}
	return d.cluster.Membership
}

// Leadership returns the node's part in the leader election (what runs on
// the leader is added with its Lead before New returns); nil outside a
// cluster.
func (d *Daemon) Leadership() *cluster.Leadership {
	if d.cluster == nil {
		return nil
	}
	return d.cluster.Leadership
}

// nodeName is this daemon's node name, "" outside a cluster.
func (d *Daemon) nodeName() string {
	if d.cfg.Cluster == nil {
		return ""
	}
	return d.cfg.Cluster.Node
}

// startMembership joins the cluster, before the manager is built (parts
// built with it, like a cluster Ledger, use the etcd client and lease) and
// so that it leaves the cluster after the drain, once the node's tasks
// have given back what they held.
func (d *Daemon) startMembership(ctx context.Context) error {
	cc := d.cfg.Cluster
	if cc == nil {
		return nil
	}
	parts := &clusterParts{}
	m, err := cluster.NewMembership(cluster.MembershipParams{
		Endpoints: cc.Endpoints, TLS: cc.TLS, Name: cc.Node, Address: cc.Advertise, Version: d.cfg.Version,
		TTL: cc.TTL, Load: parts.load, Logger: d.log,
	})
	if err != nil {
		return err
	}
	if err := m.Start(ctx); err != nil {
		return err
	}
	parts.Membership = m
	// Built now, started by startLeadership once what the leader runs
	// (Leadership.Lead) is ready.
	parts.Leadership = cluster.NewLeadership(cluster.LeadershipParams{Membership: m, Logger: d.log})
	d.cluster = parts
	d.parts.add("cluster membership", func(context.Context) { m.Shutdown() })
	d.Metrics.Registry.MustRegister(clusterCollector{parts})
	return nil
}

// startLeadership starts campaigning once everything the leader runs is
// started; it stops first, so what the leader runs stops while its parts
// still run.
func (d *Daemon) startLeadership() {
	if d.cluster == nil {
		return
	}
	l := d.cluster.Leadership
	l.Start()
	d.parts.add("cluster leadership", func(context.Context) { l.Shutdown() })
}

// load is what the node publishes about itself.
func (c *clusterParts) load() cluster.Node {
	m := c.manager.Load()
	if m == nil {
		return cluster.Node{}
	}
	return nodeLoad(m)
}

// nodeLoad is what a node publishes about itself: its pools and their
// free instances, its other resources, its capacity and load.
func nodeLoad(m *execmgr.Manager) cluster.Node {
	st, _ := m.Stats()
	n := cluster.Node{Capacity: st.GlobalLimit, Running: st.InUse, Queued: st.Waiting}
	decl := m.Declarations()
	if decl == nil {
		return n
	}
	held := make(map[string]admission.ResourceStats, len(st.Resources))
	for _, r := range st.Resources {
		held[r.Key] = r
	}
	if len(decl.Pools) > 0 {
		n.Pools = make(map[string][]string, len(decl.Pools))
		n.Free = make(map[string][]string, len(decl.Pools))
		for _, p := range decl.Pools {
			n.Pools[p.Name] = slices.Clone(p.Instances)
			free := []string{}
			for _, inst := range p.Instances {
				r, ok := held[admission.InstanceKey(p.Name, inst)]
				if !ok || r.InUse < max(r.Limit, 1) {
					free = append(free, inst)
				}
			}
			n.Free[p.Name] = free
		}
	}
	n.Resources = slices.Sorted(maps.Keys(decl.Counters))
	return n
}

// clusterCollector reads the cluster's gauges at scrape time.
type clusterCollector struct{ c *clusterParts }

var (
	clusterNodesDesc = prometheus.NewDesc("aura_cluster_nodes", "Live nodes of the cluster as this node's directory sees them (this one included).", nil, nil)
	clusterLeaseDesc = prometheus.NewDesc("aura_cluster_session_up", "1 while this node holds a live etcd lease (session), 0 while it lost it and registers again.", nil, nil)
	clusterLeadDesc  = prometheus.NewDesc("aura_cluster_leader", "1 while this node is the cluster's elected leader (it fires the schedules).", nil, nil)
)

func (cc clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- clusterNodesDesc
	ch <- clusterLeaseDesc
	ch <- clusterLeadDesc
}

func (cc clusterCollector) Collect(ch chan<- prometheus.Metric) {
	m := cc.c.Membership
	ch <- prometheus.MustNewConstMetric(clusterNodesDesc, prometheus.GaugeValue, float64(len(m.Nodes())))
	ch <- prometheus.MustNewConstMetric(clusterLeaseDesc, prometheus.GaugeValue, boolGauge(m.CurrentLease() != nil))
	ch <- prometheus.MustNewConstMetric(clusterLeadDesc, prometheus.GaugeValue, boolGauge(cc.c.Leadership.IsLeader()))
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// checkCluster says what is wrong with a cluster configuration.
func (cc *ClusterConfig) check() error {
	if cc == nil {
		return nil
	}
	if len(cc.Endpoints) == 0 {
		return fmt.Errorf("--cluster-etcd: no etcd URL given")
	}
	if cc.Node == "" {
		return fmt.Errorf("--node: required with --cluster-etcd: this node's name in the cluster (a DNS label, unique in the cluster)")
	}
	if err := cluster.CheckNodeName(cc.Node); err != nil {
		return fmt.Errorf("--node: %w", err)
	}
	if cc.Advertise == "" {
		return fmt.Errorf("--advertise: required with --cluster-etcd: the host:port other nodes and clients reach this node's gRPC at")
	}
	return nil
}

// nodeList answers ListNodes: from the directory in a cluster, with this
// daemon alone outside one.
type nodeList struct{ d *Daemon }

// leaderWait bounds the etcd read of the leader's name: ListNodes answers
// from the directory even while etcd is slow.
const leaderWait = 2 * time.Second

func (nl nodeList) ListNodes(ctx context.Context) (*aurav1.ListNodesResponse, error) {
	d := nl.d
	if d.cluster == nil {
		n := nodeLoad(d.Manager)
		n.Version, n.Started, n.Updated = d.cfg.Version, d.started, time.Now().UTC()
		return &aurav1.ListNodesResponse{Nodes: []*aurav1.Node{nodePB(n, false)}}, nil
	}
	m := d.cluster.Membership
	lctx, stop := context.WithTimeout(ctx, leaderWait)
	leader, err := d.cluster.Leadership.Leader(lctx)
	stop()
	if err != nil {
		d.log.Debug("cluster: reading the leader's name", "err", err)
		leader = ""
		if d.cluster.Leadership.IsLeader() {
			leader = m.Self()
		}
	}
	out := &aurav1.ListNodesResponse{Clustered: true, Leader: leader, Self: m.Self()}
	for _, n := range m.Nodes() {
		out.Nodes = append(out.Nodes, nodePB(n, n.Name == leader))
	}
	return out, nil
}

func nodePB(n cluster.Node, leader bool) *aurav1.Node {
	pb := &aurav1.Node{Name: n.Name, Address: n.Address, Version: n.Version, Resources: n.Resources,
		Capacity: int32(n.Capacity), Running: int32(n.Running), Queued: int32(n.Queued), Leader: leader}
	if !n.Started.IsZero() {
		pb.Started = timestamppb.New(n.Started)
	}
	if !n.Updated.IsZero() {
		pb.LastSeen = timestamppb.New(n.Updated)
	}
	for _, name := range slices.Sorted(maps.Keys(n.Pools)) {
		pb.Pools = append(pb.Pools, &aurav1.NodePool{Name: name, Instances: n.Pools[name], Free: n.Free[name]})
	}
	return pb
}
