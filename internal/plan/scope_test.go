package plan

import (
	"fmt"
	"slices"
	"strings"
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

// With the daemon's pools known, a scope naming no declared pool is a
// problem at the scope line.
func TestScopeMustNameADeclaredPool(t *testing.T) {
	valid := func(tag string) error {
		if tag == "device:*" || !strings.HasSuffix(tag, ":*") {
			return nil
		}
		return fmt.Errorf("no pool %q is declared", strings.TrimSuffix(tag, ":*"))
	}
	problems := CheckWith("testdata/broken/scope", Options{ResourceTagValid: valid})
	for _, p := range problems {
		if strings.HasSuffix(p.File, "states_map.yaml") && strings.Contains(p.File, "devices") {
			t.Fatalf("declared pool refused: %v", p)
		}
	}
	problems = CheckWith("testdata/broken/scope", Options{ResourceTagValid: func(tag string) error {
		if strings.HasPrefix(tag, "device:") {
			return fmt.Errorf("no pool %q is declared", "device")
		}
		return nil
	}})
	found := false
	for _, p := range problems {
		if strings.HasSuffix(p.File, "devices/states_map.yaml") && p.Line == 1 && strings.Contains(p.Msg, `scope "device"`) && strings.Contains(p.Msg, "no pool") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no problem at the scope line of an undeclared pool: %v", problems)
	}
}
