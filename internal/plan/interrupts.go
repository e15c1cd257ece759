package plan

import (
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
)

// Interrupt scopes besides a pool's name: what a rule's check is polled
// for.
const (
	// InterruptScopePlan polls the check once for the plan, while any of
	// its tasks runs; a fire interrupts every running task of the plan.
	InterruptScopePlan = "plan"
	// InterruptScopeGlobal polls the check while any task of any plan
	// runs; a fire interrupts every running task.
	InterruptScopeGlobal = "global"
)

// What becomes of a task an interrupt paused, once the handler succeeded.
const (
	PreemptedResume  = "resume"  // it goes on at the step after the one that ran
	PreemptedRequeue = "requeue" // it is queued again with attempt+1
	PreemptedCancel  = "cancel"  // it ends CANCELLED, kind preempted
)

// PreemptedPolicies lists the policies, default first.
var PreemptedPolicies = []string{PreemptedResume, PreemptedRequeue, PreemptedCancel}

// MinInterruptEvery is the shortest polling interval a rule may ask for:
// each poll runs a check task.
const MinInterruptEvery = 100 * time.Millisecond

var interruptKeys = []string{"check", "every", "scope", "handler", "cooldown", "preempted", "abort_step", "inputs", "description"}

// Interrupt is one rule of a plan's interrupts.yaml: a check polled while
// tasks of the plan hold what the rule watches, and the handler that runs
// on the same instance when the check is truthy.
type Interrupt struct {
	// ID is "<plan>/<name>"; File is interrupts.yaml (absolute) and Line
	// the rule's line there.
	ID, Name, File string
	Line           int
	Plan           *Plan
	Description    string

	Check   string        // the check task, "plan/task"
	Every   time.Duration // how often the check is polled
	Scope   string        // a pool name, InterruptScopePlan or InterruptScopeGlobal
	Handler string        // the handler task, "plan/task"
	// Cooldown holds the rule back, per instance (per plan, for ever), for
	// this long after it fired.
	Cooldown  time.Duration
	Preempted string // one of PreemptedPolicies
	// AbortStep cancels the running step rather than waiting for it to
	// end; the step runs again when the task resumes.
	AbortStep bool
	// Inputs are the handler's inputs, plain values.
	Inputs map[string]any
}

// PerInstance reports whether the rule is polled per instance of a pool.
func (r *Interrupt) PerInstance() bool {
	return r.Scope != InterruptScopePlan && r.Scope != InterruptScopeGlobal
}

