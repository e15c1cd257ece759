package ui

import (
	"context"
	"sort"

	"github.com/aura-dev/aura/internal/admission"
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
	// State is the last known state of an instance, when known.
	State                 string
	Limit, InUse, Waiting int
	Holders               []Holder // tasks holding a slot, when known
	Waiters               []Holder // tasks waiting for one, when known
}

// Holder is a task holding or waiting for a resource.
type Holder struct {
	TaskID, Task string
}

// StatsResources lists resources from GetStats, and their holders and
// waiters from the running and queued tasks' resource tags (a running
// task holds a slot of each key it names; a queued one waits for them).
type StatsResources struct {
	Core Core
}

// holderScan bounds the queued tasks read for the waiters column.
const holderScan = 1000

// Resources implements Resources.
func (sr StatsResources) Resources(ctx context.Context) (*ResourceList, error) {
	st, err := sr.Core.GetStats(ctx)
	if err != nil {
		return nil, err
	}
	out := &ResourceList{Workers: st.GetPools()}
	g := st.GetGlobal()
	out.Global = Resource{Key: "global", Limit: int(g.GetLimit()), InUse: int(g.GetInUse()), Waiting: int(g.GetWaiting())}
	byKey := map[string]*Resource{}
	for _, r := range st.GetResources() {
		byKey[r.GetKey()] = &Resource{Key: r.GetKey(), Limit: int(r.GetLimit()), InUse: int(r.GetInUse()), Waiting: int(r.GetWaiting())}
	}
	for _, pass := range []struct {
		status  aurav1.TaskStatus
		holding bool
	}{
		{aurav1.TaskStatus_TASK_STATUS_RUNNING, true},
		{aurav1.TaskStatus_TASK_STATUS_PLANNING, true},
		{aurav1.TaskStatus_TASK_STATUS_QUEUED, false},
	} {
		resp, err := sr.Core.ListTasks(ctx, &aurav1.ListTasksRequest{Status: pass.status, PageSize: holderScan})
		if err != nil {
			return nil, err
		}
		for _, t := range resp.GetTasks() {
			h := Holder{TaskID: t.GetId(), Task: t.GetTask()}
			if pass.holding {
				out.Global.Holders = append(out.Global.Holders, h)
			}
			tags, err := admission.ParseTags(t.GetResourceTags())
			if err != nil {
				continue // admission refused these tags at submit; nothing holds them
			}
			for _, tag := range tags {
				r := byKey[tag.Key]
				if r == nil {
					r = &Resource{Key: tag.Key, Limit: tag.Limit}
					byKey[tag.Key] = r
				}
				if pass.holding {
					r.Holders = append(r.Holders, h)
				} else {
					r.Waiters = append(r.Waiters, h)
				}
			}
		}
	}
	for _, r := range byKey {
		out.Resources = append(out.Resources, *r)
	}
	sort.Slice(out.Resources, func(i, j int) bool { return out.Resources[i].Key < out.Resources[j].Key })
	return out, nil
}
