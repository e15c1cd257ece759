package plan

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"

	"github.com/aura-dev/aura/internal/suggest"
	"github.com/aura-dev/aura/internal/template"
)

// DefaultTimeout is a task's timeout when its meta has none.
const DefaultTimeout = time.Hour

var (
	stepIDPattern  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)
	inputNameRegex = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

var (
	taskKeys     = []string{"meta", "inputs", "steps", "returns"}
	metaKeys     = []string{"title", "description", "requires_initial_state", "execution_mode", "timeout", "resource_tags", "priority", "on_interrupt", "preemptible", "preempted"}
	inputKeys    = []string{"name", "type", "description", "required", "default"}
	stepKeysList = []string{"id", "title", "description", "action", "params", "when", "loop", "retry", "timeout", "continue_on_failure", "lane"}
	stepKeysMap  = []string{"title", "description", "action", "params", "depends_on", "when", "loop", "retry", "timeout", "continue_on_failure", "lane"}
	loopKeys     = []string{"for_each", "times", "parallelism"}
	retryKeys    = []string{"max_attempts", "delay", "backoff", "max_delay"}
)

// inputTypes are the accepted input types.
var inputTypes = []string{"string", "int", "float", "bool", "list", "map"}

// taskLoader compiles one task file.
type taskLoader struct {
	f            *yamlFile
	t            *Task
	actionKnown  func(string) bool
	actionNames  func() []string
	actionParams func(string) ([]string, bool)
	maxLoop      int64 // 0: loop counts are not checked here
	tagValid     func(string) error
	stepNode     []ast.Node // per step, for positions
	depNodes     []depNode
}

type depNode struct {
	step int
	node ast.Node
}

func loadTask(p *Plan, name, path string, opts Options, problems *[]Problem) *Task {
	t := &Task{
		ID:   p.Name + "/" + name,
		Name: name,
		File: path,
		Plan: p,
		Meta: Meta{ExecutionMode: "io", Timeout: DefaultTimeout, OnInterrupt: "fail", Preempted: "resume"},
	}
	before := len(*problems)
	f, body := parseYAML(path, problems)
	if body == nil {
		if len(*problems) == before {
			f.add(1, 1, "empty task file")
		}
		return t
	}
	defer func() {
		// A loader bug must not take the daemon down: report it as a problem.
		if p := recover(); p != nil {
			f.add(1, 1, "internal error while loading this task: %v", p)
		}
	}()
	l := &taskLoader{f: f, t: t, actionKnown: opts.ActionKnown, actionNames: opts.ActionNames, actionParams: opts.ActionParams, maxLoop: int64(opts.MaxLoopIterations),
		tagValid: opts.ResourceTagValid}
	fs, ok := f.fields(body, "task", taskKeys...)
	if !ok {
		return t
	}
	if mv := fs["meta"]; mv != nil {
		l.meta(mv.Value)
	}
	if mv := fs["inputs"]; mv != nil {
		l.inputs(mv.Value)
	}
	if mv := fs["steps"]; mv != nil {
		l.steps(mv.Value)
	}
	if mv := fs["returns"]; mv != nil && !isNull(mv.Value) {
		t.Returns = f.value(mv.Value)
	}
	l.checkRefs()
	l.checkTagInputs()
	return t
}

