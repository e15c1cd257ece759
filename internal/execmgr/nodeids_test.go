package execmgr

import (
	"context"
	"testing"

	"github.com/aura-dev/aura/internal/cluster"
	"github.com/aura-dev/aura/internal/store"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// A node of a cluster names itself in its tasks' ids, and finds its tasks
// by those ids, across a restart on the same store.
func TestTaskIDsNameTheNodeInACluster(t *testing.T) {
	st := store.NewMemory(store.Options{Logger: quiet})
	t.Cleanup(func() { st.Close() })
	m, fc := newManagerOn(t, st, 2, true, func(c *Config) { c.Node = "farm-2" })
	ctx := context.Background()
	resp, err := m.Submit(ctx, &aurav1.SubmitRequest{Task: "bench/noop"})
	if err != nil {
		t.Fatal(err)
	}
	if node, ok := cluster.NodeOf(resp.TaskId); !ok || node != "farm-2" {
		t.Fatalf("task id %q names node %q, %v; want farm-2", resp.TaskId, node, ok)
	}
	<-fc.watch(resp.TaskId)
	task, err := m.Get(ctx, resp.TaskId)
	if err != nil || task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED || task.Id != resp.TaskId {
		t.Fatalf("Get(%s) = %v, %v", resp.TaskId, task, err)
	}
	// Outside a cluster, ids name no node.
	plain, _ := newManager(t, 1)
	resp, err = plain.Submit(ctx, &aurav1.SubmitRequest{Task: "bench/noop"})
	if err != nil {
		t.Fatal(err)
	}
	if node, ok := cluster.NodeOf(resp.TaskId); ok {
		t.Fatalf("a daemon outside a cluster made id %q naming node %q", resp.TaskId, node)
	}
}

func TestABadNodeNameIsRefused(t *testing.T) {
	st := store.NewMemory(store.Options{Logger: quiet})
	t.Cleanup(func() { st.Close() })
	m, _ := newManager(t, 1)
	cfg := Config{Plans: m.Plans(), Store: st, Hooks: m.hooks, Engine: m.engine, Node: "Farm_2"}
	if _, err := New(cfg); err == nil {
		t.Fatal("a manager with node name Farm_2 was built")
	}
}
