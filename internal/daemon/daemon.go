package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/aura-dev/aura/internal/actions"
	"github.com/aura-dev/aura/internal/auth"
	"github.com/aura-dev/aura/internal/containment"
	"github.com/aura-dev/aura/internal/engine"
	"github.com/aura-dev/aura/internal/execmgr"
	"github.com/aura-dev/aura/internal/hooks"
	"github.com/aura-dev/aura/internal/interrupt"
	"github.com/aura-dev/aura/internal/metrics"
	"github.com/aura-dev/aura/internal/plan"
	"github.com/aura-dev/aura/internal/resources"
	"github.com/aura-dev/aura/internal/schedule"
	"github.com/aura-dev/aura/internal/server"
	"github.com/aura-dev/aura/internal/store"
	"github.com/aura-dev/aura/internal/workers"
)

// Config is everything aurad can be told.
type Config struct {
	PlansDir        string
	DataDir         string // "" or ":memory:" keeps everything in memory (tests, benchmarks)
	SkipBrokenPlans bool

	MaxConcurrent    int            // global limit; default 32
	ResourceLimits   map[string]int // win over plan.yaml and tags
	IOWorkers        int            // default 4 x CPUs
	CPUWorkers       int            // default CPUs; -1 disables the CPU pool (cpu steps then run in-process)
	WorkerCommand    []string       // how to start a CPU worker; default this executable + "worker"
	CPUWorkerMaxRSS  int64
	CPUWorkerMaxJobs int
	CPUJobMaxCPU     time.Duration // per-job CPU seconds (setrlimit)
	CPUJobMaxMemory  uint64        // per-worker address space (setrlimit)

	// MaxQueued and MaxQueuedPerPrincipal bound the tasks waiting for
	// admission (see execmgr.Config): 0 takes the default, negative is none.
	MaxQueued, MaxQueuedPerPrincipal int

	// Resources are the declared counting resources and pools (--resources,
	// the resources: section of --config); nil declares none.
	Resources *resources.Declarations
	// LoadResources reads the declarations again on Reload (the files
	// Resources came from); nil: Reload leaves them as they are.
	LoadResources func() (*resources.Declarations, error)

	Sync           store.SyncMode
	Retain         time.Duration
	IdempotencyTTL time.Duration

	KillGrace     time.Duration // exec SIGTERM -> SIGKILL
	ShutdownGrace time.Duration // default 30s
	EnvAllow      []string      // aurad variables children inherit
	// HTTPAllowHosts are http.allow_hosts entries every plan gets
	// (--http-allow-hosts), on top of each plan's own.
	HTTPAllowHosts []string
	// HTTPMaxBody bounds an http.request response body in bytes
	// (--http-max-body; 0: actions.DefaultHTTPMaxBody).
	HTTPMaxBody int64
	// HTTPMaxJSONValues bounds the values a JSON response may decode to
	// (--http-max-json-values; 0: actions.DefaultMaxJSONValues).
	HTTPMaxJSONValues int
	// MaxLoopIterations bounds each step loop (--max-loop-iterations; 0:
	// engine.DefaultMaxLoopIterations): at plan load where the count is
	// written in the file, when the step runs where it is a template.
	MaxLoopIterations int
	// MaxTaskOutput bounds the estimated bytes of step output a task keeps
	// (--max-task-output; 0: engine.DefaultMaxTaskOutput).
	MaxTaskOutput int64

	// Auth configures authentication, authorization and per-principal
	// limits; the zero value is no authentication and no limits.
	// Auth.PlanOf and Auth.Logger are filled in here.
	Auth auth.Options
	// RunAs, when set, is the user exec children run as (aurad
	// --run-as-user, when aurad runs as root).
	RunAs *syscall.Credential
	// Processes, when set, contains every process exec steps and CPU
	// workers start (cmd/aurad makes it: it makes this process a child
	// subreaper, which an embedding program may not want). Nil keeps each
	// exec step's process group only.
	Processes *containment.Tree

	// Timezone is the zone of cron schedules that name none (--timezone);
	// nil is UTC.
	Timezone *time.Location

	// AdminListen, when set, is the address New serves the admin
	// endpoints on (AdminHandler; --admin-listen).
	AdminListen string

	// Routing is how a node answers for its cluster (forwarding, fan-out,
	// routing, handoff); only used with Cluster.
	Routing RoutingConfig

	// UI is where and how the web UI is served (--ui-listen); its zero
	// value serves none.
	UI UIConfig

	// Version is the aurad version ListNodes reports; optional.
	Version string

	// Cluster, when set, makes this daemon a node of a cluster on etcd;
	// nil keeps it alone (nothing of the cluster runs).
	Cluster *ClusterConfig

	Logger *slog.Logger

	// TracerProvider, when set, traces tasks and gRPC calls with it;
	// otherwise the standard OTEL_* variables decide (off by default).
	TracerProvider trace.TracerProvider
}

