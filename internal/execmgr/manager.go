package execmgr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/aura-dev/aura/internal/admission"
	"github.com/aura-dev/aura/internal/cluster"
	"github.com/aura-dev/aura/internal/engine"
	"github.com/aura-dev/aura/internal/hooks"
	"github.com/aura-dev/aura/internal/plan"
	"github.com/aura-dev/aura/internal/resources"
	"github.com/aura-dev/aura/internal/store"
	"github.com/aura-dev/aura/internal/validation"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// Config wires a Manager. Everything is required unless marked optional.
type Config struct {
	Plans  *plan.Set
	Store  store.DB
	Hooks  *hooks.Registry
	Engine *engine.Runner

	GlobalLimit     int            // default 32
	ResourceLimits  map[string]int // daemon config; wins over plan.yaml and tags
	StarvationBound int            // optional; admission's default when 0
	MaxTaskDepth    int            // run_task nesting bound; default 8
	// MaxQueued bounds the tasks waiting for admission, all principals
	// together, and MaxQueuedPerPrincipal those of one principal; a
	// submission beyond either is refused with a QueueFullError. 0 takes
	// DefaultMaxQueued and DefaultMaxQueuedPerPrincipal; negative is
	// unbounded. Tasks recovered from the store count but are never refused.
	MaxQueued, MaxQueuedPerPrincipal int

	// Resources are the daemon's declared counting resources and pools;
	// their limits win like ResourceLimits (which wins over them). Optional.
	Resources *resources.Declarations
	// Prefer ranks a pool's free instances for a waiting task (see
	// admission.Preference); optional: by default an instance whose last
	// known state is (or is cheapest to bring into) the state the task
	// requires comes first, then the least recently used.
	Prefer admission.Preference

	Logger   *slog.Logger      // optional
	Now      func() time.Time  // optional
	OnSubmit func(task string) // optional: hears of every accepted (not deduplicated) submission
	// Tracer makes a span per task (from Submit to its end) with children
	// for admission, planning and each step attempt; optional (no spans).
	Tracer trace.Tracer
	// Ledger holds the slots of the SharedResources keys, whose holders
	// may live in other processes (a cluster's semaphores); a task that
	// needs one starts only once the Ledger grants it. Optional: without
	// one every key is counted by this daemon alone, and SharedResources
	// must be empty.
	Ledger          admission.Ledger
	SharedResources []string
	// LastStates keeps each plan's (and pool instance's) last known state
	// across restarts; optional (kept in memory only).
	LastStates LastStateDB
	// Node, when set, is this daemon's node name in a cluster: task ids
	// are then cluster.TaskID(Node, uuid), so that any node can tell which
	// node owns a task. Outside a cluster ("") ids are bare UUIDv7s.
	Node string
}

// taskID is the id of a new task whose store id is local.
func (m *Manager) taskID(local string) string {
	if m.node == "" {
		return local
	}
	return cluster.TaskID(m.node, local)
}

// Manager is the ExecutionManager.
type Manager struct {
	store  store.DB
	hooks  *hooks.Registry
	engine *engine.Runner
	log    *slog.Logger
	now    func() time.Time

	maxDepth   int
	node       string // Config.Node
	onSubmit   func(task string)
	tracer     trace.Tracer
	tracing    bool           // a Tracer was configured; without one no span is started
	daemonLims map[string]int // declared resources' limits, then flagLims; under mu
	flagLims   map[string]int // Config.ResourceLimits
	// decl are the declared resources; SetResources swaps them.
	decl atomic.Pointer[resources.Declarations]

	plans  atomic.Pointer[plan.Set]
	states *lastStates // last known states; has its own lock

	wg    sync.WaitGroup  // one per admitted task, until its end is over (effSettle)
	tasks *taskGoroutines // runs admitted tasks; shut down by Shutdown

	ledger        admission.Ledger // nil: no shared keys
	ledgerBackoff time.Duration    // the first wait before asking the Ledger again
	claims        sync.WaitGroup   // one per claim or release in flight with the Ledger
	// ledgerCtx bounds the releases given back to the Ledger (not the
	// tasks, whose lifecycle stops them): Shutdown ends it once the drain
	// is over, so a release that keeps failing does not outlive the daemon.
	ledgerCtx  context.Context
	stopLedger context.CancelFunc

	mu       sync.Mutex // guards everything below
	queue    *admission.Queue
	claiming map[string]*run     // tasks in Claiming: the drain stops their claims
	shared   map[string][]string // running tasks' shared keys, to give back
	refused  map[string][]string // queued tasks the Ledger refused: their shared keys, to withdraw from
	// freed counts ResourcesFreed calls. A claim notes it when it asks the
	// Ledger: a slot given back while the question was out frees nobody
	// the queue knows of yet, so a refusal that comes back after it is
	// tried again at once instead of waiting for the next release.
	freed    uint64
	backlog  *backlog
	live     map[string]*run             // tasks not yet terminal in this process
	draining atomic.Bool                 // set under mu; Submit reads it without
	finished map[aurav1.TaskStatus]int64 // terminal outcomes since start
}

