package plan

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/aura-dev/aura/internal/template"
)

// Problem is one validation finding, located in a file.
type Problem struct {
	File      string
	Line, Col int
	Msg       string
}

func (p Problem) String() string {
	return fmt.Sprintf("%s:%d:%d: %s", p.File, p.Line, p.Col, p.Msg)
}

// LoadError reports every problem found while loading plans.
type LoadError struct{ Problems []Problem }

func (e *LoadError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Errors returned by Set.Task.
var (
	ErrBadTaskName     = errors.New("malformed task name")
	ErrUnknownTask     = errors.New("unknown task")
	ErrPlanUnavailable = errors.New("plan unavailable")
)

// Options control Load.
type Options struct {
	// SkipBroken keeps broken plans in the Set (with Problems set) instead of
	// failing the whole load.
	SkipBroken bool
	// ActionKnown reports whether an action name exists; nil accepts all.
	ActionKnown func(name string) bool
	// ActionNames lists every action, so an unknown one is reported with
	// the closest names or the whole list; nil names none.
	ActionNames func() []string
	// ActionParams returns the parameter names an action accepts, so
	// misspelt params are reported at load; ok false (or a nil func)
	// accepts any params.
	ActionParams func(action string) (names []string, ok bool)
	// HTTPHostValid checks one plan.yaml http.allow_hosts entry; nil
	// accepts any.
	HTTPHostValid func(entry string) error
	// MaxLoopIterations, when positive, is the most iterations a loop
	// whose count is written in the file (loop.times: 5, a literal
	// for_each list) may ask for; a templated count is checked when the
	// step runs.
	MaxLoopIterations int
	// ResourceTagValid checks one literal meta.resource_tags entry (a
	// templated one is checked once rendered, at submit); nil accepts any.
	ResourceTagValid func(tag string) error
}

// Set is the collection of loaded plans. It is immutable after Load.
type Set struct {
	plans map[string]*Plan
	names []string // sorted
	// tasks holds every task of the available plans by full ID, so a known
	// task is found with one lookup (Task checks names only on a miss).
	tasks map[string]*Task
}

// Plan is one directory under the plans root.
type Plan struct {
	Name, Dir, Title, Description string         // Dir is absolute
	Resources                     map[string]int // plan.yaml resources: {device: 2}
	// HTTP is plan.yaml's http section: what http.request may reach.
	HTTP HTTPPolicy
	// Tasks by name inside the plan ("hello", "checks/logged_in").
	Tasks    map[string]*Task
	StateMap *StateMap // nil when the plan has no states_map.yaml
	// Schedules are schedules.yaml's entries by name.
	Schedules map[string]*Schedule
	// Interrupts are interrupts.yaml's rules by name.
	Interrupts map[string]*Interrupt
	Problems   []Problem // non-empty: the plan is unavailable
}

// HTTPPolicy is plan.yaml's http section.
type HTTPPolicy struct {
	// AllowHosts are addresses, prefixes and host names (each optionally
	// with a port) that http.request may reach although they are loopback,
	// link-local or metadata addresses, refused by default.
	AllowHosts []string
}

// Available reports whether the plan loaded without problems.
func (p *Plan) Available() bool { return len(p.Problems) == 0 }

// Task is one task file of a plan.
type Task struct {
	ID, Name, File string // ID "plan/name"; File absolute
	Plan           *Plan
	Meta           Meta
	Inputs         []Input

	// Steps in declaration order (list and map form alike).
	Steps []*Step
	// Sequential is true for the list form: steps run one after another
	// and the first failure (without continue_on_failure) ends the task.
	Sequential bool
	// Returns is the compiled returns section; nil when the task has none.
	Returns template.Value

	reqStateLine, reqStateCol int // where requires_initial_state was written
}

// Meta is a task's meta section with defaults applied.
type Meta struct {
	Title, Description   string
	RequiresInitialState string        // a state of the plan's states_map.yaml, or ""
	ExecutionMode        string        // "io" (default) or "cpu"
	Timeout              time.Duration // default 1h
	ResourceTags         []string      // as written; parsed by internal/admission
	// ResourceTagTemplates holds, beside each of ResourceTags, the compiled
	// template of a tag written with {{ }} (rendered over the inputs at
	// submit), nil for a literal tag; nil when no tag is a template.
	ResourceTagTemplates []*template.Template
	Priority             int32
	OnInterrupt          string // "fail" (default) or "requeue"
	// Preemptible: a preempt task of higher priority may take the pool
	// instances it holds (a submission may say so too).
	Preemptible bool
	// Preempted is what a preempted task does once the task that took its
	// instance ends: "resume" (default), "requeue" or "cancel".
	Preempted string
}

// Input declares one task input.
type Input struct {
	Name, Type, Description string // Type: string, int, float, bool, list or map
	Required                bool
	Default                 any // JSON-like, already of Type
	HasDefault              bool
}

// Plans returns all plans sorted by name.
func (s *Set) Plans() []*Plan {
	out := make([]*Plan, 0, len(s.names))
	for _, n := range s.names {
		out = append(out, s.plans[n])
	}
	return out
}

// Plan returns the named plan.
func (s *Set) Plan(name string) (*Plan, bool) {
	p, ok := s.plans[name]
	return p, ok
}

// sortProblems orders problems by file, line, column.
func sortProblems(ps []Problem) {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
}