// Daemon is a running aurad.
type Daemon struct {
	// Immutable after New.
	cfg     Config
	log     *slog.Logger
	Store   store.DB
	Hub     *hooks.Hub
	Hooks   *hooks.Registry
	Manager *execmgr.Manager
	Server  *server.Server
	Metrics *metrics.Metrics
	Guard   *auth.Guard
	// Schedules fires the plans' schedules and triggers.
	Schedules *schedule.Runner
	reg       *actions.Registry
	acts      *actionSet
	io        *workers.IOPool
	cpu       *workers.CPUPool // nil: no CPU lane (--cpu-workers=-1)
	// work holds the plans' workspaces: <data>/work, or for an in-memory
	// daemon a temporary directory removed at shutdown.
	work  string
	admin *adminServer // nil without Config.AdminListen
	ui    *uiServer    // nil without Config.UI.Listen
	// tracer is what traces tasks and gRPC calls: Config.TracerProvider,
	// or one built from OTEL_* (flushed at shutdown); nil when tracing is off.
	tracer trace.TracerProvider
	// lastStates keeps the last known states in the data directory; nil
	// for an in-memory daemon.
	lastStates *store.LastStates
	// routing forwards, fans out and routes calls for the cluster; nil
	// outside a cluster.
	routing *routing

	// parts are appended to by New's steps and stopped by Shutdown.
	parts components
	// up is set once New has started every part: /readyz says "starting"
	// until then, as the admin endpoints serve from early on.
	up atomic.Bool

	health *storeHealth // nil for the in-memory store

	// cluster are the cluster's parts; nil outside a cluster. Set by New.
	cluster *clusterParts
	// ledger counts the cluster-scope resources; nil when none is declared.
	ledger  *clusterLedger
	started time.Time // when New began, for ListNodes

	reloadMu sync.Mutex // one Reload at a time
	stopOnce sync.Once

	// Interrupts polls the plans' interrupt rules.
	Interrupts *interrupt.Runner
}

// New builds and starts a daemon, recovering what an earlier run left
// behind; it does not serve gRPC yet (Serve does). Each step starts one
// part; Shutdown, or a step that fails, stops the started parts in
// reverse order.
func New(ctx context.Context, cfg Config, grpcOpts ...grpc.ServerOption) (_ *Daemon, err error) {
	cfg = cfg.withDefaults()
	if err := cfg.Cluster.check(); err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, log: cfg.Logger, Metrics: metrics.New(), Hub: hooks.NewHub(), Hooks: hooks.NewRegistry(cfg.Logger),
		started: time.Now().UTC()}
	d.parts.log = d.log
	d.Hooks.Register(d.Metrics)
	defer func() {
		if err != nil {
			d.parts.shutdown(context.Background())
		}
	}()
	if err := d.buildActions(); err != nil {
		return nil, err
	}
	set, err := d.loadPlans(cfg.Resources)
	if err != nil {
		return nil, err
	}
	warnUnavailable(d.log, set)
	if err := d.startTracing(ctx); err != nil {
		return nil, err
	}
	if err := d.openStore(ctx); err != nil {
		return nil, err
	}
	if err := d.startHub(ctx); err != nil {
		return nil, err
	}
	d.startPruner()
	if err := d.startAdmin(); err != nil {
		return nil, err
	}
	if err := d.openWorkspaces(); err != nil {
		return nil, err
	}
	d.startIOLane()
	if err := d.startCPULane(ctx); err != nil {
		return nil, err
	}
	if err := d.startMembership(ctx); err != nil {
		return nil, err
	}
	if err := d.buildManager(set); err != nil {
		return nil, err
	}
	d.startClusterLedger()
	if err := d.buildSchedules(); err != nil {
		return nil, err
	}
	d.startRouting()
	d.buildInterrupts()
	d.buildServer(grpcOpts)
	if err := d.recoverTasks(ctx); err != nil {
		return nil, err
	}
	if err := d.startSchedules(ctx, set); err != nil {
		return nil, err
	}
	d.startLeadership()
	d.startInterrupts(set)
	if err := d.startUI(); err != nil {
		return nil, err
	}
	d.startStoreHealth()
	d.up.Store(true)
	return d, nil
}