// New returns a Manager. Call Recover before serving, Shutdown at the end.
func New(cfg Config) (*Manager, error) {
	if cfg.Plans == nil || cfg.Store == nil || cfg.Hooks == nil || cfg.Engine == nil {
		return nil, errors.New("execmgr: Plans, Store, Hooks and Engine are required")
	}
	if cfg.Ledger == nil && len(cfg.SharedResources) > 0 {
		return nil, errors.New("execmgr: SharedResources need a Ledger to count them")
	}
	if cfg.Node != "" {
		if err := cluster.CheckNodeName(cfg.Node); err != nil {
			return nil, fmt.Errorf("execmgr: %w", err)
		}
	}
	if cfg.GlobalLimit <= 0 {
		cfg.GlobalLimit = 32
	}
	if cfg.MaxTaskDepth <= 0 {
		cfg.MaxTaskDepth = 8
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	tracing := cfg.Tracer != nil
	if !tracing {
		cfg.Tracer = noop.NewTracerProvider().Tracer("")
	}
	m := &Manager{
		store:      cfg.Store,
		hooks:      cfg.Hooks,
		engine:     cfg.Engine,
		log:        cfg.Logger,
		now:        cfg.Now,
		maxDepth:   cfg.MaxTaskDepth,
		node:       cfg.Node,
		onSubmit:   cfg.OnSubmit,
		tracer:     cfg.Tracer,
		tracing:    tracing,
		daemonLims: cfg.Resources.Limits(),
		flagLims:   maps.Clone(cfg.ResourceLimits),
		live:       map[string]*run{},
		finished:   map[aurav1.TaskStatus]int64{},

		ledger:        cfg.Ledger,
		ledgerBackoff: defaultLedgerBackoff,
		claiming:      map[string]*run{},
		shared:        map[string][]string{},
		refused:       map[string][]string{},
	}
	m.states = newLastStates(cfg.LastStates, cfg.Logger, cfg.Now)
	m.backlog = newBacklog(boundOr(cfg.MaxQueued, DefaultMaxQueued), boundOr(cfg.MaxQueuedPerPrincipal, DefaultMaxQueuedPerPrincipal))
	m.ledgerCtx, m.stopLedger = context.WithCancel(context.Background())
	m.tasks = newTaskGoroutines()
	maps.Copy(m.daemonLims, cfg.ResourceLimits)
	m.decl.Store(cfg.Resources)
	m.plans.Store(cfg.Plans)
	if cfg.Prefer == nil {
		cfg.Prefer = m.preference
	}
	m.queue = admission.NewQueue(admission.Config{
		GlobalLimit:     cfg.GlobalLimit,
		Limits:          m.limits(cfg.Plans),
		StarvationBound: cfg.StarvationBound,
		Shared:          sharedSet(cfg.SharedResources),
		Pools:           cfg.Resources.AdmissionPools(),
		Prefer:          cfg.Prefer,
	})
	return m, nil
}

// boundOr reads a bound: 0 is the default, negative is none.
func boundOr(n, def int) int {
	switch {
	case n == 0:
		return def
	case n < 0:
		return 0
	}
	return n
}

// limits merges resource limits: plan.yaml resources, then the daemon's own
// config, which wins.
func (m *Manager) limits(set *plan.Set) map[string]int {
	out := map[string]int{}
	for _, p := range set.Plans() {
		for k, v := range p.Resources {
			if old, ok := out[k]; ok && old != v {
				m.log.Warn("plans disagree on a resource limit; using the smaller", "resource", k, "limits", []int{old, v})
				v = min(old, v)
			}
			out[k] = v
		}
	}
	maps.Copy(out, m.daemonLims)
	return out
}

// Plans returns the current plan set.
func (m *Manager) Plans() *plan.Set { return m.plans.Load() }

// SetPlans swaps in a new plan set atomically. Running tasks keep the
// definition they started with.
func (m *Manager) SetPlans(set *plan.Set) {
	m.plans.Store(set)
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.queue.Stats()
	m.queue.SetLimits(st.GlobalLimit, m.limits(set))
	m.tasks.run(m.admitLocked())
}

// Submit is SubmitAs for a caller with no name (in-process callers).
func (m *Manager) Submit(ctx context.Context, req *aurav1.SubmitRequest) (*aurav1.SubmitResponse, error) {
	return m.SubmitAs(ctx, "", req)
}

// SubmitAs validates req, records the task durably and queues it on
// behalf of principal, who is the task's owner: its idempotency key is
// looked up among principal's own tasks of the same name only, the queue
// bounds count it against principal, and admission gives principal a fair
// share of the global limit. It returns once the task is committed to the
// store.
func (m *Manager) SubmitAs(ctx context.Context, principal string, req *aurav1.SubmitRequest) (*aurav1.SubmitResponse, error) {
	if err := checkRequest(req); err != nil {
		return nil, err
	}
	r, err := m.prepare(req)
	if err != nil {
		return nil, err
	}
	if m.draining.Load() {
		return nil, ErrDraining
	}
	r.principal = principal
	m.mu.Lock()
	err = m.backlog.reserve(principal)
	m.mu.Unlock()
	if err != nil {
		return nil, err
	}
	row, queued := r.record("")
	if row.IdempotencyKey != "" {
		// Whether the task is new is known only once the store has looked
		// for the key: it waits for the commit before it may be admitted.
		pending := m.store.Write(ctx, store.Batch{Create: row, Events: []store.Event{queued}})
		err := pending.Wait()
		got := pending.Duplicate()
		if err != nil || got != nil {
			m.mu.Lock()
			m.backlog.done(principal)
			m.mu.Unlock()
		}
		if err != nil {
			return nil, fmt.Errorf("recording the task: %w", err)
		}
		if got != nil {
			snap, err := decodeTask(got)
			if err != nil {
				return nil, err
			}
			return &aurav1.SubmitResponse{TaskId: snap.Id, Status: snap.Status, Deduplicated: true}, nil
		}
		r.startSpan(ctx)
		m.enqueue(r, row.Data)
	} else {
		// Admission does not wait for the commit: the task's RUNNING record
		// queues behind its creation and its steps start only once that is
		// committed, so an idle daemon starts a task one commit after it
		// arrives, not two. The caller hears back once it is durable.
		pending := m.store.Write(ctx, store.Batch{Create: row, Events: []store.Event{queued}})
		if pending.Done() { // over already: the in-memory store, or refused outright
			if err := pending.Wait(); err != nil {
				m.mu.Lock()
				m.backlog.done(principal)
				m.mu.Unlock()
				return nil, fmt.Errorf("recording the task: %w", err)
			}
		}
		r.created, r.lc.created = pending, creationPending
		r.startSpan(ctx)
		m.enqueue(r, row.Data)
		err := pending.Wait()
		// A failed creation takes the task back: nothing of it may run or
		// be reported. Admitted already, its RUNNING record fails (there
		// is no row to update), which stops it before its steps.
		r.feed(nil, event{kind: evCreated, err: err})
		if err != nil {
			return nil, fmt.Errorf("recording the task: %w", err)
		}
	}
	if m.onSubmit != nil {
		m.onSubmit(r.def.ID)
	}
	return &aurav1.SubmitResponse{TaskId: r.id, Status: aurav1.TaskStatus_TASK_STATUS_QUEUED}, nil
}

// checkRequest applies the request's own rules (package validation) to a
// submission. They are checked here, not in the gRPC layer: every
// submitter reaches SubmitAs, in-process ones included, so this is the one
// place no submission goes around, and a gRPC submission is checked once.
// The tasks the manager submits itself (a state transition's) skip it:
// they carry the aura.parent label a client may not set.
func checkRequest(req *aurav1.SubmitRequest) error {
	err := validation.Request(req)
	var bad *validation.Error
	if errors.As(err, &bad) {
		return &InvalidError{bad.Field, bad.Msg}
	}
	return err
}

// resolve finds a submission's task definition and its inputs with the
// defaults filled in, or the error Submit answers: an unknown task, a
// plan that did not load, inputs that do not fit.
func (m *Manager) resolve(req *aurav1.SubmitRequest) (*plan.Task, map[string]any, error) {
	def, err := m.plans.Load().Task(req.GetTask())
	switch {
	case errors.Is(err, plan.ErrUnknownTask):
		return nil, nil, &NotFoundError{"task", err.Error()}
	case errors.Is(err, plan.ErrPlanUnavailable):
		return nil, nil, &UnavailableError{"task", err.Error()}
	case err != nil:
		return nil, nil, &InvalidError{"task", err.Error()}
	}
	var given map[string]any
	if req.Inputs != nil {
		given = req.Inputs.AsMap()
	}
	inputs, err := def.ResolveInputs(given)
	if err != nil {
		return nil, nil, &InvalidError{"inputs", err.Error()}
	}
	return def, inputs, nil
}

// prepare builds a submission's run, touching nothing, and refuses what
// only the plans can tell: an unknown task, inputs that do not fit its
// definition, the task's and the request's tags together.
func (m *Manager) prepare(req *aurav1.SubmitRequest) (*run, error) {
	def, inputs, err := m.resolve(req)
	if err != nil {
		return nil, err
	}
	var inputsPB *structpb.Struct // none when there are none: an empty map costs every encoding
	if len(inputs) > 0 {
		if inputsPB, err = structpb.NewStruct(inputs); err != nil {
			return nil, &InvalidError{"inputs", err.Error()}
		}
	}
	timeout := def.Meta.Timeout
	if req.Timeout != nil {
		timeout = req.Timeout.AsDuration()
	}
	rawTags, tags, err := m.resourceTags(def, inputs, req.GetResourceTags(), req.GetLabels()[parentLabel] != "")
	if err != nil {
		return nil, err
	}
	mode := req.GetExecutionMode()
	if mode == aurav1.ExecutionMode_EXECUTION_MODE_UNSPECIFIED {
		mode = ExecutionMode(def.Meta.ExecutionMode)
	}
	priority := req.GetPriority()
	if priority == 0 {
		priority = def.Meta.Priority
	}
	now := m.now()
	id, err := uuid.NewV7()
	if err != nil {
		return nil, err
	}
	snap := &aurav1.Task{
		Id:             m.taskID(id.String()),
		Task:           def.ID,
		Status:         aurav1.TaskStatus_TASK_STATUS_QUEUED,
		Inputs:         inputsPB,
		ResourceTags:   rawTags,
		ExecutionMode:  mode,
		Priority:       priority,
		Labels:         req.GetLabels(),
		IdempotencyKey: req.GetIdempotencyKey(),
		CreatedAt:      timestamppb.New(now),
		Timeout:        durationpb.New(timeout),
		Attempt:        1,
		SkipPlanning:   req.GetSkipPlanning(),
		Preempt:        req.GetPreempt(),
		Preemptible:    req.GetPreemptible() || def.Meta.Preemptible,
	}
	r := &run{m: m, id: snap.Id, def: def, tags: tags, snap: snap}
	r.lc = lifecycleOf(snap, def.Meta.RequiresInitialState, def.Meta.OnInterrupt, false)
	return r, nil
}

// ExecutionMode is the API's name for a task file's execution_mode ("io"
// or "cpu"; plan loading refuses anything else, and io is the default).
func ExecutionMode(meta string) aurav1.ExecutionMode {
	if meta == "cpu" {
		return aurav1.ExecutionMode_EXECUTION_MODE_CPU
	}
	return aurav1.ExecutionMode_EXECUTION_MODE_IO
}

// enqueue puts a recorded task in the admission queue. data is its stored
// snapshot: a task that has to wait keeps only those bytes until it is
// admitted, so a deep queue costs little memory.
func (m *Manager) enqueue(r *run, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock() // tasks.run does not block, and this keeps pack ahead of any release
	m.live[r.id] = r
	conflicts, err := m.queue.Push(admission.Request{ID: r.id, Owner: r.principal, Priority: r.snap.Priority, Tags: r.tags,
		Preempt: r.snap.Preempt, Preemptible: r.snap.Preemptible})
	for _, c := range conflicts {
		m.log.Warn("resource limit conflict", "conflict", fmt.Sprint(c), "task_id", r.id, "task", r.def.ID)
	}
	if err != nil {
		// Only a duplicate ID gets here, which uuid v7 rules out; fail the
		// task rather than lose it.
		m.log.Error("admission refused a task", "task_id", r.id, "err", err)
		m.backlog.done(r.principal)
		go r.feed(nil, event{kind: evEnd, err: err})
		return
	}
	r.step(event{kind: evQueued})
	admitted := m.admitLocked()
	// Admission happens under m.mu, so this completes before any
	// goroutine for r starts.
	r.packIfQueued(data)
	m.tasks.run(admitted)
}

// admitLocked takes every task the queue admits and returns them, each
// counted in m.wg; the caller runs them (see taskGoroutines). m.mu must be held.
func (m *Manager) admitLocked() []*run {
	if m.draining.Load() {
		return nil
	}
	var out []*run
	for _, id := range m.queue.Admit() {
		r := m.live[id]
		if r == nil {
			_ = m.queue.Release(id)
			continue
		}
		claims := m.queue.Claims(id)
		fx := r.step(event{kind: evAdmitted, claims: claims != nil}).fx
		switch {
		case fx.has(effClaim):
			m.claimLocked(r, claims)
		case fx.has(effLaunch):
			m.launchLocked(r)
			out = append(out, r)
		default:
			_ = m.queue.Release(id)
		}
	}
	m.preemptLocked()
	return out
}

// launchLocked readies an admitted task for its goroutine (effLaunch): it
// records the pool instances admission gave it, leaves the backlog and is
// counted in m.wg until its end is over (effSettle). m.mu must be held.
func (m *Manager) launchLocked(r *run) {
	m.bindLocked(r)
	r.endAdmitSpan()
	m.backlog.done(r.principal)
	m.wg.Add(1)
}

// release gives back an admitted (or claiming) task's slots, and the
// shared ones the Ledger granted it, (effRelease) and returns the tasks
// that this admits, for the caller to run.
func (m *Manager) release(r *run) []*run {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.queue.Release(r.id); err != nil {
		m.log.Error("admission release failed", "task_id", r.id, "err", err)
	}
	if m.ledger != nil {
		m.releaseSharedLocked(r)
	}
	return m.admitLocked()
}

// dequeueLocked takes a task that will not run out of the admission queue
// and the backlog (effDequeue). A claiming task is not among the waiters
// (effRelease gives back its slots) but still counts in the backlog, as
// every queued task does. m.mu must be held.
func (m *Manager) dequeueLocked(r *run) {
	m.queue.Remove(r.id)
	m.backlog.done(r.principal)
	if m.ledger != nil {
		m.withdrawLocked(r)
	}
}

// forget drops a task that is over from the live registry and counts how
// it ended, unless it never existed (effForget).
func (m *Manager) forget(r *run, end ending) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.live, r.id)
	if !end.vanished {
		m.finished[end.status]++
	}
}

