package execmgr

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aura-dev/aura/internal/resources"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

func TestSetResourcesAddsAndRemovesInstances(t *testing.T) {
	m, fc, _ := newFarm(t) // instances a, b, c
	m.SetResources(&resources.Declarations{Pools: []resources.Pool{{Name: "device", Instances: []string{"a", "b", "d"}, Limit: 1}}})

	task := runToEnd(t, m, fc, &aurav1.SubmitRequest{Task: "farm/pinned", Inputs: mustStruct(t, map[string]any{"serial": "d"})})
	if task.Resources["device"] != "d" {
		t.Fatalf("resources %v, want the newly declared device d", task.Resources)
	}
	_, err := m.Submit(context.Background(), &aurav1.SubmitRequest{Task: "farm/pinned", Inputs: mustStruct(t, map[string]any{"serial": "c"})})
	var inv *InvalidError
	if !errors.As(err, &inv) || inv.Field != "resource_tags" || !strings.Contains(err.Error(), `no instance "c"`) {
		t.Fatalf("a task naming the removed instance c: %v, want an InvalidError naming it", err)
	}
	for range 3 {
		if dev := runToEnd(t, m, fc, &aurav1.SubmitRequest{Task: "farm/any"}).Resources["device"]; dev == "c" {
			t.Fatal("a task asking for any device got the removed instance c")
		}
	}
	if p, _ := m.Declarations().Pool("device"); strings.Join(p.Instances, ",") != "a,b,d" {
		t.Fatalf("Declarations lists %v, want the reloaded a,b,d", p.Instances)
	}
}