// startStoreHealth keeps gRPC health in step with the store. It starts
// after recovery so that it stops before the drain, which then has the last
// word on health.
func (d *Daemon) startStoreHealth() {
	d.health = startStoreHealth(d.Store, d.Server, d.log, storeHealthEvery)
	if d.health != nil {
		d.parts.add("store health", func(context.Context) { d.health.shutdown() })
	}
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = 30 * time.Second
	}
	if c.IOWorkers <= 0 {
		c.IOWorkers = 4 * runtime.NumCPU()
	}
	if c.CPUWorkers == 0 {
		c.CPUWorkers = runtime.NumCPU()
	}
	if c.MaxLoopIterations <= 0 {
		c.MaxLoopIterations = engine.DefaultMaxLoopIterations
	}
	return c
}

// buildActions makes the builtin actions, which plans are checked against.
func (d *Daemon) buildActions() error {
	reg, err := actions.BuiltinWith(actions.Options{HTTPAllowHosts: d.cfg.HTTPAllowHosts, HTTPMaxBody: d.cfg.HTTPMaxBody, MaxJSONValues: d.cfg.HTTPMaxJSONValues})
	if err != nil {
		return fmt.Errorf("--http-allow-hosts: %w", err)
	}
	d.reg = reg
	d.parts.add("actions", func(context.Context) { reg.Close() })
	return nil
}

func warnUnavailable(log *slog.Logger, set *plan.Set) {
	for _, p := range set.Plans() {
		if !p.Available() {
			log.Warn("plan unavailable", "plan", p.Name, "problems", len(p.Problems), "first", p.Problems[0].String())
		}
	}
}

// startTracing settles the tracer provider: the configured one, or one
// from the OTEL_* variables, which this daemon then owns and flushes.
func (d *Daemon) startTracing(ctx context.Context) error {
	if d.cfg.TracerProvider != nil {
		d.tracer = d.cfg.TracerProvider
		return nil
	}
	own, err := tracerFromEnv(ctx)
	if err != nil || own == nil {
		return err
	}
	d.tracer = own
	d.log.Info("tracing on: exporting OTLP over gRPC")
	d.parts.add("tracing", func(context.Context) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := own.Shutdown(ctx); err != nil {
			d.log.Warn("flushing traces", "err", err)
		}
	})
	return nil
}

// openStore opens the store, in memory or in the data directory. Its
// commits go to the hub, built before it for that reason.
func (d *Daemon) openStore(ctx context.Context) error {
	cfg := d.cfg
	opts := store.Options{Sync: cfg.Sync, Retain: cfg.Retain, IdempotencyTTL: cfg.IdempotencyTTL, Logger: d.log,
		OnCommit: d.Hub.Publish, ObserveCommit: d.Metrics.ObserveCommit}
	if inMemory(cfg.DataDir) {
		d.Store = store.NewMemory(opts)
	} else {
		if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
			return fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
		}
		st, err := store.Open(ctx, cfg.DataDir, opts)
		if err != nil {
			return fmt.Errorf("opening the store in %s: %w", cfg.DataDir, err)
		}
		d.Store = st
	}
	d.parts.add("store", func(context.Context) {
		if err := d.Store.Close(); err != nil {
			d.log.Warn("closing the store", "err", err)
		}
	})
	return d.openLastStates(ctx)
}

func inMemory(dataDir string) bool { return dataDir == "" || dataDir == ":memory:" }

// startHub lets subscribers follow the store's event log.
func (d *Daemon) startHub(ctx context.Context) error {
	if err := d.Hub.Start(ctx, d.Store); err != nil {
		return err
	}
	d.parts.add("hub", func(context.Context) { d.Hub.Shutdown() })
	return nil
}

// startPruner starts retention pruning.
func (d *Daemon) startPruner() {
	p := store.NewPruner(store.PrunerParams{Store: d.Store, Logger: d.log})
	p.Start()
	d.parts.add("pruner", func(context.Context) { p.Shutdown() })
}

