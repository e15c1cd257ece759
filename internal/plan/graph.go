package plan

import (
	"strings"

	"github.com/goccy/go-yaml/ast"

	"github.com/aura-dev/aura/internal/template"
)

// resolveDepends links depends_on targets to step indices and reports
// unknown targets and cycles.
func (l *taskLoader) resolveDepends() {
	index := make(map[string]int, len(l.t.Steps))
	for i, s := range l.t.Steps {
		if _, dup := index[s.ID]; !dup {
			index[s.ID] = i
		}
	}
	nodeOf := make(map[int]ast.Node, len(l.depNodes))
	for _, dn := range l.depNodes {
		nodeOf[dn.step] = dn.node
	}
	for si, s := range l.t.Steps {
		for i := range s.Depends.On {
			d := &s.Depends.On[i]
			j, ok := index[d.ID]
			if !ok {
				l.f.addAt(nodeOf[si], "step %q depends on unknown step %q", s.ID, d.ID)
				d.Step = -1
				continue
			}
			d.Step = j
		}
		// Drop unresolved entries so the engine never sees index -1.
		on := s.Depends.On[:0]
		for _, d := range s.Depends.On {
			if d.Step >= 0 {
				on = append(on, d)
			}
		}
		s.Depends.On = on
	}
	l.findCycles()
}

// findCycles reports each dependency cycle once, at its first step.
func (l *taskLoader) findCycles() {
	const (
		white = iota
		grey
		black
	)
	steps := l.t.Steps
	color := make([]int, len(steps))
	var stack []int
	var visit func(i int)
	visit = func(i int) {
		color[i] = grey
		stack = append(stack, i)
		for _, d := range steps[i].Depends.On {
			switch color[d.Step] {
			case white:
				visit(d.Step)
			case grey:
				start := 0
				for k, v := range stack {
					if v == d.Step {
						start = k
					}
				}
				var names []string
				for _, v := range stack[start:] {
					names = append(names, steps[v].ID)
				}
				names = append(names, steps[d.Step].ID)
				// stack order is dependent -> dependency; print it as written.
				l.f.addAt(l.stepNode[d.Step], "dependency cycle: %s", strings.Join(names, " -> "))
			}
		}
		stack = stack[:len(stack)-1]
		color[i] = black
	}
	for i := range steps {
		if color[i] == white {
			visit(i)
		}
	}
}

// ancestors returns, for each step, the set of steps it (transitively)
// waits for. In list form every earlier step is an ancestor.
func (l *taskLoader) ancestors() []map[int]bool {
	steps := l.t.Steps
	out := make([]map[int]bool, len(steps))
	if l.t.Sequential {
		for i := range steps {
			out[i] = make(map[int]bool, i)
			for j := range i {
				out[i][j] = true
			}
		}
		return out
	}
	var fill func(i int, seen map[int]bool)
	fill = func(i int, seen map[int]bool) {
		for _, d := range steps[i].Depends.On {
			if !seen[d.Step] {
				seen[d.Step] = true
				fill(d.Step, seen)
			}
		}
	}
	for i := range steps {
		out[i] = map[int]bool{}
		fill(i, out[i])
	}
	return out
}

// checkRefs validates what templates read: declared inputs, existing
// steps that finish before the reader, and loop only inside a loop step.
func (l *taskLoader) checkRefs() {
	t := l.t
	stepIndex := make(map[string]int, len(t.Steps))
	for i, s := range t.Steps {
		stepIndex[s.ID] = i
	}
	inputs := make(map[string]bool, len(t.Inputs))
	for _, in := range t.Inputs {
		inputs[in.Name] = true
	}
	anc := l.ancestors()
	check := func(v template.Value, reader *Step, loopOK bool) {
		for _, tp := range template.Templates(v) {
			loc, r := tp.Location(), tp.Refs()
			add := func(format string, args ...any) {
				l.f.add(loc.Line, loc.Col, format, args...)
			}
			for _, in := range r.Inputs {
				if !inputs[in] {
					add("template reads inputs.%s but the task declares no input %q", in, in)
				}
			}
			for _, id := range r.Nodes {
				j, ok := stepIndex[id]
				switch {
				case !ok:
					add("template reads nodes.%s but there is no step %q", id, id)
				case reader != nil && j == reader.Index:
					add("step %q reads its own result nodes.%s", reader.ID, id)
				case reader != nil && !anc[reader.Index][j]:
					if t.Sequential {
						add("step %q reads nodes.%s, which runs after it", reader.ID, id)
					} else {
						add("step %q reads nodes.%s but does not depend on it (add it to depends_on)", reader.ID, id)
					}
				}
			}
			if r.BareNodes {
				add("use nodes.<step id> (or nodes[key]), not the whole nodes table")
			}
			if r.Has("trigger") {
				add("trigger.task is only set in a schedules.yaml after trigger's inputs")
			}
			if r.Has("loop") && !loopOK {
				add("loop.item and loop.index are only available in the params of a step with loop")
			}
		}
	}
	for _, s := range t.Steps {
		check(s.Params, s, s.Loop != nil)
		check(s.When, s, false)
		if s.Loop != nil {
			check(s.Loop.ForEach, s, false)
			check(s.Loop.Times, s, false)
		}
	}
	check(t.Returns, nil, false)
}
