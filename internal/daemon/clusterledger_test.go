package daemon

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/aura-dev/aura/internal/resources"
)

// A resource declared scope: cluster on a daemon that is no node of a
// cluster stops it at start, saying what to do.
func TestClusterScopeNeedsACluster(t *testing.T) {
	decl := exampleResources(t)
	decl.Counters["account:main"] = 1
	decl.Cluster = map[string]bool{"account:main": true}
	_, err := New(context.Background(), Config{
		PlansDir: "../../examples/plans", DataDir: ":memory:", CPUWorkers: -1, Resources: decl,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err == nil || !strings.Contains(err.Error(), `resources ["account:main"] are declared scope: cluster`) || !strings.Contains(err.Error(), "--cluster-etcd") {
		t.Fatalf("New with a cluster-scope resource and no cluster: %v", err)
	}
}

func TestAReloadMayNotChangeAScope(t *testing.T) {
	node := &resources.Declarations{Counters: map[string]int{"account:main": 1}}
	shared := &resources.Declarations{Counters: map[string]int{"account:main": 1}, Cluster: map[string]bool{"account:main": true}}
	if err := checkScopes(node, shared); err == nil || !strings.Contains(err.Error(), "changing a resource's scope needs a restart") {
		t.Fatalf("node -> cluster: %v", err)
	}
	if err := checkScopes(shared, node); err == nil {
		t.Fatal("cluster -> node was accepted")
	}
	if err := checkScopes(shared, shared); err != nil {
		t.Fatalf("no change: %v", err)
	}
}
