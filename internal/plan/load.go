package plan

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"

	"github.com/goccy/go-yaml/ast"

	"github.com/aura-dev/aura/internal/suggest"
)

var segmentPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

var (
	planKeys      = []string{"title", "description", "resources", "http"}
	httpKeys      = []string{"allow_hosts"}
	stateMapKeys  = []string{"states", "transitions", "planning", "scope"}
	stateKeys     = []string{"check", "priority", "sequential", "description"}
	transKeys     = []string{"from", "to", "task", "cost", "description"}
	planningKeys  = []string{"max_replans", "replan_delay", "verify_retries", "verify_delay"}
	taskExtension = ".yaml"
)

// Load reads every plan directory under dir (hidden entries and plain files
// are ignored). Without opts.SkipBroken any problem fails the load with a
// *LoadError listing all problems of all plans, sorted; with it, broken
// plans stay in the Set with Problems set.
func Load(dir string, opts Options) (*Set, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("load plans: %w", err)
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		// Say what a plans directory is: the usual cause is a --plans
		// pointing at one plan, a task file, or a mistyped path.
		what := ""
		switch {
		case errors.Is(err, fs.ErrNotExist):
			what = "does not exist"
		case errors.Is(err, syscall.ENOTDIR):
			what = "is not a directory"
		}
		if what != "" {
			return nil, fmt.Errorf("load plans: %s %s; a plans directory holds one directory per plan, "+
				"each with its task files under tasks/, as examples/plans does (see docs/writing-plans.md) (%w)", dir, what, err)
		}
		return nil, fmt.Errorf("load plans: %w", err)
	}
	// One plan's own directory given for the directory of plans: its
	// tasks/ would load as a plan named "tasks" without tasks.
	if isDirPath(filepath.Join(abs, "tasks")) && !isDirPath(filepath.Join(abs, "tasks", "tasks")) {
		return nil, fmt.Errorf("load plans: %s looks like a single plan (it has a tasks/ directory); give the directory that holds the plans: %s",
			dir, filepath.Dir(abs))
	}
	s := &Set{plans: map[string]*Plan{}, tasks: map[string]*Task{}}
	var all []Problem
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") || !isDir(abs, e) {
			continue
		}
		p := loadPlan(filepath.Join(abs, e.Name()), e.Name(), opts)
		s.plans[p.Name] = p
		s.names = append(s.names, p.Name)
	}
	sort.Strings(s.names)
	// Schedules name tasks of any plan, so they are checked once every
	// plan is loaded; a broken schedule makes its plan unavailable.
	s.checkScheduleTasks()
	for _, p := range s.Plans() {
		if p.Available() {
			for name, t := range p.Tasks {
				s.tasks[p.Name+"/"+name] = t
			}
		}
		all = append(all, p.Problems...)
	}
	if len(all) > 0 && !opts.SkipBroken {
		sortProblems(all)
		return nil, &LoadError{Problems: all}
	}
	return s, nil
}

// isDir follows symlinks so that a plans directory may link plans in.
func isDir(root string, e fs.DirEntry) bool {
	if e.IsDir() {
		return true
	}
	if e.Type()&fs.ModeSymlink != 0 {
		st, err := os.Stat(filepath.Join(root, e.Name()))
		return err == nil && st.IsDir()
	}
	return false
}

// Check loads the plans under dir and returns every problem, sorted; an
// unreadable dir is reported as a problem too. For `aurad plan check`.
func Check(dir string) []Problem {
	return CheckWith(dir, Options{})
}

// CheckWith is Check with options (e.g. ActionKnown).
func CheckWith(dir string, opts Options) []Problem {
	opts.SkipBroken = false
	_, err := Load(dir, opts)
	if err == nil {
		return nil
	}
	var le *LoadError
	if errors.As(err, &le) {
		return le.Problems
	}
	return []Problem{{File: dir, Msg: err.Error()}}
}

