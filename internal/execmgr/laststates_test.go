package execmgr

import (
	"testing"
	"time"

	"github.com/aura-dev/aura/internal/plan"
)

// The preference ranks an instance already in the target first, then by
// the cheapest path from its last known state, and unknown states last.
func TestLastStatesRankByPathCost(t *testing.T) {
	sm := &plan.StateMap{Scope: "device", States: map[string]*plan.State{
		"locked": {Name: "locked"}, "unlocked": {Name: "unlocked"}, "app_open": {Name: "app_open"}, "broken": {Name: "broken"}}}
	sm.Transitions = []*plan.Transition{
		{From: "locked", To: "unlocked", Task: "unlock", Cost: 1},
		{From: "unlocked", To: "app_open", Task: "open_app", Cost: 1.5},
		{From: "app_open", To: "locked", Task: "lock", Cost: 1},
	}
	l := newLastStates(nil, quiet, time.Now)
	for inst, st := range map[string]string{"a": "app_open", "b": "unlocked", "c": "locked", "d": "", "e": "broken"} {
		l.set(stateKey{"phone", "device", inst}, st, "t")
	}
	rank := func(inst string) int { return l.rank("phone", sm, "app_open", "device", inst) }
	if got := []int{rank("a"), rank("b"), rank("c")}; got[0] != 0 || got[1] != 1500 || got[2] != 2500 {
		t.Fatalf("ranks of app_open, unlocked, locked: %v, want [0 1500 2500]", got)
	}
	for _, inst := range []string{"d", "e", "never-seen"} {
		if rank(inst) != unrankable {
			t.Errorf("instance %s (unknown or cut off) ranks %d, want last", inst, rank(inst))
		}
	}
	if l.rank("other", sm, "app_open", "device", "a") != unrankable {
		t.Error("another plan's state of the instance counted")
	}
}
