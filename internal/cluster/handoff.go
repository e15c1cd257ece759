package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"google.golang.org/grpc/metadata"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// HandoffParams are what a draining node's handoff needs.
type HandoffParams struct {
	Directory Directory
	Peers     *Peers
	// Token is this node's own bearer token: the handoff submits in the
	// node's name (the callers' tokens were never kept). Empty sends
	// none: the node is then known by its client certificate, or not at
	// all where the peers ask for no credentials.
	Token string
	// Queued returns this node's queued tasks, oldest first, once nothing
	// more is admitted here.
	Queued func(ctx context.Context) ([]*aurav1.Task, error)
	// Request is the request that submits a recorded task again; false for
	// one that cannot be (a state transition's own task, say).
	Request func(*aurav1.Task) (*aurav1.SubmitRequest, bool)
	// End ends a queued task here, the reason naming where it went.
	End    func(ctx context.Context, id, reason string) error
	Logger *slog.Logger
}

// HandoffResult counts what a handoff did.
type HandoffResult struct{ Moved, Stayed int }

// HandOff submits each of this node's queued tasks that another live node
// can run to that node (Place over the other nodes, each placement
// counted in that node's queue so that a batch spreads), then ends it here
// CANCELLED, its reason naming the node and the new task id. A task that
// names an instance only this node has, or that no other node can take,
// stays queued here for the next start. The submission comes first: a
// node that dies between the two leaves the task on both (its idempotency
// key, if it has one, is the same on the new node), never on neither.
func HandOff(ctx context.Context, p HandoffParams) (HandoffResult, error) {
	var res HandoffResult
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	self := p.Directory.Self()
	nodes := p.Directory.Nodes()
	others := slices.ContainsFunc(nodes, func(n Node) bool { return n.Name != self })
	tasks, err := p.Queued(ctx)
	if err != nil {
		return res, fmt.Errorf("listing the queued tasks to hand off: %w", err)
	}
	if !others {
		res.Stayed = len(tasks)
		if len(tasks) > 0 {
			p.Logger.Warn("cluster handoff: no other live node; queued tasks stay here for the next start", "queued", len(tasks))
		}
		return res, nil
	}
	md := metadata.MD{ForwardedByKey: []string{self}}
	if p.Token != "" {
		md.Set("authorization", "Bearer "+p.Token)
	}
	octx := metadata.NewOutgoingContext(ctx, md)
	for _, t := range tasks {
		if ctx.Err() != nil {
			res.Stayed += len(tasks) - res.Moved - res.Stayed
			break
		}
		node, newID, err := handOne(octx, p, self, nodes, t)
		if err != nil {
			res.Stayed++
			p.Logger.Info("cluster handoff: task stays queued here", "task_id", t.GetId(), "task", t.GetTask(), "reason", err)
			continue
		}
		reason := fmt.Sprintf("handed off to node %s as task %s (node %s was draining)", node, newID, self)
		if err := p.End(ctx, t.GetId(), reason); err != nil {
			// It is queued on both nodes now; the log says which.
			p.Logger.Error("cluster handoff: submitted elsewhere but not ended here", "task_id", t.GetId(), "new_task_id", newID, "err", err)
			res.Stayed++
			continue
		}
		res.Moved++
		p.Logger.Info("cluster handoff: task moved", "task_id", t.GetId(), "task", t.GetTask(), "node", node, "new_task_id", newID)
		for i := range nodes {
			if nodes[i].Name == node {
				nodes[i].Queued++
			}
		}
	}
	return res, nil
}

// errOnlyHere is a task that cannot be submitted elsewhere.
var errOnlyHere = errors.New("it cannot be submitted by a client (a state transition's or check's task, or a task the plans no longer have)")

func handOne(ctx context.Context, p HandoffParams, self string, nodes []Node, t *aurav1.Task) (node, newID string, err error) {
	req, ok := p.Request(t)
	if !ok {
		return "", "", errOnlyHere
	}
	pl, err := PlaceElsewhere(self, nodes, t.GetResourceTags())
	if err != nil {
		return "", "", err // an instance only this node has, typically
	}
	cc, err := p.Peers.Conn(pl.Node)
	if err != nil {
		return "", "", err
	}
	resp, err := aurav1.NewExecutionServiceClient(cc).Submit(ctx, req)
	if err != nil {
		return "", "", fmt.Errorf("node %s refused it: %w", pl.Node, err)
	}
	return pl.Node, resp.GetTaskId(), nil
}
