package plan

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
	_ "time/tzdata" // schedules name IANA zones; a host without zoneinfo still has them

	"github.com/adhocore/gronx"
	"github.com/goccy/go-yaml/ast"

	"github.com/aura-dev/aura/internal/template"
)

// Overlap policies: what a fire does while the schedule's previous task
// has not finished.
const (
	OverlapSkip           = "skip"            // the fire is skipped
	OverlapBufferOne      = "buffer_one"      // the fire waits for it; at most one waits
	OverlapAllow          = "allow"           // the fire runs beside it
	OverlapCancelPrevious = "cancel_previous" // it is cancelled and the fire runs
)

// Overlaps lists the overlap policies, default first.
var Overlaps = []string{OverlapSkip, OverlapBufferOne, OverlapAllow, OverlapCancelPrevious}

// TerminalStatuses are the status names an `after` trigger may follow.
var TerminalStatuses = []string{"succeeded", "failed", "timed_out", "cancelled", "planning_failed", "interrupted"}

var (
	scheduleKeys = []string{"task", "cron", "every", "timezone", "jitter", "inputs", "overlap", "catch_up", "paused", "after"}
	afterKeys    = []string{"task", "status"}
)

// Schedule is one entry of a plan's schedules.yaml: a timed schedule (Cron
// or Every) or an event trigger (After).
type Schedule struct {
	// ID is "<plan>/<name>"; File is schedules.yaml (absolute) and Line the
	// entry's line there.
	ID, Name, File string
	Line           int
	Plan           *Plan
	Task           string // the task fired, "plan/task"

	Cron  string        // a cron expression (5 fields, or 6 with seconds)
	Every time.Duration // or a fixed interval of real time
	// Timezone is the IANA zone Cron is read in; "" is the daemon's
	// default zone (aurad --timezone).
	Timezone string
	Location *time.Location // nil when Timezone is ""

	Jitter  time.Duration // each fire is delayed by up to this, the same for a tick on every start
	Inputs  template.Value
	Overlap string        // one of Overlaps
	CatchUp time.Duration // after downtime, fire missed ticks no older than this
	Paused  bool

	After *AfterTrigger // set for event triggers
}

// AfterTrigger fires a schedule when a task of Task ends in one of
// Statuses (lower-case TaskStatus names without the prefix).
type AfterTrigger struct {
	Task     string
	Statuses []string
}

// Timed reports whether the schedule fires on ticks rather than events.
func (s *Schedule) Timed() bool { return s.After == nil }

// Schedule returns a schedule by ID ("<plan>/<name>").
func (s *Set) Schedule(id string) (*Schedule, bool) {
	planName, name, ok := strings.Cut(id, "/")
	if !ok {
		return nil, false
	}
	p, ok := s.plans[planName]
	if !ok || !p.Available() {
		return nil, false
	}
	sc, ok := p.Schedules[name]
	return sc, ok
}