// Get returns a task's current snapshot.
func (m *Manager) Get(ctx context.Context, id string) (*aurav1.Task, error) {
	m.mu.Lock()
	r := m.live[id]
	m.mu.Unlock()
	if r != nil {
		return r.snapshot(), nil
	}
	row, err := m.store.GetTask(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &NotFoundError{"task_id", fmt.Sprintf("no task %q", id)}
	}
	if err != nil {
		return nil, err
	}
	return decodeTask(row)
}

// List lists tasks, newest first.
func (m *Manager) List(ctx context.Context, req *aurav1.ListTasksRequest) (*aurav1.ListTasksResponse, error) {
	sel, err := store.ParseSelector(req.GetLabelSelector())
	if err != nil {
		return nil, &InvalidError{"label_selector", err.Error()}
	}
	if req.GetPageSize() < 0 {
		return nil, &InvalidError{"page_size", "must not be negative"}
	}
	rows, next, err := m.store.ListTasks(ctx, store.Query{
		Status:    int32(req.GetStatus()),
		Plan:      req.GetPlan(),
		Selector:  sel,
		PageSize:  int(req.GetPageSize()),
		PageToken: req.GetPageToken(),
	})
	if err != nil {
		if errors.Is(err, store.ErrInvalid) {
			return nil, &InvalidError{"page_token", err.Error()}
		}
		return nil, err
	}
	resp := &aurav1.ListTasksResponse{NextPageToken: next}
	for _, row := range rows {
		t, err := decodeTask(row)
		if err != nil {
			return nil, err
		}
		m.mu.Lock()
		if r := m.live[t.Id]; r != nil {
			t = r.snapshot()
		}
		m.mu.Unlock()
		resp.Tasks = append(resp.Tasks, t)
		if req.GetPageTokens() {
			resp.PageTokens = append(resp.PageTokens, store.PageTokenAfter(row.Arrival))
		}
	}
	return resp, nil
}