// startAdmin serves the admin endpoints, when asked to. They start early
// and stop late, so /readyz says "starting" and "draining" rather than
// refusing connections.
func (d *Daemon) startAdmin() error {
	if d.cfg.AdminListen == "" {
		return nil
	}
	d.admin = newAdminServer(adminServerParams{Addr: d.cfg.AdminListen, Handler: d.AdminHandler(), Logger: d.log})
	if err := d.admin.start(); err != nil {
		return err
	}
	d.parts.add("admin", func(context.Context) { d.admin.shutdown() })
	return nil
}

// openWorkspaces settles where the plans' workspaces live. Tasks write
// there and never under --plans, which aurad loads tasks from. Each plan's
// own directory is created by the first action that writes.
func (d *Daemon) openWorkspaces() error {
	if inMemory(d.cfg.DataDir) {
		dir, err := os.MkdirTemp("", "aura-work-")
		if err != nil {
			return fmt.Errorf("creating a temporary directory for plan workspaces: %w", err)
		}
		d.work = dir
		d.parts.add("workspaces", func(context.Context) {
			if err := os.RemoveAll(dir); err != nil {
				d.log.Warn("removing the temporary plan workspaces", "dir", dir, "err", err)
			}
		})
		return nil
	}
	abs, err := filepath.Abs(filepath.Join(d.cfg.DataDir, "work"))
	if err != nil {
		return fmt.Errorf("plan workspaces under %s: %w", d.cfg.DataDir, err)
	}
	if err := os.Mkdir(abs, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("creating %s for plan workspaces: %w", abs, err)
	}
	d.work = abs
	return nil
}

// startIOLane makes the actions' run-time side and the in-process pool
// the io lane runs them on.
func (d *Daemon) startIOLane() {
	cfg := d.cfg
	d.acts = newActionSet(d.reg, d.log, cfg.KillGrace, cfg.EnvAllow, cfg.RunAs, d.work, cfg.Processes)
	d.parts.add("action set", func(context.Context) { d.acts.close() })
	d.io = workers.NewIOPool(cfg.IOWorkers)
	d.parts.add("io workers", func(context.Context) { d.io.Close() })
}

// startCPULane starts the CPU worker processes, unless disabled.
func (d *Daemon) startCPULane(ctx context.Context) error {
	cfg := d.cfg
	if cfg.CPUWorkers < 0 {
		return nil
	}
	command := cfg.WorkerCommand
	if len(command) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding aurad's own executable for CPU workers: %w", err)
		}
		command = []string{exe, "worker"}
	}
	command = append(command, "--kill-grace="+cfg.KillGrace.String(), "--env-allow="+strings.Join(envAllowOrDefault(cfg.EnvAllow), ","))
	if cfg.RunAs != nil {
		command = append(command, fmt.Sprintf("--run-as=%d:%d", cfg.RunAs.Uid, cfg.RunAs.Gid))
	}
	if cfg.Processes != nil {
		// A worker nests its steps' groups in its own: the same mode.
		command = append(command, "--process-containment="+string(cfg.Processes.Mode()))
	}
	pool, err := workers.NewCPUPool(workers.CPUConfig{
		Size: cfg.CPUWorkers, Command: command, Env: childEnv(cfg.EnvAllow),
		MaxJobs: cfg.CPUWorkerMaxJobs, MaxRSS: cfg.CPUWorkerMaxRSS, Logger: d.log,
		RLimitCPU: cfg.CPUJobMaxCPU, RLimitAS: cfg.CPUJobMaxMemory, KillGrace: cfg.KillGrace,
		Processes: cfg.Processes,
	})
	if err == nil {
		err = pool.Start(ctx) // a pool that fails to start has stopped itself
	}
	if err != nil {
		return fmt.Errorf("starting CPU workers: %w", err)
	}
	d.cpu = pool
	d.parts.add("cpu workers", func(context.Context) { pool.Shutdown() })
	return nil
}

