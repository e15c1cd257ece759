package plan

import (
	"slices"
	"testing"
)

func TestScopeNamesThePoolWhoseInstancesHaveState(t *testing.T) {
	set, err := Load("testdata/broken/scope", Options{SkipBroken: true})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := set.Plan("devices")
	if sm := p.StateMap; !sm.PerInstance() || sm.Scope != "device" || sm.ScopeLine != 1 {
		t.Fatalf("scope %q (line %d), want device on line 1", sm.Scope, sm.ScopeLine)
	}
	good, _ := Load("testdata/good", Options{SkipBroken: true})
	for _, p := range good.Plans() {
		if p.StateMap.PerInstance() {
			t.Errorf("plan %s without scope: has per-instance state %q", p.Name, p.StateMap.Scope)
		}
	}
}

func TestInstanceTags(t *testing.T) {
	tags := []string{"device:*", "device", "device:3", "device:R58M:1", "device:{{ inputs.serial }}", "devices:*", "api:openai:5", " device:x "}
	want := []string{"device:*", "device:R58M:1", "device:{{ inputs.serial }}", " device:x "}
	if got := InstanceTags("device", tags); !slices.Equal(got, want) {
		t.Fatalf("InstanceTags = %q, want %q", got, want)
	}
}
