package execmgr

import (
	"context"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/aura-dev/aura/internal/plan"
	"github.com/aura-dev/aura/internal/planner"
	"github.com/aura-dev/aura/internal/store"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// LastStateDB keeps last known states across restarts (store.LastStates).
type LastStateDB interface {
	Put(ctx context.Context, ls store.LastState) error
	All(ctx context.Context) ([]store.LastState, error)
}

// stateKey names whose state a task's planning reads and changes: its plan,
// and for a plan whose states_map.yaml is scoped to a pool, the instance
// of that pool the task holds.
type stateKey struct{ plan, pool, instance string }

// lastStates is the last known state of every plan (per instance, for a
// plan scoped to a pool). Planning writes it as it establishes or loses a
// state; a task whose steps ran on an instance and failed, was
// interrupted or did not plan makes it unknown. It is a hint: admission prefers an instance already in the
// state a task requires, and planning still detects the state with the
// plan's checks before relying on it. The map answers admission without
// I/O; every change is written through to db (when set) on the goroutine
// that made it, so it outlives a restart.
type lastStates struct {
	// immutable after construction
	db  LastStateDB // nil: in memory only
	log *slog.Logger
	now func() time.Time

	// writing is held by set across its update and its store write, so
	// the store sees changes in the order the map does (two tasks of a
	// plan-wide state may set it at once). Admission never takes it.
	writing sync.Mutex

	mu    sync.Mutex // guards the fields below; never held while calling out
	known map[stateKey]store.LastState
	// dist caches, per plan and target, each state's path cost to the
	// target, for the state map it was computed from (plan sets are
	// immutable, so a reload brings a new pointer and a new computation).
	dist map[distKey]distances
}

type distKey struct{ plan, target string }

type distances struct {
	sm   *plan.StateMap
	cost map[string]float64
}

func newLastStates(db LastStateDB, log *slog.Logger, now func() time.Time) *lastStates {
	return &lastStates{db: db, log: log, now: now, known: map[stateKey]store.LastState{}, dist: map[distKey]distances{}}
}

// load reads what the store kept from earlier runs.
func (l *lastStates) load(ctx context.Context) error {
	if l.db == nil {
		return nil
	}
	all, err := l.db.All(ctx)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ls := range all {
		l.known[stateKey{ls.Plan, ls.Pool, ls.Instance}] = ls
	}
	return nil
}

// set records that k is in state ("" for unknown) because of task.
func (l *lastStates) set(k stateKey, state, task string) {
	ls := store.LastState{Plan: k.plan, Pool: k.pool, Instance: k.instance, State: state, TaskID: task, Time: l.now()}
	l.writing.Lock()
	defer l.writing.Unlock()
	l.mu.Lock()
	if old, ok := l.known[k]; ok && old.State == state && old.TaskID == task {
		l.mu.Unlock()
		return // the same fact again (detection, then reached)
	}
	l.known[k] = ls
	l.mu.Unlock()
	if l.db == nil {
		return
	}
	// A lost write costs a preference, never correctness: log and go on.
	if err := l.db.Put(context.Background(), ls); err != nil {
		l.log.Warn("recording a last known state failed", "plan", k.plan, "instance", k.instance, "state", state, "task_id", task, "err", err)
	}
}

// get returns what is known of k.
func (l *lastStates) get(k stateKey) (store.LastState, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ls, ok := l.known[k]
	return ls, ok
}

// ofInstance returns the last known states of one instance of pool, one
// per plan, sorted by plan.
func (l *lastStates) ofInstance(pool, instance string) []store.LastState {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []store.LastState
	for k, ls := range l.known {
		if k.pool == pool && k.instance == instance {
			out = append(out, ls)
		}
	}
	slices.SortFunc(out, func(a, b store.LastState) int { return strings.Compare(a.Plan, b.Plan) })
	return out
}

// unrankable is the rank of an instance whose state is unknown or cannot
// reach the target: after every instance whose state is known to reach it.
const unrankable = math.MaxInt32

// rank is the admission preference of instance of pool for a task that
// requires target of sm (scoped to pool): the path cost from the
// instance's last known state to target, in thousandths, so that an
// instance already there ranks 0. Lower is better.
func (l *lastStates) rank(planName string, sm *plan.StateMap, target, pool, instance string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	ls, ok := l.known[stateKey{planName, pool, instance}]
	if !ok || ls.State == "" {
		return unrankable
	}
	if ls.State == target {
		return 0
	}
	dk := distKey{planName, target}
	dist, ok := l.dist[dk]
	if !ok || dist.sm != sm {
		// Pure and small (a plan's state map): once per map and target.
		d, err := planner.DistancesTo(sm, target)
		if err != nil {
			d = map[string]float64{}
		}
		dist = distances{sm, d}
		l.dist[dk] = dist
	}
	cost, ok := dist.cost[ls.State]
	if !ok || math.IsInf(cost, 1) || cost*1000 >= unrankable-1 {
		return unrankable
	}
	return int(math.Round(cost * 1000))
}

// stateKey is whose state r's planning reads and changes; ok is false when
// r's plan has no state map, or its state is per instance and r holds no
// instance of the pool.
func (r *run) stateKey() (stateKey, bool) {
	sm := r.def.Plan.StateMap
	if sm == nil {
		return stateKey{}, false
	}
	k := stateKey{plan: r.def.Plan.Name}
	if sm.PerInstance() {
		k.pool = sm.Scope
		k.instance = r.boundInstance(sm.Scope)
		if k.instance == "" {
			return stateKey{}, false
		}
	}
	return k, true
}

// notePlanning records what a planning event says about the state.
func (r *run) notePlanning(ev planner.Event) {
	k, ok := r.stateKey()
	if !ok {
		return
	}
	switch ev.Kind {
	case planner.EventDetect:
		r.m.states.set(k, ev.From, r.id)
	case planner.EventTransitionStart, planner.EventTransitionFailed:
		// Under way or failed, the instance is between states: a crash
		// now leaves it unknown, not in the state it was leaving.
		r.m.states.set(k, "", r.id)
	case planner.EventTransitionOK, planner.EventReached:
		r.m.states.set(k, ev.To, r.id)
	}
}

// noteEnd makes the state of r's plan (or instance) unknown once r's steps
// ran and r ended with status, unless r succeeded after planning brought
// it into a state: steps that failed may have left it anywhere, and a task
// that did not plan (it requires no state, or skipped planning) may have
// changed it on purpose (a lock task). Planning failures were recorded by
// planning.
func (r *run) noteEnd(status aurav1.TaskStatus) {
	k, ok := r.stateKey()
	if !ok {
		return
	}
	r.mu.Lock()
	started := r.snap != nil && r.snap.StartedAt != nil
	planned := r.snap != nil && !r.snap.SkipPlanning && r.def.Meta.RequiresInitialState != ""
	r.mu.Unlock()
	if !started {
		return
	}
	if status == aurav1.TaskStatus_TASK_STATUS_SUCCEEDED && planned {
		return
	}
	r.m.states.set(k, "", r.id)
}

// preference is admission's instance preference: among free instances of
// pool, one whose last known state already is (or is cheapest to bring
// into) the state the task requires. Tasks that require no state of a plan
// scoped to pool rank every instance alike (least recently used decides).
// It runs inside Admit, with m.mu held: it reads the live registry and
// takes only lastStates' own lock.
func (m *Manager) preference(id, pool, instance string) int {
	r := m.live[id]
	if r == nil || r.def == nil || r.def.Plan == nil {
		return 0
	}
	sm, target := r.def.Plan.StateMap, r.def.Meta.RequiresInitialState
	if target == "" || !sm.PerInstance() || sm.Scope != pool {
		return 0
	}
	return m.states.rank(r.def.Plan.Name, sm, target, pool, instance)
}

// boundInstance is the instance of pool that r holds, or "".
func (r *run) boundInstance(pool string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.boundResources()[pool]
}

// InstanceStates fills in, for ListResources, each pool instance's last
// known state per plan; an unknown state is "".
func (m *Manager) InstanceStates(_ context.Context, rs []*aurav1.Resource) {
	for _, res := range rs {
		if res.Instance == "" {
			continue
		}
		for _, ls := range m.states.ofInstance(res.Pool, res.Instance) {
			res.States = append(res.States, &aurav1.InstanceState{Plan: ls.Plan, State: ls.State, Time: timestamppb.New(ls.Time)})
		}
	}
}