func (l *taskLoader) meta(n ast.Node) {
	f, m := l.f, &l.t.Meta
	if isNull(n) {
		return
	}
	fs, ok := f.fields(n, "meta", metaKeys...)
	if !ok {
		return
	}
	for k, mv := range fs {
		v := mv.Value
		switch k {
		case "title":
			m.Title, _ = f.str(v, "meta.title")
		case "description":
			m.Description, _ = f.str(v, "meta.description")
		case "requires_initial_state":
			m.RequiresInitialState, _ = f.str(v, "meta.requires_initial_state")
			l.t.reqStateLine, l.t.reqStateCol = f.pos(v)
		case "execution_mode":
			if s, ok := f.str(v, "meta.execution_mode"); ok {
				if s != "io" && s != "cpu" {
					f.addAt(v, "meta.execution_mode must be io or cpu, not %q", s)
				} else {
					m.ExecutionMode = s
				}
			}
		case "timeout":
			if d, ok := f.duration(v, "meta.timeout"); ok {
				if d == 0 {
					f.addAt(v, "meta.timeout must be positive")
				} else {
					m.Timeout = d
				}
			}
		case "resource_tags":
			l.resourceTags(v)
		case "priority":
			if p, ok := f.integer(v, "meta.priority"); ok {
				if p < math.MinInt32 || p > math.MaxInt32 {
					f.addAt(v, "meta.priority is out of range")
				} else {
					m.Priority = int32(p)
				}
			}
		case "on_interrupt":
			if s, ok := f.str(v, "meta.on_interrupt"); ok {
				if s != "fail" && s != "requeue" {
					f.addAt(v, "meta.on_interrupt must be fail or requeue, not %q", s)
				} else {
					m.OnInterrupt = s
				}
			}
		case "preemptible":
			m.Preemptible, _ = f.boolean(v, "meta.preemptible")
		case "preempted":
			if s, ok := f.str(v, "meta.preempted"); ok {
				if s != "resume" && s != "requeue" && s != "cancel" {
					f.addAt(v, "meta.preempted must be resume, requeue or cancel, not %q", s)
				} else {
					m.Preempted = s
				}
			}
		}
	}
}

func (l *taskLoader) inputs(n ast.Node) {
	f := l.f
	if isNull(n) {
		return
	}
	seq, ok := f.resolve(n).(*ast.SequenceNode)
	if !ok {
		f.addAt(n, "inputs must be a list of {name, type, ...}")
		return
	}
	seen := map[string]bool{}
	for _, item := range seq.Values {
		fs, ok := f.fields(item, "input", inputKeys...)
		if !ok {
			continue
		}
		in := Input{Type: "string"}
		if mv := fs["name"]; mv == nil {
			f.addAt(item, "input has no name")
			continue
		} else if in.Name, ok = f.str(mv.Value, "input name"); !ok {
			continue
		} else if !inputNameRegex.MatchString(in.Name) {
			f.addAt(mv.Value, "bad input name %q (letters, digits and _; not starting with a digit)", in.Name)
		} else if seen[in.Name] {
			f.addAt(mv.Value, "duplicate input %q", in.Name)
		}
		seen[in.Name] = true
		typeKnown := true
		if mv := fs["type"]; mv != nil {
			if s, ok := f.str(mv.Value, "input type"); !ok {
				typeKnown = false
			} else if !slices.Contains(inputTypes, s) {
				f.addAt(mv.Value, "input %q: unknown type %q (want one of %s)", in.Name, s, strings.Join(inputTypes, ", "))
				typeKnown = false
			} else {
				in.Type = s
			}
		}
		if mv := fs["description"]; mv != nil {
			in.Description, _ = f.str(mv.Value, "input description")
		}
		if mv := fs["required"]; mv != nil {
			in.Required, _ = f.boolean(mv.Value, "input required")
		}
		if mv := fs["default"]; mv != nil {
			v, err := coerce(in.Type, f.plain(mv.Value), false)
			switch {
			case err != nil && typeKnown:
				f.addAt(mv.Value, "input %q: bad default: %v", in.Name, err)
			case err != nil:
				// The type is already reported; a default checked against
				// a type nobody wrote would be a second, misleading error.
			default:
				in.Default, in.HasDefault = v, true
			}
			if in.Required {
				f.addAt(mv.Key, "input %q is required and so cannot have a default", in.Name)
			}
		}
		l.t.Inputs = append(l.t.Inputs, in)
	}
}

