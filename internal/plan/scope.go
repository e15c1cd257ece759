package plan

import (
	"fmt"
	"strings"

	"github.com/goccy/go-yaml/ast"
)

// ScopePlan is the default scope of a state map: one state for the plan.
const ScopePlan = "plan"

// PerInstance reports whether the state map's state belongs to each
// instance of a resource pool (scope: <pool>) rather than to the plan.
func (sm *StateMap) PerInstance() bool { return sm != nil && sm.Scope != "" }

// parseScope reads states_map.yaml's scope: "plan" (the default) or the
// name of a pool whose instances each have their own state.
func parseScope(f *yamlFile, sm *StateMap, n ast.Node) {
	s, ok := f.str(n, "scope")
	if !ok {
		return
	}
	sm.ScopeLine, sm.ScopeCol = f.pos(n)
	switch {
	case s == ScopePlan:
	case s == "" || !segmentPattern.MatchString(s):
		f.addAt(n, "scope %q: want %q or the name of a resource pool (letters, digits, _ . -)", s, ScopePlan)
	default:
		sm.Scope = s
	}
}

// checkScopePool reports a scope naming a pool the daemon does not
// declare, asking Options.ResourceTagValid about the tag "<pool>:*" that
// the plan's tasks will need.
func checkScopePool(sm *StateMap, opts Options, problems *[]Problem) {
	if !sm.PerInstance() || opts.ResourceTagValid == nil {
		return
	}
	if err := opts.ResourceTagValid(sm.Scope + ":*"); err != nil {
		*problems = append(*problems, Problem{File: sm.File, Line: sm.ScopeLine, Col: sm.ScopeCol,
			Msg: fmt.Sprintf("scope %q: the state is kept per instance of a pool, but %v", sm.Scope, err)})
	}
}

// InstanceTags returns the tags of tags that ask for an instance of pool:
// pool:* (any instance) or pool:<instance>, written literally or as a
// template. pool:<n> with an integer n is a counting tag (n is its limit),
// not an instance.
func InstanceTags(pool string, tags []string) []string {
	var out []string
	for _, t := range tags {
		rest, ok := strings.CutPrefix(strings.TrimSpace(t), pool+":")
		if !ok || rest == "" || isDigits(rest) {
			continue
		}
		out = append(out, t)
	}
	return out
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// checkScopedTask applies the rule of a per-instance state map: a task that
// requires one of its states must hold exactly one instance of the pool,
// because planning reads and changes that instance's state.
func checkScopedTask(p *Plan, t *Task) *Problem {
	sm := p.StateMap
	if !sm.PerInstance() || t.Meta.RequiresInitialState == "" {
		return nil
	}
	got := InstanceTags(sm.Scope, t.Meta.ResourceTags)
	if len(got) == 1 {
		return nil
	}
	have := "has none"
	if len(got) > 1 {
		have = fmt.Sprintf("has %d (%s)", len(got), strings.Join(got, ", "))
	}
	return &Problem{File: t.File, Line: t.reqStateLine, Col: t.reqStateCol, Msg: fmt.Sprintf(
		"requires_initial_state %q: the plan's state is kept per %s instance (states_map.yaml scope: %s), so the task must hold exactly one "+
			"%s instance in meta.resource_tags (%s:* for any free one, %s:<name> for a given one); it %s",
		t.Meta.RequiresInitialState, sm.Scope, sm.Scope, sm.Scope, sm.Scope, sm.Scope, have)}
}