// buildManager builds the engine on the lanes and the ExecutionManager on
// the engine; nothing runs until recoverTasks.
func (d *Daemon) buildManager(set *plan.Set) error {
	cfg := d.cfg
	ecfg := engine.Config{Logger: d.log, IO: ioLane{d.io}, Actions: d.acts,
		MaxLoopIterations: cfg.MaxLoopIterations, MaxTaskOutput: cfg.MaxTaskOutput}
	if d.cpu != nil {
		ecfg.CPU = cpuLane{pool: d.cpu, work: d.work}
	}
	var tracer trace.Tracer
	if d.tracer != nil {
		tracer = d.tracer.Tracer("github.com/aura-dev/aura")
	}
	mcfg := execmgr.Config{
		Tracer: tracer,
		Plans:  set, Store: d.Store, Hooks: d.Hooks, Engine: engine.New(ecfg),
		GlobalLimit: cfg.MaxConcurrent, ResourceLimits: cfg.ResourceLimits, Resources: cfg.Resources, Logger: d.log,
		MaxQueued: cfg.MaxQueued, MaxQueuedPerPrincipal: cfg.MaxQueuedPerPrincipal,
		OnSubmit: d.Metrics.Submitted,
		Node:     d.nodeName(),
	}
	if d.lastStates != nil {
		mcfg.LastStates = d.lastStates
	}
	if err := d.withClusterLedger(&mcfg); err != nil {
		return err
	}
	m, err := execmgr.New(mcfg)
	d.Manager = m
	if err == nil && d.cluster != nil {
		d.cluster.manager.Store(m)
		d.cluster.Membership.Refresh()
	}
	return err
}

// buildServer builds the guard and the gRPC server, which Serve serves.
// Stopping it ends the calls still open (watchers never end on their own).
func (d *Daemon) buildServer(grpcOpts []grpc.ServerOption) {
	guard := d.cfg.Auth
	guard.Logger = d.log
	guard.PlanOf = d.planOf
	d.Guard = auth.NewGuard(guard)
	if d.tracer != nil {
		grpcOpts = append(grpcOpts, grpc.StatsHandler(otelgrpc.NewServerHandler(
			otelgrpc.WithTracerProvider(d.tracer),
			otelgrpc.WithPropagators(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})))))
	}
	// Metrics see refused calls too: the guard runs inside them.
	d.Server = server.New(server.Deps{
		Manager: d.Manager, Hub: d.Hub, Hooks: d.Hooks, Logger: d.log,
		Reload: d.Reload, Pools: d.pools, Schedules: d.Schedules, Nodes: nodeList{d}, Interrupts: d.Interrupts,
		Cluster: d.clusterHooks(),
	}, append(append(grpcOpts,
		grpc.ChainUnaryInterceptor(d.Metrics.GRPC.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(d.Metrics.GRPC.StreamServerInterceptor())),
		append(d.Guard.ServerOptions(), d.routingOptions()...)...)...)
	d.Metrics.GRPC.InitializeMetrics(d.Server.GRPC)
	d.Metrics.Registry.MustRegister(d.gauges())
	d.parts.add("grpc", func(context.Context) {
		stopped := make(chan struct{})
		go func() { d.Server.GRPC.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(2 * time.Second):
			d.Server.GRPC.Stop() // streams that never end on their own (watchers)
			<-stopped
		}
	})
}

// recoverTasks starts the ExecutionManager on what the store holds: tasks
// queued before are queued again, and those that were running end
// INTERRUPTED (or are requeued). The drain is registered first, as a
// Recover that fails may have started tasks already.
func (d *Daemon) recoverTasks(ctx context.Context) error {
	d.parts.add("tasks", d.drain)
	interrupted, queued, err := d.Manager.Recover(ctx)
	if err != nil {
		return err
	}
	if interrupted > 0 || queued > 0 {
		d.log.Info("recovered tasks from the previous run", "interrupted", interrupted, "queued_again", queued)
	}
	return nil
}

// drain stops the tasks: health goes NOT_SERVING, nothing more is
// admitted, running tasks get the shutdown grace and are then
// interrupted; queued tasks stay queued in the store for the next start
// (with --cluster-handoff, those another live node can run move there
// first).
func (d *Daemon) drain(ctx context.Context) {
	d.Server.Draining()
	gctx, cancel := context.WithTimeout(ctx, d.cfg.ShutdownGrace)
	defer cancel()
	// Tasks whose writes wait for disk space would wait past the grace
	// for ever: when it ends their writes fail, and the next start
	// recovers them from what the store holds.
	stopHolding := context.AfterFunc(gctx, func() {
		if st, ok := d.Store.(interface{ Abandon() }); ok {
			st.Abandon()
		}
	})
	defer stopHolding()
	d.handOff(gctx)
	d.Manager.Shutdown(gctx)
}

