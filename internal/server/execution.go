package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sort"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/aura-dev/aura/internal/auth"
	"github.com/aura-dev/aura/internal/execmgr"
	"github.com/aura-dev/aura/internal/hooks"
	"github.com/aura-dev/aura/internal/plan"
	"github.com/aura-dev/aura/internal/resources"
	"github.com/aura-dev/aura/internal/store"
	"github.com/aura-dev/aura/internal/workers"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// Deps is what the services need from the daemon.
type Deps struct {
	Manager *execmgr.Manager
	Hub     *hooks.Hub
	Hooks   *hooks.Registry
	// Reload loads the plan directory again; nil disables ReloadPlans.
	Reload func(ctx context.Context) (*plan.Set, error)
	// Pools reports the worker pools; optional.
	Pools func() []workers.PoolStats
	// Schedules serves the ScheduleService; nil leaves it unregistered.
	Schedules Schedules
	// Nodes serves the ClusterService; nil leaves it unregistered.
	Nodes Nodes
	// Interrupts serves the InterruptService; nil leaves it unregistered.
	Interrupts Interrupts
	Logger     *slog.Logger
	// Cluster is the cluster this node is in; nil outside one.
	Cluster *Cluster
}

// executionService implements aura.v1.ExecutionService.
type executionService struct {
	aurav1.UnimplementedExecutionServiceServer
	d Deps
}

func (s *executionService) Submit(ctx context.Context, req *aurav1.SubmitRequest) (*aurav1.SubmitResponse, error) {
	resp, err := s.d.Manager.SubmitAs(ctx, principalName(ctx), req)
	return resp, toStatus(s.d.Logger, err)
}

// principalName is who the authentication interceptor says is calling:
// the task's owner for idempotency keys, queue bounds and fair shares.
func principalName(ctx context.Context) string {
	if p, ok := auth.FromContext(ctx); ok {
		return p.Name
	}
	return ""
}

// streamWindow bounds the submissions of one SubmitStream in flight at
// once: they are recorded concurrently (so they share group commits) and
// answered in order.
const streamWindow = 1024

