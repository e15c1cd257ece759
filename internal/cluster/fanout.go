package cluster

import (
	"context"
	"errors"
	"sort"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// ListTasks pages are at most this long, as a node's own are.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

// answer is one node's reply to a fan-out.
type answer[T any] struct {
	node string
	resp T
	err  error
}

// fanOut asks every node in names at once, itself through local and the
// others through call with the caller's credentials, each within the
// fan-out bound, and returns the answers in the order of names. A caller
// whose credentials cannot be forwarded ends the whole call (see outgoing).
func fanOut[T any](ctx context.Context, f *Forwarder, names []string, local func(context.Context) (T, error), call func(ctx context.Context, node string, c aurav1.ExecutionServiceClient) (T, error)) ([]answer[T], error) {
	out := make([]answer[T], len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		out[i].node = name
		if name == f.dir.Self() {
			wg.Go(func() { out[i].resp, out[i].err = local(ctx) })
			continue
		}
		octx, err := f.outgoing(ctx, name)
		if err != nil {
			return nil, err
		}
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(octx, f.timeout)
			defer cancel()
			cc, err := f.peers.Conn(name)
			if err != nil {
				out[i].err = err
				return
			}
			out[i].resp, out[i].err = call(cctx, name, aurav1.NewExecutionServiceClient(cc))
		})
	}
	wg.Wait()
	return out, nil
}

// refusal is the error a fan-out returns whole rather than as a node left
// out: the caller's request or rights are at fault (every node would say
// the same), not the node.
func refusal(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.Unauthenticated, codes.PermissionDenied, codes.ResourceExhausted:
		return true
	}
	return false
}

// listTasks answers ListTasks for the cluster: each live node (and each
// node the page token still has a cursor for) is asked for a page after
// its cursor, and the pages are merged newest first (MergePages).
func (f *Forwarder) listTasks(ctx context.Context, req *aurav1.ListTasksRequest, handler grpc.UnaryHandler) (*aurav1.ListTasksResponse, error) {
	// Checked here, as the validation interceptor runs after this one.
	if f.validate != nil {
		if err := f.validate(req); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
	}
	from, err := DecodeCursors(req.GetPageToken())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	size := int(req.GetPageSize())
	switch {
	case size <= 0:
		size = defaultPageSize
	case size > maxPageSize:
		size = maxPageSize
	}
	live := map[string]bool{}
	var names []string
	for _, n := range f.dir.Nodes() {
		live[n.Name] = true
		if !from.Done(n.Name) {
			names = append(names, n.Name)
		}
	}
	if !live[f.dir.Self()] && !from.Done(f.dir.Self()) {
		names = append(names, f.dir.Self()) // its session is down; its store is not
		live[f.dir.Self()] = true
	}
	pageOf := func(node string) *aurav1.ListTasksRequest {
		r := proto.CloneOf(req)
		r.PageToken, r.PageSize, r.PageTokens = from[node], int32(size), true
		return r
	}
	answers, err := fanOut(ctx, f, names,
		func(ctx context.Context) (*aurav1.ListTasksResponse, error) {
			resp, err := handler(ctx, pageOf(f.dir.Self()))
			if err != nil {
				return nil, err
			}
			return resp.(*aurav1.ListTasksResponse), nil
		},
		func(ctx context.Context, node string, c aurav1.ExecutionServiceClient) (*aurav1.ListTasksResponse, error) {
			return c.ListTasks(ctx, pageOf(node))
		})
	if err != nil {
		return nil, err
	}
	var (
		pages       []NodePage
		unreachable []string
	)
	for _, a := range answers {
		if a.err != nil && refusal(a.err) {
			return nil, f.peerError(a.node, a.err)
		}
		p := NodePage{Node: a.node, Err: a.err}
		if a.err == nil {
			p.Tasks, p.Tokens, p.Next = a.resp.GetTasks(), a.resp.GetPageTokens(), a.resp.GetNextPageToken()
			if len(p.Tokens) != len(p.Tasks) {
				p.Err = errors.New("answered without page tokens")
			}
		}
		if p.Err != nil {
			f.log.Warn("cluster ListTasks: a node did not answer", "node", a.node, "err", p.Err)
			unreachable = append(unreachable, a.node)
		}
		pages = append(pages, p)
	}
	// Nodes the token still has a cursor for but that are gone: named, and
	// kept in the token for when they are back.
	for node, c := range from {
		if !live[node] && c != cursorDone {
			unreachable = append(unreachable, node)
		}
	}
	sort.Strings(unreachable)
	tasks, next := MergePages(pages, from, size)
	return &aurav1.ListTasksResponse{Tasks: tasks, NextPageToken: EncodeCursors(next), UnreachableNodes: unreachable}, nil
}