func (l *taskLoader) steps(n ast.Node) {
	f := l.f
	switch x := f.resolve(n).(type) {
	case *ast.NullNode:
	case *ast.SequenceNode:
		l.t.Sequential = true
		for i, item := range x.Values {
			fs, ok := f.fields(item, "step", stepKeysList...)
			if !ok {
				continue
			}
			id := fmt.Sprintf("step%d", i+1)
			var idNode ast.Node = item
			if mv := fs["id"]; mv != nil {
				idNode = mv.Value
				if s, ok := f.str(mv.Value, "step id"); ok {
					id = s
				}
			}
			l.step(id, idNode, item, fs)
		}
	case *ast.MappingNode:
		es, _ := f.entries(x, "steps")
		for _, mv := range es {
			fs, ok := f.fields(mv.Value, fmt.Sprintf("step %q", keyName(mv)), stepKeysMap...)
			if !ok {
				continue
			}
			l.step(keyName(mv), mv.Key, mv.Value, fs)
		}
		l.resolveDepends()
	default:
		f.addAt(n, "steps must be a list (run in order) or a mapping (a graph by depends_on)")
	}
}

func (l *taskLoader) step(id string, idNode, node ast.Node, fs map[string]*ast.MappingValueNode) {
	f := l.f
	if !stepIDPattern.MatchString(id) {
		f.addAt(idNode, "bad step id %q (letters, digits, _ and -; not starting with a digit or -)", id)
	}
	for i, other := range l.t.Steps {
		if other.ID == id {
			line, _ := f.pos(l.stepNode[i])
			f.addAt(idNode, "duplicate step id %q (first at line %d)", id, line)
		}
	}
	line, col := f.pos(node)
	s := &Step{ID: id, Index: len(l.t.Steps), Line: line, Col: col, Retry: Retry{MaxAttempts: 1, Backoff: 1}}
	l.t.Steps = append(l.t.Steps, s)
	l.stepNode = append(l.stepNode, idNode)

	if mv := fs["action"]; mv == nil {
		f.addAt(node, "step %q has no action", id)
	} else if a, ok := f.str(mv.Value, "action"); ok {
		s.Action = a
		if l.actionKnown != nil && !l.actionKnown(a) {
			f.addAt(mv.Value, "step %q: unknown action %q%s", id, a, l.actionHint(a))
		}
	}
	for _, k := range []string{"title", "description"} {
		if mv := fs[k]; mv != nil {
			f.str(mv.Value, k)
		}
	}
	if mv := fs["params"]; mv != nil && !isNull(mv.Value) {
		switch f.resolve(mv.Value).(type) {
		case *ast.MappingNode, *ast.StringNode, *ast.LiteralNode:
			s.Params = f.value(mv.Value)
			if c, ok := s.Params.(template.Const); ok {
				if _, isMap := c.V.(map[string]any); !isMap {
					f.addAt(mv.Value, "step %q: params must be a mapping or one template", id)
				}
			}
		default:
			f.addAt(mv.Value, "step %q: params must be a mapping or one template", id)
		}
		l.checkParamNames(s, mv.Value)
	}
	if mv := fs["when"]; mv != nil {
		switch f.resolve(mv.Value).(type) {
		case *ast.StringNode, *ast.LiteralNode, *ast.BoolNode:
			s.When = f.value(mv.Value)
		default:
			f.addAt(mv.Value, "step %q: when must be a template or a boolean", id)
		}
	}
	if mv := fs["loop"]; mv != nil {
		l.loop(s, mv.Value)
	}
	if mv := fs["retry"]; mv != nil {
		l.retry(s, mv.Value)
	}
	if mv := fs["timeout"]; mv != nil {
		if d, ok := f.duration(mv.Value, "timeout"); ok {
			if d == 0 {
				f.addAt(mv.Value, "step %q: timeout must be positive", id)
			}
			s.Timeout = d
		}
	}
	if mv := fs["continue_on_failure"]; mv != nil {
		s.ContinueOnFailure, _ = f.boolean(mv.Value, "continue_on_failure")
	}
	if mv := fs["lane"]; mv != nil {
		if v, ok := f.str(mv.Value, "lane"); ok {
			if v != "io" && v != "cpu" {
				f.addAt(mv.Value, "step %q: lane must be io or cpu, not %q", id, v)
			} else {
				s.Lane = v
			}
		}
	}
	if mv := fs["depends_on"]; mv != nil {
		s.Depends = l.depends(mv.Value)
	}
}