func loadPlan(dir, name string, opts Options) *Plan {
	p := &Plan{Name: name, Dir: dir, Tasks: map[string]*Task{}, Resources: map[string]int{}, Schedules: map[string]*Schedule{},
		Interrupts: map[string]*Interrupt{}}
	var problems []Problem
	if !segmentPattern.MatchString(name) {
		problems = append(problems, Problem{File: dir, Line: 1, Col: 1, Msg: fmt.Sprintf("bad plan name %q (letters, digits, _ . -)", name)})
	}
	if path := filepath.Join(dir, "plan.yaml"); fileExists(path) {
		loadPlanFile(p, path, opts, &problems)
	}
	tasksDir := filepath.Join(dir, "tasks")
	if st, err := os.Stat(tasksDir); err != nil || !st.IsDir() {
		problems = append(problems, Problem{File: dir, Line: 1, Col: 1, Msg: "plan has no tasks/ directory"})
	} else {
		loadTasks(p, tasksDir, opts, &problems)
	}
	if path := filepath.Join(dir, "states_map.yaml"); fileExists(path) {
		p.StateMap = loadStateMap(p, path, &problems)
		checkScopePool(p.StateMap, opts, &problems)
	}
	if path := scheduleFile(dir); fileExists(path) {
		loadSchedules(p, path, &problems)
	}
	if path := interruptFile(dir); fileExists(path) {
		loadInterrupts(p, path, opts, &problems)
	}
	for _, name := range sortedTaskNames(p) {
		t := p.Tasks[name]
		if st := t.Meta.RequiresInitialState; st != "" {
			if p.StateMap == nil {
				problems = append(problems, Problem{File: t.File, Line: t.reqStateLine, Col: t.reqStateCol, Msg: fmt.Sprintf("requires_initial_state %q but the plan has no states_map.yaml", st)})
			} else if _, ok := p.StateMap.States[st]; !ok {
				problems = append(problems, Problem{File: t.File, Line: t.reqStateLine, Col: t.reqStateCol, Msg: fmt.Sprintf("requires_initial_state %q is not a state in states_map.yaml", st)})
			} else if pr := checkScopedTask(p, t); pr != nil {
				problems = append(problems, *pr)
			}
		}
	}
	sortProblems(problems)
	p.Problems = problems
	return p
}

func sortedTaskNames(p *Plan) []string {
	names := make([]string, 0, len(p.Tasks))
	for n := range p.Tasks {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func loadPlanFile(p *Plan, path string, opts Options, problems *[]Problem) {
	f, body := parseYAML(path, problems)
	if body == nil {
		return
	}
	fs, ok := f.fields(body, "plan.yaml", planKeys...)
	if !ok {
		return
	}
	if mv := fs["title"]; mv != nil {
		p.Title, _ = f.str(mv.Value, "title")
	}
	if mv := fs["description"]; mv != nil {
		p.Description, _ = f.str(mv.Value, "description")
	}
	if mv := fs["resources"]; mv != nil && !isNull(mv.Value) {
		es, _ := f.entries(mv.Value, "resources")
		for _, e := range es {
			n, ok := f.integer(e.Value, "resource limit")
			if !ok {
				continue
			}
			if n <= 0 || n > 1<<31 {
				f.addAt(e.Value, "resource %q: limit must be a positive integer", keyName(e))
				continue
			}
			if keyName(e) == "" {
				f.addAt(e.Key, "empty resource name")
				continue
			}
			p.Resources[keyName(e)] = int(n)
		}
	}
	if mv := fs["http"]; mv != nil && !isNull(mv.Value) {
		hs, ok := f.fields(mv.Value, "http", httpKeys...)
		if !ok {
			return
		}
		if av := hs["allow_hosts"]; av != nil && !isNull(av.Value) {
			seq, ok := f.resolve(av.Value).(*ast.SequenceNode)
			if !ok {
				f.addAt(av.Value, "http.allow_hosts must be a list of hosts")
				return
			}
			for _, it := range seq.Values {
				h, ok := f.str(it, "http.allow_hosts item")
				if !ok {
					continue
				}
				if opts.HTTPHostValid != nil {
					if err := opts.HTTPHostValid(h); err != nil {
						f.addAt(it, "http.allow_hosts: %v", err)
						continue
					}
				}
				p.HTTP.AllowHosts = append(p.HTTP.AllowHosts, h)
			}
		}
	}
}

func loadTasks(p *Plan, tasksDir string, opts Options, problems *[]Problem) {
	err := filepath.WalkDir(tasksDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			*problems = append(*problems, Problem{File: path, Line: 1, Col: 1, Msg: err.Error()})
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") && path != tasksDir {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		if strings.HasSuffix(d.Name(), ".yml") {
			*problems = append(*problems, Problem{File: path, Line: 1, Col: 1, Msg: "task files must end in .yaml"})
			return nil
		}
		if !strings.HasSuffix(d.Name(), taskExtension) {
			return nil
		}
		rel, _ := filepath.Rel(tasksDir, path)
		name := strings.TrimSuffix(filepath.ToSlash(rel), taskExtension)
		for _, seg := range strings.Split(name, "/") {
			if !segmentPattern.MatchString(seg) || seg == "." || seg == ".." {
				*problems = append(*problems, Problem{File: path, Line: 1, Col: 1, Msg: fmt.Sprintf("bad task name %q (path segments of letters, digits, _ . -)", name)})
				return nil
			}
		}
		p.Tasks[name] = loadTask(p, name, path, opts, problems)
		return nil
	})
	if err != nil {
		*problems = append(*problems, Problem{File: tasksDir, Line: 1, Col: 1, Msg: err.Error()})
	}
}