// Cancel cancels a queued or running task and waits (bounded by ctx) for
// it to reach its terminal status. Terminal tasks are returned unchanged.
func (m *Manager) Cancel(ctx context.Context, id, reason string) (*aurav1.Task, error) {
	m.mu.Lock()
	r := m.live[id]
	m.mu.Unlock()
	if r == nil {
		return m.Get(ctx, id)
	}
	r.feed(nil, event{kind: evCancel, err: &cancelledError{reason: reason}})
	select {
	case <-r.Done():
	case <-ctx.Done():
	}
	return r.snapshot(), nil
}

// Stats reports admission, counts and the live registry.
func (m *Manager) Stats() (admission.Stats, map[string]int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	counts := map[string]int64{}
	for s, n := range m.finished {
		counts[s.String()] = n
	}
	for _, r := range m.live {
		counts[r.status().String()]++
	}
	return m.queue.Stats(), counts
}

// Shutdown drains: no new admissions, running tasks get until ctx ends to
// finish, then they are interrupted. Queued tasks stay queued in the store.
func (m *Manager) Shutdown(ctx context.Context) {
	m.StopAdmitting()
	done := make(chan struct{})
	go func() {
		m.wg.Wait()
		m.claims.Wait() // the shared slots the last tasks held go back
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		m.log.Warn("shutdown grace ended; interrupting running tasks")
		m.interrupt()
		m.stopLedger() // releases still failing give up
		<-done
	}
	m.stopLedger()
	m.tasks.shutdown()
}

// interrupt stops every task that runs (a queued one stays queued, in the
// store, for the next start).
func (m *Manager) interrupt() {
	m.mu.Lock()
	rs := slices.Collect(maps.Values(m.live))
	m.mu.Unlock()
	for _, r := range rs {
		r.feed(nil, event{kind: evShutdown})
	}
}

// Draining reports whether Shutdown has begun.
func (m *Manager) Draining() bool { return m.draining.Load() }

func decodeTask(row *store.Task) (*aurav1.Task, error) {
	t := &aurav1.Task{}
	if err := proto.Unmarshal(row.Data, t); err != nil {
		return nil, fmt.Errorf("decoding task %s: %w", row.ID, err)
	}
	return t, nil
}