func (l *taskLoader) loop(s *Step, n ast.Node) {
	f := l.f
	fs, ok := f.fields(n, "loop", loopKeys...)
	if !ok {
		return
	}
	lp := &Loop{Parallelism: 1}
	fe, tm := fs["for_each"], fs["times"]
	switch {
	case fe != nil && tm != nil:
		f.addAt(tm.Key, "step %q: loop takes for_each or times, not both", s.ID)
	case fe == nil && tm == nil:
		f.addAt(n, "step %q: loop needs for_each or times", s.ID)
	case fe != nil:
		switch f.resolve(fe.Value).(type) {
		case *ast.SequenceNode, *ast.StringNode, *ast.LiteralNode:
			lp.ForEach = f.value(fe.Value)
			if c, ok := lp.ForEach.(template.Const); ok {
				if list, isList := c.V.([]any); !isList {
					f.addAt(fe.Value, "step %q: loop.for_each must be a list or a template", s.ID)
				} else if l.maxLoop > 0 && int64(len(list)) > l.maxLoop {
					f.addAt(fe.Value, "step %q: loop.for_each has %d items, more than the limit of %d iterations (aurad --max-loop-iterations)", s.ID, len(list), l.maxLoop)
				}
			}
		default:
			f.addAt(fe.Value, "step %q: loop.for_each must be a list or a template", s.ID)
		}
	default:
		switch x := f.resolve(tm.Value).(type) {
		case *ast.IntegerNode:
			if v, ok := f.integer(x, "loop.times"); ok {
				if v < 0 {
					f.addAt(x, "step %q: loop.times must not be negative", s.ID)
				} else if l.maxLoop > 0 && v > l.maxLoop {
					f.addAt(x, "step %q: loop.times is %d, more than the limit of %d iterations (aurad --max-loop-iterations)", s.ID, v, l.maxLoop)
				}
				lp.Times = template.Const{V: v}
			}
		case *ast.StringNode, *ast.LiteralNode:
			lp.Times = f.value(x)
			if _, ok := lp.Times.(template.Const); ok {
				f.addAt(x, "step %q: loop.times must be an integer or a template", s.ID)
			}
		default:
			f.addAt(tm.Value, "step %q: loop.times must be an integer or a template", s.ID)
		}
	}
	if mv := fs["parallelism"]; mv != nil {
		if v, ok := f.integer(mv.Value, "loop.parallelism"); ok {
			if v < 1 || v > 10000 {
				f.addAt(mv.Value, "step %q: loop.parallelism must be between 1 and 10000", s.ID)
			} else {
				lp.Parallelism = int(v)
			}
		}
	}
	s.Loop = lp
}

func (l *taskLoader) retry(s *Step, n ast.Node) {
	f := l.f
	fs, ok := f.fields(n, "retry", retryKeys...)
	if !ok {
		return
	}
	if mv := fs["max_attempts"]; mv != nil {
		if v, ok := f.integer(mv.Value, "retry.max_attempts"); ok {
			if v < 1 || v > 1000 {
				f.addAt(mv.Value, "step %q: retry.max_attempts must be between 1 and 1000", s.ID)
			} else {
				s.Retry.MaxAttempts = int(v)
			}
		}
	}
	if mv := fs["delay"]; mv != nil {
		s.Retry.Delay, _ = f.duration(mv.Value, "retry.delay")
	}
	if mv := fs["max_delay"]; mv != nil {
		s.Retry.MaxDelay, _ = f.duration(mv.Value, "retry.max_delay")
	}
	if mv := fs["backoff"]; mv != nil {
		if v, ok := f.number(mv.Value, "retry.backoff"); ok {
			if v < 1 || v > 100 {
				f.addAt(mv.Value, "step %q: retry.backoff must be between 1 and 100", s.ID)
			} else {
				s.Retry.Backoff = v
			}
		}
	}
}