// getStats answers GetStats for the cluster: every live node's figures,
// summed (limits, in use, waiting, counts) or merged by key (resources,
// pools, principals), each node's own in nodes. last_sequence is this
// node's: hook sequences are per node.
func (f *Forwarder) getStats(ctx context.Context, req *aurav1.GetStatsRequest, handler grpc.UnaryHandler) (*aurav1.Stats, error) {
	var names []string
	for _, n := range f.dir.Nodes() {
		names = append(names, n.Name)
	}
	if len(names) == 0 {
		names = []string{f.dir.Self()}
	}
	answers, err := fanOut(ctx, f, names,
		func(ctx context.Context) (*aurav1.Stats, error) {
			resp, err := handler(ctx, req)
			if err != nil {
				return nil, err
			}
			return resp.(*aurav1.Stats), nil
		},
		func(ctx context.Context, _ string, c aurav1.ExecutionServiceClient) (*aurav1.Stats, error) {
			return c.GetStats(ctx, req)
		})
	if err != nil {
		return nil, err
	}
	out := &aurav1.Stats{Global: &aurav1.ResourceStats{Key: "global"}, CountsByStatus: map[string]int64{}}
	resources := map[string]*aurav1.ResourceStats{}
	pools := map[string]*aurav1.PoolStats{}
	principals := map[string]*aurav1.PrincipalStats{}
	for _, a := range answers {
		if a.err != nil {
			if refusal(a.err) {
				return nil, f.peerError(a.node, a.err)
			}
			f.log.Warn("cluster GetStats: a node did not answer", "node", a.node, "err", a.err)
			out.UnreachableNodes = append(out.UnreachableNodes, a.node)
			continue
		}
		s := a.resp
		out.Nodes = append(out.Nodes, &aurav1.NodeStats{Node: a.node, Stats: s})
		addResource(out.Global, s.GetGlobal())
		for _, r := range s.GetResources() {
			if resources[r.GetKey()] == nil {
				resources[r.GetKey()] = &aurav1.ResourceStats{Key: r.GetKey()}
			}
			addResource(resources[r.GetKey()], r)
		}
		for _, p := range s.GetPools() {
			q := pools[p.GetName()]
			if q == nil {
				q = &aurav1.PoolStats{Name: p.GetName()}
				pools[p.GetName()] = q
			}
			q.Size += p.GetSize()
			q.Live += p.GetLive()
			q.Busy += p.GetBusy()
			q.Queued += p.GetQueued()
			q.Restarts += p.GetRestarts()
			q.Crashes += p.GetCrashes()
			q.Jobs += p.GetJobs()
		}
		for k, v := range s.GetCountsByStatus() {
			out.CountsByStatus[k] += v
		}
		for _, p := range s.GetPrincipals() {
			q := principals[p.GetPrincipal()]
			if q == nil {
				q = &aurav1.PrincipalStats{Principal: p.GetPrincipal()}
				principals[p.GetPrincipal()] = q
			}
			q.InUse += p.GetInUse()
			q.Waiting += p.GetWaiting()
			q.MaxWaiting += p.GetMaxWaiting()
			q.FairShare += p.GetFairShare()
		}
		out.HookSubscribers += s.GetHookSubscribers()
		out.Interceptors += s.GetInterceptors()
		out.MaxQueued += s.GetMaxQueued()
		if a.node == f.dir.Self() {
			out.LastSequence = s.GetLastSequence()
		}
	}
	for _, k := range sortedKeys(resources) {
		out.Resources = append(out.Resources, resources[k])
	}
	for _, k := range sortedKeys(pools) {
		out.Pools = append(out.Pools, pools[k])
	}
	for _, k := range sortedKeys(principals) {
		out.Principals = append(out.Principals, principals[k])
	}
	return out, nil
}

func addResource(sum, r *aurav1.ResourceStats) {
	sum.Limit += r.GetLimit()
	sum.InUse += r.GetInUse()
	sum.Waiting += r.GetWaiting()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