// Interrupts returns the rules of every available plan, by ID.
func (s *Set) Interrupts() []*Interrupt {
	var out []*Interrupt
	for _, p := range s.Plans() {
		if !p.Available() {
			continue
		}
		for _, r := range p.Interrupts {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// interruptFile is where a plan's interrupt rules live.
func interruptFile(planDir string) string { return filepath.Join(planDir, "interrupts.yaml") }

// loadInterrupts reads plans/<plan>/interrupts.yaml once the plan's tasks
// are loaded: the check and handler are tasks of the same plan, named as
// states_map.yaml names its checks ("checks/popup_visible").
func loadInterrupts(p *Plan, path string, opts Options, problems *[]Problem) {
	f, body := parseYAML(path, problems)
	if body == nil {
		return
	}
	top, ok := f.fields(body, "interrupts.yaml", "interrupts")
	if !ok {
		return
	}
	mv := top["interrupts"]
	if mv == nil || isNull(mv.Value) {
		return
	}
	es, ok := f.entries(mv.Value, "interrupts")
	if !ok {
		return
	}
	for _, e := range es {
		name := keyName(e)
		if !segmentPattern.MatchString(name) {
			f.addAt(e.Key, "bad interrupt name %q (letters, digits, _ . -)", name)
			continue
		}
		line, _ := f.pos(e.Key)
		r := &Interrupt{ID: p.Name + "/" + name, Name: name, File: path, Line: line, Plan: p}
		if f.interrupt(p, r, e, opts) {
			p.Interrupts[name] = r
		}
	}
}

// interrupt reads one rule; false when it has a problem (recorded).
func (f *yamlFile) interrupt(p *Plan, r *Interrupt, e *ast.MappingValueNode, opts Options) bool {
	before := len(*f.problems)
	what := "interrupt " + r.Name
	fs, ok := f.fields(e.Value, what, interruptKeys...)
	if !ok {
		return false
	}
	task := func(key, role string) (string, *Task) {
		mv := fs[key]
		if mv == nil || isNull(mv.Value) {
			f.addAt(e.Key, "%s: %s is required (%s, a task of this plan such as checks/popup_visible)", what, key, role)
			return "", nil
		}
		name, ok := f.str(mv.Value, key)
		if !ok {
			return "", nil
		}
		t, exists := p.Tasks[name]
		if !exists {
			f.addAt(mv.Value, "%s: %s: no task %q in plan %s (%s)", what, key, name, p.Name, taskList(p))
			return "", nil
		}
		if t.Meta.RequiresInitialState != "" {
			f.addAt(mv.Value, "%s: %s %q has requires_initial_state %q: it runs on the instance as it is, without planning", what, key, name, t.Meta.RequiresInitialState)
		}
		return t.ID, t
	}
	r.Check, _ = task("check", "the task polled: a truthy result fires the rule")
	var handler *Task
	r.Handler, handler = task("handler", "the task run on the instance when the rule fires")

	if mv := fs["every"]; mv == nil || isNull(mv.Value) {
		f.addAt(e.Key, "%s: every is required (how often the check is polled, e.g. 5s)", what)
	} else if d, ok := f.duration(mv.Value, "every"); ok {
		if d < MinInterruptEvery {
			f.addAt(mv.Value, "every %s is below %s: each poll runs the check task", d, MinInterruptEvery)
		}
		r.Every = d
	}
	if mv := fs["cooldown"]; mv != nil && !isNull(mv.Value) {
		r.Cooldown, _ = f.duration(mv.Value, "cooldown")
	}
	if mv := fs["scope"]; mv == nil || isNull(mv.Value) {
		f.addAt(e.Key, "%s: scope is required (the pool whose instances are watched, e.g. device; or plan, or global)", what)
	} else if s, ok := f.str(mv.Value, "scope"); ok {
		r.Scope = s
		switch {
		case s == InterruptScopePlan || s == InterruptScopeGlobal:
		case s == "" || !segmentPattern.MatchString(s):
			f.addAt(mv.Value, "scope %q: want the name of a resource pool, %q or %q", s, InterruptScopePlan, InterruptScopeGlobal)
		case opts.ResourceTagValid != nil:
			if err := opts.ResourceTagValid(s + ":*"); err != nil {
				f.addAt(mv.Value, "scope %q: the check is polled per instance of a pool (or give %q or %q), but %v", s, InterruptScopePlan, InterruptScopeGlobal, err)
			}
		}
	}
	r.Preempted = PreemptedResume
	if mv := fs["preempted"]; mv != nil && !isNull(mv.Value) {
		if s, ok := f.str(mv.Value, "preempted"); ok {
			if !slices.Contains(PreemptedPolicies, s) {
				f.addAt(mv.Value, "preempted %q: want one of %s", s, strings.Join(PreemptedPolicies, ", "))
			}
			r.Preempted = s
		}
	}
	if mv := fs["abort_step"]; mv != nil && !isNull(mv.Value) {
		r.AbortStep, _ = f.boolean(mv.Value, "abort_step")
	}
	if mv := fs["description"]; mv != nil && !isNull(mv.Value) {
		r.Description, _ = f.str(mv.Value, "description")
	}
	if mv := fs["inputs"]; mv != nil && !isNull(mv.Value) {
		if _, ok := f.resolve(mv.Value).(*ast.MappingNode); !ok {
			f.addAt(mv.Value, "inputs must be a mapping of the handler's input names to values")
		} else {
			r.Inputs, _ = f.plain(mv.Value).(map[string]any)
		}
	}
	if handler != nil {
		given := r.Inputs
		if given == nil {
			given = map[string]any{}
		}
		if _, err := handler.ResolveInputs(given); err != nil {
			at := ast.Node(e.Key)
			if mv := fs["inputs"]; mv != nil {
				at = mv.Value
			}
			f.addAt(at, "%s: inputs for handler %s: %v", what, r.Handler, err)
		}
	}
	return len(*f.problems) == before
}