// depends parses depends_on; targets are resolved once all steps are known.
func (l *taskLoader) depends(n ast.Node) Depends {
	f := l.f
	var d Depends
	// Keep the node so unknown targets can be reported where they were written.
	l.depNodes = append(l.depNodes, depNode{step: len(l.t.Steps) - 1, node: n})
	addItem := func(item ast.Node) {
		switch x := f.resolve(item).(type) {
		case *ast.StringNode:
			d.On = append(d.On, Dependency{ID: x.Value, Step: -1, On: OnSuccess})
		case *ast.MappingNode:
			es, _ := f.entries(x, "depends_on")
			for _, mv := range es {
				d.On = append(d.On, Dependency{ID: keyName(mv), Step: -1, On: l.condition(mv.Value)})
			}
		default:
			f.addAt(item, "depends_on entries must be step ids or {step: success|failed|done}")
		}
	}
	switch x := f.resolve(n).(type) {
	case *ast.StringNode:
		addItem(x)
	case *ast.SequenceNode:
		for _, it := range x.Values {
			addItem(it)
		}
	case *ast.MappingNode:
		es, _ := f.entries(x, "depends_on")
		if len(es) == 1 && (keyName(es[0]) == "all" || keyName(es[0]) == "any") {
			if keyName(es[0]) == "any" {
				d.Mode = DependAny
			}
			seq, ok := f.resolve(es[0].Value).(*ast.SequenceNode)
			if !ok {
				f.addAt(es[0].Value, "depends_on.%s must be a list", keyName(es[0]))
				return d
			}
			for _, it := range seq.Values {
				addItem(it)
			}
			return d
		}
		for _, mv := range es {
			if k := keyName(mv); k == "all" || k == "any" {
				f.addAt(mv.Key, "depends_on: %q must be the only key", k)
			}
		}
		addItem(x)
	default:
		f.addAt(n, "depends_on must be a step id, a list, {all: [...]}, {any: [...]} or {step: success|failed}")
	}
	return d
}

func (l *taskLoader) condition(n ast.Node) Condition {
	s, ok := l.f.str(n, "depends_on condition")
	if !ok {
		return OnSuccess
	}
	switch s {
	case "success", "succeeded":
		return OnSuccess
	case "failed", "failure":
		return OnFailure
	case "done", "success|failed", "failed|success":
		return OnDone
	}
	l.f.addAt(n, "depends_on condition must be success, failed or done, not %q", s)
	return OnSuccess
}

// checkParamNames reports params the step's action does not take.
// actionHint is what follows "unknown action": the closest action names, or
// every action when none is close.
func (l *taskLoader) actionHint(name string) string {
	if l.actionNames == nil {
		return ""
	}
	names := l.actionNames()
	if hint := suggest.Hint(name, names); hint != "" {
		return hint
	}
	return " (actions: " + strings.Join(names, ", ") + ")"
}

func (l *taskLoader) checkParamNames(s *Step, n ast.Node) {
	if l.actionParams == nil || s.Action == "" {
		return
	}
	names, ok := l.actionParams(s.Action)
	if !ok {
		return
	}
	m, isMap := l.f.resolve(n).(*ast.MappingNode)
	if !isMap {
		return
	}
	es, _ := l.f.entries(m, "params")
	for _, mv := range es {
		if k := keyName(mv); !slices.Contains(names, k) {
			l.f.addAt(mv.Key, "step %q: action %s takes no param %q (it takes: %s)", s.ID, s.Action, k, strings.Join(names, ", "))
		}
	}
}