// SubmitStream answers each request as Submit would, in order, through an
// execmgr.Sequence (which orders and deduplicates them).
func (s *executionService) SubmitStream(stream aurav1.ExecutionService_SubmitStreamServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	seq := s.d.Manager.NewSequence(principalName(ctx), streamWindow)
	recvErr := make(chan error, 1)
	go func() {
		defer seq.Close()
		for {
			req, err := stream.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					recvErr <- err
				}
				return
			}
			if seq.Add(ctx, req) != nil {
				return // the stream is over
			}
		}
	}()
	// Next watches the context as well as the sequence: a stream ended from
	// this side (revoked credentials, shutdown) returns at once, even while
	// the receiver is blocked waiting for the client's next request.
	for {
		sub, err := seq.Next(ctx)
		if errors.Is(err, io.EOF) {
			select {
			case err := <-recvErr:
				return err
			default:
				return nil
			}
		}
		if err != nil {
			return toStatus(s.d.Logger, err)
		}
		resp := sub.Response
		if sub.Err != nil {
			st := status.Convert(toStatus(s.d.Logger, sub.Err))
			if st.Code() == codes.Canceled || st.Code() == codes.Unavailable {
				return st.Err()
			}
			resp = &aurav1.SubmitResponse{Error: &aurav1.SubmitError{Code: int32(st.Code()), Message: st.Message()}}
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

func (s *executionService) Stream(req *aurav1.StreamRequest, stream aurav1.ExecutionService_StreamServer) error {
	ctx := stream.Context()
	f := hooks.Filter{TaskID: req.GetTaskId(), Match: func(ev store.Event) bool { return !ev.Hook }, Who: follower(ctx, "stream", "")}
	var after *uint64
	if id := req.GetTaskId(); id != "" {
		if _, err := s.d.Manager.Get(ctx, id); err != nil {
			return toStatus(s.d.Logger, err)
		}
		zero := uint64(0)
		after = &zero
	}
	err := s.d.Hub.Follow(ctx, after, f, func(ev store.Event) (bool, error) {
		if err := stream.SendMsg(withSequence(ev.Data, ev.Seq)); err != nil {
			return false, err
		}
		return req.GetTaskId() != "" && ev.Type == "task.finished", nil
	})
	return toStatus(s.d.Logger, err)
}

func (s *executionService) GetTask(ctx context.Context, req *aurav1.GetTaskRequest) (*aurav1.Task, error) {
	if req.GetTaskId() == "" {
		return nil, invalid("task_id", "required")
	}
	t, err := s.d.Manager.Get(ctx, req.GetTaskId())
	return t, toStatus(s.d.Logger, err)
}

func (s *executionService) ListTasks(ctx context.Context, req *aurav1.ListTasksRequest) (*aurav1.ListTasksResponse, error) {
	resp, err := s.d.Manager.List(ctx, req)
	return resp, toStatus(s.d.Logger, err)
}

func (s *executionService) CancelTask(ctx context.Context, req *aurav1.CancelTaskRequest) (*aurav1.CancelTaskResponse, error) {
	if req.GetTaskId() == "" {
		return nil, invalid("task_id", "required")
	}
	t, err := s.d.Manager.Cancel(ctx, req.GetTaskId(), req.GetReason())
	if err != nil {
		return nil, toStatus(s.d.Logger, err)
	}
	return &aurav1.CancelTaskResponse{Task: t}, nil
}

func (s *executionService) ListPlans(ctx context.Context, _ *aurav1.ListPlansRequest) (*aurav1.ListPlansResponse, error) {
	return &aurav1.ListPlansResponse{Plans: PlansProto(s.d.Manager.Plans())}, nil
}

func (s *executionService) ReloadPlans(ctx context.Context, _ *aurav1.ReloadPlansRequest) (*aurav1.ReloadPlansResponse, error) {
	if s.d.Reload == nil {
		return nil, status.Error(codes.Unimplemented, "plan reload is not enabled")
	}
	set, err := s.d.Reload(ctx)
	if err != nil {
		var le *plan.LoadError
		if errors.As(err, &le) {
			return nil, status.Error(codes.FailedPrecondition, "plans not reloaded:\n"+le.Error())
		}
		var re *resources.ReloadError
		if errors.As(err, &re) {
			return nil, status.Error(codes.FailedPrecondition, "resources and plans not reloaded (fix the resources file and send SIGHUP or ReloadPlans again):\n"+re.Error())
		}
		return nil, toStatus(s.d.Logger, err)
	}
	return &aurav1.ReloadPlansResponse{Plans: PlansProto(set)}, nil
}

func (s *executionService) GetStats(ctx context.Context, _ *aurav1.GetStatsRequest) (*aurav1.Stats, error) {
	adm, counts := s.d.Manager.Stats()
	out := &aurav1.Stats{
		Global: &aurav1.ResourceStats{
			Key: "global", Limit: int32(adm.GlobalLimit), InUse: int32(adm.InUse), Waiting: int32(adm.Waiting),
		},
		CountsByStatus:  counts,
		HookSubscribers: int32(s.d.Hub.Followers()),
		Interceptors:    int32(s.d.Hooks.Interceptors()),
		LastSequence:    s.d.Hub.Last(),
	}
	for _, r := range adm.Resources {
		out.Resources = append(out.Resources, &aurav1.ResourceStats{
			Key: r.Key, Limit: int32(r.Limit), InUse: int32(r.InUse), Waiting: int32(r.Waiting),
		})
	}
	out.Principals, out.MaxQueued = principalsProto(ctx, s.d.Manager, adm.GlobalLimit)
	if s.d.Pools != nil {
		for _, p := range s.d.Pools() {
			out.Pools = append(out.Pools, &aurav1.PoolStats{
				Name: p.Name, Size: int32(p.Size), Live: int32(p.Live), Busy: int32(p.Busy), Queued: int32(p.Queued),
				Restarts: p.Restarts, Crashes: p.Crashes, Jobs: p.Jobs,
			})
		}
	}
	return out, nil
}

// principalsProto is each principal's part of admission as the caller may
// see it: every principal for one holding the admin role (or with no
// authentication in front of the server), else only its own entry, since
// the other names would tell it which tokens exist.
func principalsProto(ctx context.Context, m *execmgr.Manager, globalLimit int) ([]*aurav1.PrincipalStats, int32) {
	all, maxQueued := m.Principals()
	caller, authed := auth.FromContext(ctx)
	seeAll := !authed || caller.Has(auth.RoleAdmin)
	out := make([]*aurav1.PrincipalStats, 0, len(all))
	for _, p := range all {
		if !seeAll && p.Principal != caller.Name {
			continue
		}
		out = append(out, &aurav1.PrincipalStats{
			Principal: p.Principal, InUse: int32(p.InUse), Waiting: int32(p.Waiting), MaxWaiting: int32(p.MaxWaiting),
			// Shared among all of them, whoever may see their names.
			FairShare: float64(globalLimit) / float64(len(all)),
		})
	}
	return out, int32(maxQueued)
}

// stepsProto describes a task's steps for ListPlans.
func stepsProto(t *plan.Task) []*aurav1.StepInfo {
	out := make([]*aurav1.StepInfo, 0, len(t.Steps))
	for _, s := range t.Steps {
		si := &aurav1.StepInfo{
			Id: s.ID, Action: s.Action, Conditional: s.When != nil, MaxAttempts: int32(s.Retry.MaxAttempts),
			Loop: s.Loop != nil, Lane: s.Lane, ContinueOnFailure: s.ContinueOnFailure,
		}
		if s.Timeout > 0 {
			si.Timeout = durationpb.New(s.Timeout)
		}
		for _, d := range s.Depends.On {
			dep := d.ID
			if d.On != plan.OnSuccess {
				dep += ":" + d.On.String()
			}
			si.DependsOn = append(si.DependsOn, dep)
		}
		if len(si.DependsOn) > 0 {
			si.DependsMode = "all"
			if s.Depends.Mode == plan.DependAny {
				si.DependsMode = "any"
			}
		}
		out = append(out, si)
	}
	return out
}

// PlansProto describes a plan set for ListPlans.
func PlansProto(set *plan.Set) []*aurav1.Plan {
	var out []*aurav1.Plan
	for _, p := range set.Plans() {
		pp := &aurav1.Plan{
			Name: p.Name, Title: p.Title, Description: p.Description,
			Available: p.Available(), Resources: map[string]int32{},
		}
		for k, v := range p.Resources {
			pp.Resources[k] = int32(v)
		}
		for _, prob := range p.Problems {
			pp.Errors = append(pp.Errors, prob.String())
		}
		names := make([]string, 0, len(p.Tasks))
		for n := range p.Tasks {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			t := p.Tasks[n]
			ti := &aurav1.TaskInfo{
				Id: t.ID, Title: t.Meta.Title, Description: t.Meta.Description,
				Meta: &aurav1.TaskMeta{
					RequiresInitialState: t.Meta.RequiresInitialState,
					ExecutionMode:        execmgr.ExecutionMode(t.Meta.ExecutionMode),
					Timeout:              durationpb.New(t.Meta.Timeout),
					ResourceTags:         t.Meta.ResourceTags,
					Priority:             t.Meta.Priority,
					OnInterrupt:          t.Meta.OnInterrupt,
				},
			}
			ti.Steps, ti.Sequential = stepsProto(t), t.Sequential
			for _, in := range t.Inputs {
				spec := &aurav1.InputSpec{Name: in.Name, Type: in.Type, Required: in.Required, Description: in.Description}
				if in.HasDefault {
					if v, err := structpb.NewValue(in.Default); err == nil {
						spec.Default = v
					}
				}
				ti.Inputs = append(ti.Inputs, spec)
			}
			pp.Tasks = append(pp.Tasks, ti)
		}
		if sm := p.StateMap; sm != nil {
			pp.StateMap = &aurav1.StateMap{Scope: sm.Scope}
			states := make([]string, 0, len(sm.States))
			for n := range sm.States {
				states = append(states, n)
			}
			sort.Strings(states)
			for _, n := range states {
				st := sm.States[n]
				pp.StateMap.States = append(pp.StateMap.States, &aurav1.State{
					Name: st.Name, Check: p.Name + "/" + st.Check, Priority: int32(st.Priority), Sequential: st.Sequential,
				})
			}
			for _, tr := range sm.Transitions {
				pp.StateMap.Transitions = append(pp.StateMap.Transitions, &aurav1.Transition{
					From: tr.From, To: tr.To, Task: p.Name + "/" + tr.Task, Cost: tr.Cost,
				})
			}
		}
		out = append(out, pp)
	}
	return out
}
