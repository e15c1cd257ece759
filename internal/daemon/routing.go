package daemon

import (
	"context"
	"crypto/tls"
	"slices"
	"time"

	"google.golang.org/grpc"

	"github.com/aura-dev/aura/internal/auth"
	"github.com/aura-dev/aura/internal/cluster"
	"github.com/aura-dev/aura/internal/validation"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// RoutingConfig is how a node answers for the cluster: calls about
// another node's task forwarded to it, ListTasks and GetStats fanned out,
// submissions routed, and the drain's handoff. Used only with
// Config.Cluster.
type RoutingConfig struct {
	// PeerTLS is how this node dials the others: set exactly when it
	// serves TLS (nodes serve alike); nil dials plaintext.
	PeerTLS *tls.Config
	// FanOutTimeout bounds each node's answer to a cluster ListTasks or
	// GetStats (--cluster-fanout-timeout; 0: 5s).
	FanOutTimeout time.Duration
	// Handoff hands the queued tasks another live node can run to it when
	// this node drains (--cluster-handoff).
	Handoff bool
	// Token is this node's own bearer token (--cluster-token-file), sent
	// with the calls it makes in its own name: the handoff's submissions.
	Token string
}

// routing is the node's part in answering for the cluster; nil outside a
// cluster.
type routing struct {
	peers     *cluster.Peers
	forwarder *cluster.Forwarder
}

// startRouting builds the peer connections and the forwarder, whose
// interceptors buildServer installs. It needs the manager (submissions'
// tags) and the membership's directory.
func (d *Daemon) startRouting() {
	if d.cluster == nil {
		return
	}
	dir := d.cluster.Membership
	rc := d.cfg.Routing
	peers := cluster.NewPeers(cluster.PeersParams{Directory: dir, TLS: rc.PeerTLS, Logger: d.log})
	peers.Start()
	// Stopped after the gRPC server and the drain, which both call
	// through it.
	d.parts.add("peer connections", func(context.Context) { peers.Shutdown() })
	d.routing = &routing{peers: peers, forwarder: cluster.NewForwarder(cluster.ForwarderParams{
		Directory: dir, Peers: peers, SubmitTags: d.Manager.SubmitTags, Validate: validation.Request, Caller: caller,
		FanOutTimeout: rc.FanOutTimeout, Logger: d.log,
	})}
}

// caller is the principal the auth guard attached to ctx, and whether it
// is the anonymous one (authentication off, no client certificate).
func caller(ctx context.Context) (string, bool) {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return auth.AnonymousName, true
	}
	return p.Name, p.Name == auth.AnonymousName
}

// routingOptions are the forwarder's interceptors, to install after the
// auth guard's: this node accepts a call as it would any client's before
// it asks another node on the caller's behalf.
func (d *Daemon) routingOptions() []grpc.ServerOption {
	if d.routing == nil {
		return nil
	}
	return d.routing.forwarder.ServerOptions()
}

// planOf returns the plan of a task, asking its owner when it is another
// node's (with the caller's credentials in ctx, so the owner's own plan
// allowlist decides what the caller may see).
func (d *Daemon) planOf(ctx context.Context, taskID string) (string, error) {
	get := d.Manager.Get
	if d.routing != nil && d.routing.forwarder.Remote(taskID) {
		get = d.routing.forwarder.GetTask
	}
	t, err := get(ctx, taskID)
	if err != nil {
		return "", err
	}
	return auth.PlanOfTask(t.GetTask()), nil
}

// handOff, on a drain with --cluster-handoff, submits the queued tasks
// another live node can run to that node and ends them here (see
// cluster.HandOff), bounded by the shutdown grace. Admission stops first,
// so none starts while it is handed off.
func (d *Daemon) handOff(ctx context.Context) {
	if d.routing == nil || !d.cfg.Routing.Handoff {
		return
	}
	d.Manager.StopAdmitting()
	res, err := cluster.HandOff(ctx, cluster.HandoffParams{
		Directory: d.cluster.Membership, Peers: d.routing.peers, Token: d.cfg.Routing.Token, Logger: d.log,
		Queued: d.queuedTasks, Request: d.Manager.ResubmitRequest,
		End: func(ctx context.Context, id, reason string) error {
			_, err := d.Manager.Cancel(ctx, id, reason)
			return err
		},
	})
	if err != nil {
		d.log.Error("cluster handoff", "err", err)
	}
	d.log.Info("cluster handoff done", "moved", res.Moved, "stayed", res.Stayed)
}

// queuedTasks lists this node's queued tasks, oldest first.
func (d *Daemon) queuedTasks(ctx context.Context) ([]*aurav1.Task, error) {
	var out []*aurav1.Task
	req := &aurav1.ListTasksRequest{Status: aurav1.TaskStatus_TASK_STATUS_QUEUED, PageSize: 1000}
	for {
		resp, err := d.Manager.List(ctx, req)
		if err != nil {
			return nil, err
		}
		out = append(out, resp.GetTasks()...)
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	slices.Reverse(out)
	return out, nil
}
