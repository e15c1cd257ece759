package daemon

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/aura-dev/aura/internal/cluster"
	"github.com/aura-dev/aura/internal/cluster/etcdtest"
)

// A daemon in a cluster starts the cluster's parts where the others can
// use them (membership before the manager, leadership once the schedules
// run), publishes its pools and capacity, leads a cluster of one, answers
// ListNodes, and stops every part (the package's goleak check sees no
// goroutine of them left).
func TestADaemonInAClusterStartsAndStopsItsClusterParts(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	d, err := New(context.Background(), Config{
		PlansDir: "../../examples/plans", DataDir: t.TempDir(), CPUWorkers: -1, Resources: exampleResources(t),
		ShutdownGrace: time.Second, Logger: slog.New(slog.DiscardHandler), Version: "test",
		Cluster: &ClusterConfig{Endpoints: etcd.Endpoints(), Node: "n1", Advertise: "127.0.0.1:7070", TTL: 2 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown(context.Background())
	started := d.parts.names()
	want := []string{"actions", "store", "last states", "hub", "pruner", "action set", "io workers", "cluster membership",
		"schedule state", "peer connections", "cluster hooks", "grpc", "tasks", "schedules", "cluster leadership", "interrupts", "store health"}
	if !slices.Equal(started, want) {
		t.Fatalf("started %v; want %v", started, want)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, _ := d.Cluster().Lookup("n1")
		if d.Leadership().IsLeader() && n.Capacity == 32 && len(n.Pools["device"]) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: leader %v, record %+v", d.Leadership().IsLeader(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := nodeList{d}.ListNodes(context.Background())
	if err != nil || !resp.Clustered || resp.Leader != "n1" || len(resp.Nodes) != 1 || !resp.Nodes[0].Leader || resp.Nodes[0].Version != "test" {
		t.Fatalf("ListNodes: %v, %v", resp, err)
	}
	d.Shutdown(context.Background())
	// Leaving says so at once: no record waits for its lease to lapse.
	probe, err := cluster.NewMembership(cluster.MembershipParams{Endpoints: etcd.Endpoints(), Name: "probe", Address: "p:1", TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := probe.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer probe.Shutdown()
	if _, ok := probe.Lookup("n1"); ok {
		t.Fatal("the stopped node is still listed")
	}
}