func loadStateMap(p *Plan, path string, problems *[]Problem) *StateMap {
	sm := &StateMap{File: path, States: map[string]*State{}, Planning: defaultPlanning}
	f, body := parseYAML(path, problems)
	if body == nil {
		return sm
	}
	fs, ok := f.fields(body, "states_map.yaml", stateMapKeys...)
	if !ok {
		return sm
	}
	taskNode := func(n ast.Node, what string) string {
		name, ok := f.str(n, what)
		if !ok {
			return ""
		}
		if _, exists := p.Tasks[name]; !exists {
			f.addAt(n, "%s: no task %q in plan %s", what, name, p.Name)
		}
		return name
	}
	if mv := fs["states"]; mv == nil {
		f.addAt(body, "states_map.yaml has no states")
	} else {
		es, _ := f.entries(mv.Value, "states")
		for _, e := range es {
			name := keyName(e)
			line, _ := f.pos(e.Key)
			st := &State{Name: name, Line: line}
			sfs, ok := f.fields(e.Value, fmt.Sprintf("state %q", name), stateKeys...)
			if !ok {
				continue
			}
			if c := sfs["check"]; c == nil {
				f.addAt(e.Key, "state %q has no check task", name)
			} else {
				st.Check = taskNode(c.Value, fmt.Sprintf("state %q check", name))
			}
			if v := sfs["priority"]; v != nil {
				n, _ := f.integer(v.Value, "priority")
				st.Priority = int(n)
			}
			if v := sfs["sequential"]; v != nil {
				st.Sequential, _ = f.boolean(v.Value, "sequential")
			}
			if v := sfs["description"]; v != nil {
				f.str(v.Value, "description")
			}
			sm.States[name] = st
		}
	}
	if mv := fs["transitions"]; mv != nil && !isNull(mv.Value) {
		seq, ok := f.resolve(mv.Value).(*ast.SequenceNode)
		if !ok {
			f.addAt(mv.Value, "transitions must be a list")
		} else {
			for _, it := range seq.Values {
				tfs, ok := f.fields(it, "transition", transKeys...)
				if !ok {
					continue
				}
				line, _ := f.pos(it)
				tr := &Transition{Cost: 1, Line: line}
				for _, k := range []string{"from", "to"} {
					v := tfs[k]
					if v == nil {
						f.addAt(it, "transition has no %s", k)
						continue
					}
					s, ok := f.str(v.Value, k)
					if !ok {
						continue
					}
					if _, known := sm.States[s]; !known {
						f.addAt(v.Value, "transition %s: unknown state %q", k, s)
					}
					if k == "from" {
						tr.From = s
					} else {
						tr.To = s
					}
				}
				if v := tfs["task"]; v == nil {
					f.addAt(it, "transition has no task")
				} else {
					tr.Task = taskNode(v.Value, "transition task")
				}
				if v := tfs["cost"]; v != nil {
					if c, ok := f.number(v.Value, "cost"); ok {
						if c < 0 {
							f.addAt(v.Value, "transition cost must not be negative")
						}
						tr.Cost = c
					}
				}
				if v := tfs["description"]; v != nil {
					f.str(v.Value, "description")
				}
				sm.Transitions = append(sm.Transitions, tr)
			}
		}
	}
	if mv := fs["scope"]; mv != nil {
		parseScope(f, sm, mv.Value)
	}
	if mv := fs["planning"]; mv != nil && !isNull(mv.Value) {
		pfs, ok := f.fields(mv.Value, "planning", planningKeys...)
		if ok {
			count := func(k string, dst *int) {
				if v := pfs[k]; v != nil {
					if n, ok := f.integer(v.Value, k); ok {
						if n < 0 || n > 1000 {
							f.addAt(v.Value, "planning.%s must be between 0 and 1000", k)
						} else {
							*dst = int(n)
						}
					}
				}
			}
			count("max_replans", &sm.Planning.MaxReplans)
			count("verify_retries", &sm.Planning.VerifyRetries)
			if v := pfs["replan_delay"]; v != nil {
				if d, ok := f.duration(v.Value, "planning.replan_delay"); ok {
					sm.Planning.ReplanDelay = d
				}
			}
			if v := pfs["verify_delay"]; v != nil {
				if d, ok := f.duration(v.Value, "planning.verify_delay"); ok {
					sm.Planning.VerifyDelay = d
				}
			}
		}
	}
	for _, st := range sm.States {
		if t := p.Tasks[st.Check]; t != nil && t.Meta.RequiresInitialState != "" {
			*problems = append(*problems, Problem{File: t.File, Line: t.reqStateLine, Col: t.reqStateCol, Msg: fmt.Sprintf("check task %q must not have requires_initial_state", st.Check)})
		}
	}
	return sm
}