// Schedules returns the schedules of every available plan, by ID.
func (s *Set) Schedules() []*Schedule {
	var out []*Schedule
	for _, p := range s.Plans() {
		if !p.Available() {
			continue
		}
		for _, sc := range p.Schedules {
			out = append(out, sc)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// loadSchedules reads plans/<plan>/schedules.yaml: everything that can be
// checked without the other plans. checkScheduleTasks does the rest.
func loadSchedules(p *Plan, path string, problems *[]Problem) {
	f, body := parseYAML(path, problems)
	if body == nil {
		return
	}
	top, ok := f.fields(body, "schedules.yaml", "schedules")
	if !ok {
		return
	}
	mv := top["schedules"]
	if mv == nil || isNull(mv.Value) {
		return
	}
	es, ok := f.entries(mv.Value, "schedules")
	if !ok {
		return
	}
	for _, e := range es {
		name := keyName(e)
		if !segmentPattern.MatchString(name) {
			f.addAt(e.Key, "bad schedule name %q (letters, digits, _ . -)", name)
			continue
		}
		line, _ := f.pos(e.Key)
		sc := &Schedule{ID: p.Name + "/" + name, Name: name, File: path, Line: line, Plan: p}
		if f.schedule(sc, e) {
			p.Schedules[name] = sc
		}
	}
}

// schedule reads one entry; false when it has a problem (recorded).
func (f *yamlFile) schedule(sc *Schedule, e *ast.MappingValueNode) bool {
	before := len(*f.problems)
	fs, ok := f.fields(e.Value, "schedule "+sc.Name, scheduleKeys...)
	if !ok {
		return false
	}
	str := func(key string) (string, *ast.MappingValueNode) {
		mv := fs[key]
		if mv == nil || isNull(mv.Value) {
			return "", nil
		}
		s, _ := f.str(mv.Value, key)
		return s, mv
	}
	dur := func(key string) time.Duration {
		if mv := fs[key]; mv != nil && !isNull(mv.Value) {
			d, _ := f.duration(mv.Value, key)
			return d
		}
		return 0
	}
	task, taskMV := str("task")
	if taskMV == nil {
		f.addAt(e.Key, "schedule %s: task is required (the task to submit, \"plan/task\")", sc.Name)
	}
	sc.Task = task
	cron, cronMV := str("cron")
	sc.Every = dur("every")
	everyMV := fs["every"]
	sc.Jitter = dur("jitter")
	sc.CatchUp = dur("catch_up")
	if mv := fs["paused"]; mv != nil && !isNull(mv.Value) {
		sc.Paused, _ = f.boolean(mv.Value, "paused")
	}
	sc.Overlap = OverlapSkip
	if ov, mv := str("overlap"); mv != nil {
		if !slices.Contains(Overlaps, ov) {
			f.addAt(mv.Value, "overlap %q: want one of %s", ov, strings.Join(Overlaps, ", "))
		}
		sc.Overlap = ov
	}
	if tz, mv := str("timezone"); mv != nil {
		loc, err := time.LoadLocation(tz)
		if err != nil || tz == "" || tz == "Local" {
			f.addAt(mv.Value, "timezone %q is not an IANA time zone (e.g. UTC, Europe/Berlin, America/New_York)", tz)
		} else {
			sc.Timezone, sc.Location = tz, loc
		}
	}
	if mv := fs["after"]; mv != nil && !isNull(mv.Value) {
		sc.After = f.afterTrigger(mv)
	}
	switch n := btoi(cronMV != nil) + btoi(everyMV != nil) + btoi(sc.After != nil || fs["after"] != nil); {
	case n == 0:
		f.addAt(e.Key, "schedule %s: give one of cron, every or after", sc.Name)
	case n > 1:
		f.addAt(e.Key, "schedule %s: give only one of cron, every and after", sc.Name)
	}
	if cronMV != nil {
		if err := CheckCron(cron); err != nil {
			f.addAt(cronMV.Value, "cron %q: %v", cron, err)
		}
		sc.Cron = cron
	}
	if everyMV != nil && sc.Every <= 0 && len(*f.problems) == before {
		f.addAt(everyMV.Value, "every must be positive (e.g. 30s, 15m, 1h)")
	}
	if everyMV != nil && sc.Every > 0 && sc.Every < time.Second {
		f.addAt(everyMV.Value, "every %s is below the 1s resolution of schedules", sc.Every)
	}
	if sc.After != nil {
		for _, k := range []string{"timezone", "jitter", "catch_up"} {
			if mv := fs[k]; mv != nil {
				f.addAt(mv.Key, "%s applies to timed schedules (cron or every), not to an after trigger", k)
			}
		}
	}
	if mv := fs["inputs"]; mv != nil && !isNull(mv.Value) {
		if _, ok := f.resolve(mv.Value).(*ast.MappingNode); !ok {
			f.addAt(mv.Value, "inputs must be a mapping of input names to values")
		} else {
			sc.Inputs = f.value(mv.Value)
			f.checkScheduleRefs(sc)
		}
	}
	return len(*f.problems) == before
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (f *yamlFile) afterTrigger(mv *ast.MappingValueNode) *AfterTrigger {
	fs, ok := f.fields(mv.Value, "after", afterKeys...)
	if !ok {
		return nil
	}
	at := &AfterTrigger{Statuses: []string{"succeeded"}}
	if t := fs["task"]; t == nil {
		f.addAt(mv.Key, "after needs task: the task whose end fires this schedule")
	} else {
		at.Task, _ = f.str(t.Value, "after.task")
	}
	if st := fs["status"]; st != nil && !isNull(st.Value) {
		var list []string
		if _, isSeq := f.resolve(st.Value).(*ast.SequenceNode); isSeq {
			list, _ = f.stringList(st.Value, "after.status")
		} else if s, ok := f.str(st.Value, "after.status"); ok {
			list = []string{s}
		}
		for _, s := range list {
			if !slices.Contains(TerminalStatuses, s) {
				f.addAt(st.Value, "after.status %q: want one of %s", s, strings.Join(TerminalStatuses, ", "))
			}
		}
		if len(list) > 0 {
			at.Statuses = list
		}
	}
	return at
}

// checkScheduleRefs allows an after trigger's inputs to read trigger (the
// task that ended) and nothing else; a timed schedule's inputs read nothing.
func (f *yamlFile) checkScheduleRefs(sc *Schedule) {
	for _, tp := range template.Templates(sc.Inputs) {
		loc, r := tp.Location(), tp.Refs()
		for _, name := range r.Names {
			switch {
			case name == "trigger" && sc.After == nil:
				f.add(loc.Line, loc.Col, "trigger.task is only set for an after trigger; a cron or every schedule's inputs are fixed")
			case name != "trigger":
				f.add(loc.Line, loc.Col, "a schedule's inputs may read trigger.task (result, status, inputs), not %s", name)
			}
		}
	}
}

// CheckCron reports whether expr is a cron expression Aura can fire: five
// fields (minute hour day-of-month month day-of-week), six with seconds
// first, or a macro such as @daily.
func CheckCron(expr string) error {
	segs, err := gronx.Segments(expr)
	if err != nil {
		return err
	}
	if len(segs) > 6 {
		return errors.New("a year field is not supported (five fields, or six with seconds first)")
	}
	if !gronx.IsValid(expr) {
		return errors.New("not a valid cron expression (minute hour day-of-month month day-of-week, e.g. \"30 2 * * *\")")
	}
	return nil
}

// checkScheduleTasks checks what a schedule names in other plans: the task
// it fires (and its inputs) and the task an after trigger follows. A
// problem makes the schedule's plan unavailable, as any other does.
func (s *Set) checkScheduleTasks() {
	for _, p := range s.Plans() {
		if len(p.Schedules) == 0 {
			continue
		}
		var problems []Problem
		add := func(sc *Schedule, format string, args ...any) {
			problems = append(problems, Problem{File: sc.File, Line: sc.Line, Col: 1, Msg: fmt.Sprintf("schedule %s: ", sc.Name) + fmt.Sprintf(format, args...)})
		}
		names := mapsKeys(p.Schedules)
		sort.Strings(names)
		for _, name := range names {
			sc := p.Schedules[name]
			if t, err := s.scheduleTask(p, sc.Task); err != nil {
				add(sc, "task: %v", err)
			} else if t != nil {
				checkScheduleInputs(sc, t, add)
			}
			if sc.After != nil && sc.After.Task != "" {
				if _, err := s.scheduleTask(p, sc.After.Task); err != nil {
					add(sc, "after.task: %v", err)
				}
			}
		}
		for _, name := range names {
			if sc := p.Schedules[name]; sc.After != nil {
				if loop := s.afterLoop(sc); loop != nil {
					add(sc, "after triggers fire each other for ever: %s (use every or cron for work that repeats)", strings.Join(loop, " -> "))
				}
			}
		}
		if len(problems) > 0 {
			p.Problems = append(p.Problems, problems...)
			sortProblems(p.Problems)
		}
	}
}

// afterLoop returns the tasks of a chain of after triggers that starts
// and ends with the task sc fires (its end fires sc again), or nil.
func (s *Set) afterLoop(sc *Schedule) []string {
	// Which tasks each task's end fires, through every plan's triggers.
	fires := map[string][]string{}
	for _, p := range s.plans {
		for _, o := range p.Schedules {
			if o.After != nil {
				fires[o.After.Task] = append(fires[o.After.Task], o.Task)
			}
		}
	}
	seen := map[string]bool{}
	var path []string
	var walk func(task string) bool
	walk = func(task string) bool {
		path = append(path, task)
		if task == sc.After.Task && len(path) > 1 {
			return true
		}
		if !seen[task] {
			seen[task] = true
			for _, next := range fires[task] {
				if walk(next) {
					return true
				}
			}
		}
		path = path[:len(path)-1]
		return false
	}
	path = []string{sc.After.Task}
	if walk(sc.Task) {
		return path
	}
	return nil
}

// scheduleTask finds a task named by a schedule: nil without error when
// its plan is unavailable (that plan's own problems say why).
func (s *Set) scheduleTask(own *Plan, id string) (*Task, error) {
	planName, name, err := SplitTaskID(id)
	if err != nil {
		return nil, fmt.Errorf("%w (want \"plan/task\")", err)
	}
	p, ok := s.plans[planName]
	if !ok {
		return nil, fmt.Errorf("%w %q: no plan %q (plans: %s)", ErrUnknownTask, id, planName, strings.Join(s.names, ", "))
	}
	t, ok := p.Tasks[name]
	if !ok {
		if !p.Available() && p != own {
			return nil, nil // its task file may be the broken one
		}
		return nil, fmt.Errorf("%w %q (plan %q has %s)", ErrUnknownTask, id, planName, taskList(p))
	}
	return t, nil
}

// checkScheduleInputs checks the inputs a schedule gives its task: names
// it declares, written values of the declared types, and every required
// input given (a templated one is checked when it fires).
func checkScheduleInputs(sc *Schedule, t *Task, add func(*Schedule, string, ...any)) {
	given := map[string]any{}
	templated := map[string]bool{}
	if m, ok := sc.Inputs.(*template.Map); ok {
		for i, k := range m.Keys {
			if c, ok := m.Values[i].(template.Const); ok {
				given[k] = c.V
			} else {
				templated[k] = true
				if !t.hasInput(k) {
					add(sc, "inputs: unknown input %q (task %s takes %s)", k, t.ID, t.inputNames())
				}
			}
		}
	} else if c, ok := sc.Inputs.(template.Const); ok && c.V != nil {
		given, _ = c.V.(map[string]any)
	}
	if _, err := t.ResolveInputs(given); err != nil {
		var ie *InputError
		if errors.As(err, &ie) && templated[ie.Name] {
			return
		}
		add(sc, "inputs: %v", err)
	}
}

func mapsKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// scheduleFile is where a plan's schedules live.
func scheduleFile(planDir string) string { return filepath.Join(planDir, "schedules.yaml") }