func (d *Daemon) loadPlans(decl *resources.Declarations) (*plan.Set, error) {
	dir, err := filepath.Abs(d.cfg.PlansDir)
	if err != nil {
		return nil, err
	}
	opts := PlanOptions(d.reg, d.cfg.SkipBrokenPlans)
	opts.MaxLoopIterations = d.cfg.MaxLoopIterations
	opts.ResourceTagValid = decl.CheckTagString
	set, err := plan.Load(dir, opts)
	if err != nil {
		var le *plan.LoadError
		if errors.As(err, &le) {
			return nil, fmt.Errorf("plans in %s are broken (fix them, or start with --skip-broken-plans):\n%w", dir, err)
		}
		return nil, fmt.Errorf("loading plans from %s: %w", dir, err)
	}
	return set, nil
}

// Reload reads the resource declarations (when Config.LoadResources is
// set) and the plan directory again and swaps both in. The plans are
// checked against the new declarations, so the two change together: on
// any error (a *resources.ReloadError or a plan load error) the old plans
// and resources stay.
func (d *Daemon) Reload(ctx context.Context) (*plan.Set, error) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	decl := d.Manager.Declarations()
	if d.cfg.LoadResources != nil {
		fresh, err := d.cfg.LoadResources()
		if err != nil {
			d.log.Error("resources reload failed; keeping the current resources and plans", "err", err)
			return nil, &resources.ReloadError{Err: err}
		}
		if err := checkScopes(decl, fresh); err != nil {
			d.log.Error("resources reload failed; keeping the current resources and plans", "err", err)
			return nil, &resources.ReloadError{Err: err}
		}
		decl = fresh
	}
	set, err := d.loadPlans(decl)
	if err != nil {
		d.log.Error("plan reload failed; keeping the current plans", "err", err)
		return nil, err
	}
	if d.cfg.LoadResources != nil {
		d.Manager.SetResources(decl)
		d.log.Info("resources reloaded", "pools", decl.Summary())
	}
	d.Manager.SetPlans(set)
	d.Schedules.SetPlans(set)
	d.Interrupts.SetPlans(set)
	d.log.Info("plans reloaded", "plans", len(set.Plans()))
	return set, nil
}

func (d *Daemon) pools() []workers.PoolStats {
	out := []workers.PoolStats{d.io.Stats()}
	if d.cpu != nil {
		out = append(out, d.cpu.Stats())
	}
	return out
}

// Serve serves gRPC on lis until Shutdown.
func (d *Daemon) Serve(lis net.Listener) error {
	err := d.Server.GRPC.Serve(lis)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// Shutdown drains (health goes NOT_SERVING, no new admissions, running
// tasks get the shutdown grace), then stops every part in the reverse
// order New started them.
func (d *Daemon) Shutdown(ctx context.Context) {
	d.stopOnce.Do(func() {
		d.log.Info("draining", "grace", d.cfg.ShutdownGrace)
		d.parts.shutdown(ctx)
		d.log.Info("stopped")
	})
}

func envAllowOrDefault(allow []string) []string {
	if allow == nil {
		return []string{"PATH", "HOME", "LANG", "TZ"}
	}
	return allow
}

// childEnv is the whole environment of a CPU worker: only allowed variables.
func childEnv(allow []string) []string {
	var env []string
	for _, k := range envAllowOrDefault(allow) {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// gauges reads admission, pool and subscriber figures at scrape time.
func (d *Daemon) gauges() *metrics.Gauges {
	return &metrics.Gauges{
		Admission: func() (metrics.Resource, []metrics.Resource) {
			st, _ := d.Manager.Stats()
			global := metrics.Resource{Key: "global", Limit: st.GlobalLimit, InUse: st.InUse, Waiting: st.Waiting}
			res := make([]metrics.Resource, 0, len(st.Resources))
			for _, r := range st.Resources {
				res = append(res, metrics.Resource{Key: r.Key, Limit: r.Limit, InUse: r.InUse, Waiting: r.Waiting})
			}
			return global, res
		},
		Pools: func() []metrics.Pool {
			var out []metrics.Pool
			for _, p := range d.pools() {
				out = append(out, metrics.Pool{Name: p.Name, Size: p.Size, Live: p.Live, Busy: p.Busy, Queued: p.Queued,
					Restarts: p.Restarts, Crashes: p.Crashes, Jobs: p.Jobs})
			}
			return out
		},
		Subscribers: func() (int, uint64) { return d.Hub.Lag() },
		QueueDepth: func() int {
			st, _ := d.Manager.Stats()
			return st.Waiting
		},
		Instances: d.instanceGauges,
	}
}