// Task returns the task with the given id ("plan/name", where name may
// have several path segments).
func (s *Set) Task(id string) (*Task, error) {
	if t, ok := s.tasks[id]; ok {
		return t, nil
	}
	planName, name, err := SplitTaskID(id)
	if err != nil {
		return nil, err
	}
	p, ok := s.plans[planName]
	if !ok {
		return nil, fmt.Errorf("%w %q: no plan %q%s", ErrUnknownTask, id, planName, suggest.Hint(id, s.taskIDs()))
	}
	if !p.Available() {
		return nil, fmt.Errorf("task %q: %w: %s", id, ErrPlanUnavailable, p.Problems[0])
	}
	t, ok := p.Tasks[name]
	if !ok {
		if hint := suggest.Hint(id, s.taskIDs()); hint != "" {
			return nil, fmt.Errorf("%w %q%s", ErrUnknownTask, id, hint)
		}
		return nil, fmt.Errorf("%w %q (plan %q has %s)", ErrUnknownTask, id, planName, taskList(p))
	}
	return t, nil
}

// taskIDs is every task of the available plans, for "did you mean".
func (s *Set) taskIDs() []string {
	ids := make([]string, 0, len(s.tasks))
	for id := range s.tasks {
		ids = append(ids, id)
	}
	return ids
}

// taskList names a plan's tasks for an error message, the first few of a
// long list.
func taskList(p *Plan) string {
	if len(p.Tasks) == 0 {
		return "no tasks"
	}
	names := make([]string, 0, len(p.Tasks))
	for n := range p.Tasks {
		names = append(names, n)
	}
	sort.Strings(names)
	const most = 10
	if len(names) > most {
		return fmt.Sprintf("tasks %s, and %d more", strings.Join(names[:most], ", "), len(names)-most)
	}
	return "tasks " + strings.Join(names, ", ")
}

// SplitTaskID validates id and splits it into plan and task name.
func SplitTaskID(id string) (planName, name string, err error) {
	segs := strings.Split(id, "/")
	if len(segs) < 2 {
		return "", "", fmt.Errorf("%w %q: want plan/task", ErrBadTaskName, id)
	}
	for _, seg := range segs {
		if !segmentPattern.MatchString(seg) || seg == "." || seg == ".." {
			return "", "", fmt.Errorf("%w %q: segments are letters, digits, _ . - (no empty, . or ..)", ErrBadTaskName, id)
		}
	}
	return segs[0], strings.Join(segs[1:], "/"), nil
}

func isDirPath(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}
