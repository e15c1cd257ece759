package ui

import (
	"context"
	"sort"
	"strings"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// Resources lists what tasks wait for and hold, for the Resources page.
type Resources interface {
	Resources(ctx context.Context) (*ResourceList, error)
}

// ResourceList is the Resources page's data.
type ResourceList struct {
	Global    Resource
	Resources []Resource // counting resources and pool instances, by key
	Workers   []*aurav1.PoolStats
}

// Resource is one counting resource or pool instance.
type Resource struct {
	Key  string
	Pool string // the pool an instance belongs to; "" for a counting resource
	// State is the last known state of an instance per plan, when known.
	State                 string
	Limit, InUse, Waiting int
	Holders               []Holder // tasks holding a slot, when known
	Waiters               []Holder // tasks waiting for one, when known
}

// Holder is a task holding or waiting for a resource.
type Holder struct {
	TaskID, Task string
}

// APIResources lists resources from ListResources (every counting resource
// and pool instance, its holders, first waiters and last known states) and
// GetStats (the global limit, the worker pools); the global limit's holders
// and the holders' task names come from the running tasks.
type APIResources struct {
	Core Core
}

// holderScan bounds the running tasks read for the global row's holders.
const holderScan = 1000

// Resources implements Resources.
func (ar APIResources) Resources(ctx context.Context) (*ResourceList, error) {
	st, err := ar.Core.GetStats(ctx)
	if err != nil {
		return nil, err
	}
	out := &ResourceList{Workers: st.GetPools()}
	g := st.GetGlobal()
	out.Global = Resource{Key: "global", Limit: int(g.GetLimit()), InUse: int(g.GetInUse()), Waiting: int(g.GetWaiting())}
	names := map[string]string{}
	for _, status := range []aurav1.TaskStatus{aurav1.TaskStatus_TASK_STATUS_RUNNING, aurav1.TaskStatus_TASK_STATUS_PLANNING, aurav1.TaskStatus_TASK_STATUS_PAUSED} {
		resp, err := ar.Core.ListTasks(ctx, &aurav1.ListTasksRequest{Status: status, PageSize: holderScan})
		if err != nil {
			return nil, err
		}
		for _, t := range resp.GetTasks() {
			names[t.GetId()] = t.GetTask()
			out.Global.Holders = append(out.Global.Holders, Holder{TaskID: t.GetId(), Task: t.GetTask()})
		}
	}
	rs, err := ar.Core.ListResources(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range rs {
		res := Resource{Key: r.GetKey(), Pool: r.GetPool(), Limit: int(r.GetLimit()), InUse: int(r.GetInUse()), Waiting: int(r.GetWaiting())}
		for _, id := range r.GetHolders() {
			res.Holders = append(res.Holders, Holder{TaskID: id, Task: names[id]})
		}
		for _, id := range r.GetWaiters() {
			res.Waiters = append(res.Waiters, Holder{TaskID: id})
		}
		var states []string
		for _, is := range r.GetStates() {
			state := is.GetState()
			if state == "" {
				state = "unknown"
			}
			states = append(states, is.GetPlan()+": "+state)
		}
		res.State = strings.Join(states, ", ")
		out.Resources = append(out.Resources, res)
	}
	sort.Slice(out.Resources, func(i, j int) bool { return out.Resources[i].Key < out.Resources[j].Key })
	return out, nil
}
