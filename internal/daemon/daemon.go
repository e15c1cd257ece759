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
	"syscall"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/aura-dev/aura/internal/actions"
	"github.com/aura-dev/aura/internal/auth"
	"github.com/aura-dev/aura/internal/containment"
	"github.com/aura-dev/aura/internal/engine"
	"github.com/aura-dev/aura/internal/execmgr"
	"github.com/aura-dev/aura/internal/hooks"
	"github.com/aura-dev/aura/internal/metrics"
	"github.com/aura-dev/aura/internal/plan"
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

	Logger *slog.Logger

	// TracerProvider, when set, traces tasks and gRPC calls with it;
	// otherwise the standard OTEL_* variables decide (off by default).
	TracerProvider trace.TracerProvider
}

// Daemon is a running aurad.
type Daemon struct {
	cfg     Config
	log     *slog.Logger
	Store   store.DB
	Hub     *hooks.Hub
	Hooks   *hooks.Registry
	Manager *execmgr.Manager
	Server  *server.Server
	Metrics *metrics.Metrics
	Guard   *auth.Guard
	io      *workers.IOPool
	cpu     *workers.CPUPool
	acts    *actionSet
	reg     *actions.Registry
	// work holds the plans' workspaces: <data>/work, or for an in-memory
	// daemon a temporary directory (ownWork) removed at shutdown.
	work    string
	ownWork bool

	health *storeHealth // nil for the in-memory store

	reloadMu sync.Mutex
	stopOnce sync.Once
	ownTP    *sdktrace.TracerProvider // built from OTEL_*; flushed at shutdown
}

// New builds and recovers a daemon; it does not listen yet.
func New(ctx context.Context, cfg Config, grpcOpts ...grpc.ServerOption) (_ *Daemon, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = 30 * time.Second
	}
	if cfg.IOWorkers <= 0 {
		cfg.IOWorkers = 4 * runtime.NumCPU()
	}
	if cfg.CPUWorkers == 0 {
		cfg.CPUWorkers = runtime.NumCPU()
	}
	log := cfg.Logger
	if cfg.MaxLoopIterations <= 0 {
		cfg.MaxLoopIterations = engine.DefaultMaxLoopIterations
	}
	reg, err := actions.BuiltinWith(actions.Options{HTTPAllowHosts: cfg.HTTPAllowHosts, HTTPMaxBody: cfg.HTTPMaxBody, MaxJSONValues: cfg.HTTPMaxJSONValues})
	if err != nil {
		return nil, fmt.Errorf("--http-allow-hosts: %w", err)
	}
	d := &Daemon{cfg: cfg, log: log, reg: reg}
	defer func() {
		if err != nil {
			d.closeParts()
		}
	}()

	set, err := d.loadPlans()
	if err != nil {
		return nil, err
	}
	for _, p := range set.Plans() {
		if !p.Available() {
			log.Warn("plan unavailable", "plan", p.Name, "problems", len(p.Problems), "first", p.Problems[0].String())
		}
	}

	var hub *hooks.Hub
	publish := func(evs []store.Event) { hub.Publish(evs) }
	d.Metrics = metrics.New()
	opts := store.Options{Sync: cfg.Sync, Retain: cfg.Retain, IdempotencyTTL: cfg.IdempotencyTTL, Logger: log, OnCommit: publish,
		ObserveCommit: d.Metrics.ObserveCommit, Encode: execmgr.EncodeEvent}
	if cfg.DataDir == "" || cfg.DataDir == ":memory:" {
		d.Store = store.NewMemory(opts)
	} else {
		if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
			return nil, fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
		}
		st, err := store.Open(ctx, cfg.DataDir, opts)
		if err != nil {
			return nil, fmt.Errorf("opening the store in %s: %w", cfg.DataDir, err)
		}
		d.Store = st
	}
	if err := d.openWork(); err != nil {
		return nil, err
	}
	hub = hooks.NewHub(d.Store)
	d.Hub = hub
	if _, last, err := d.Store.EventBounds(ctx); err == nil {
		hub.SetLast(last)
	}
	d.Hooks = hooks.NewRegistry(log)
	d.Hooks.Register(d.Metrics)

	d.io = workers.NewIOPool(cfg.IOWorkers)
	ecfg := engine.Config{Logger: log, IO: ioLane{d.io}, MaxLoopIterations: cfg.MaxLoopIterations, MaxTaskOutput: cfg.MaxTaskOutput}
	if cfg.CPUWorkers > 0 {
		command := cfg.WorkerCommand
		if len(command) == 0 {
			exe, err := os.Executable()
			if err != nil {
				return nil, fmt.Errorf("finding aurad's own executable for CPU workers: %w", err)
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
		d.cpu, err = workers.NewCPUPool(ctx, workers.CPUConfig{
			Size: cfg.CPUWorkers, Command: command, Env: childEnv(cfg.EnvAllow),
			MaxJobs: cfg.CPUWorkerMaxJobs, MaxRSS: cfg.CPUWorkerMaxRSS, Logger: log,
			RLimitCPU: cfg.CPUJobMaxCPU, RLimitAS: cfg.CPUJobMaxMemory, KillGrace: cfg.KillGrace,
			Processes: cfg.Processes,
		})
		if err != nil {
			return nil, fmt.Errorf("starting CPU workers: %w", err)
		}
		ecfg.CPU = cpuLane{pool: d.cpu, work: d.work}
	}
	d.acts = newActionSet(d.reg, log, cfg.KillGrace, cfg.EnvAllow, cfg.RunAs, d.work, cfg.Processes)
	ecfg.Actions = d.acts

	tp := cfg.TracerProvider
	if tp == nil {
		if d.ownTP, err = tracerFromEnv(ctx); err != nil {
			return nil, err
		}
		if d.ownTP != nil {
			tp = d.ownTP
			log.Info("tracing on: exporting OTLP over gRPC")
		}
	}
	var tracer trace.Tracer
	if tp != nil {
		tracer = tp.Tracer("github.com/aura-dev/aura")
		grpcOpts = append(grpcOpts, grpc.StatsHandler(otelgrpc.NewServerHandler(
			otelgrpc.WithTracerProvider(tp),
			otelgrpc.WithPropagators(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})))))
	}

	d.Manager, err = execmgr.New(execmgr.Config{
		Tracer: tracer,
		Plans:  set, Store: d.Store, Hooks: d.Hooks, Engine: engine.New(ecfg),
		GlobalLimit: cfg.MaxConcurrent, ResourceLimits: cfg.ResourceLimits, Logger: log,
		MaxQueued: cfg.MaxQueued, MaxQueuedPerPrincipal: cfg.MaxQueuedPerPrincipal,
		OnSubmit: d.Metrics.Submitted,
	})
	if err != nil {
		return nil, err
	}
	interrupted, queued, err := d.Manager.Recover(ctx)
	if err != nil {
		return nil, err
	}
	if interrupted > 0 || queued > 0 {
		log.Info("recovered tasks from the previous run", "interrupted", interrupted, "queued_again", queued)
	}
	guard := cfg.Auth
	guard.Logger = log
	guard.PlanOf = func(ctx context.Context, taskID string) (string, error) {
		t, err := d.Manager.Get(ctx, taskID)
		if err != nil {
			return "", err
		}
		return auth.PlanOfTask(t.GetTask()), nil
	}
	d.Guard = auth.NewGuard(guard)
	// Metrics see refused calls too: the guard runs inside them.
	d.Server = server.New(server.Deps{
		Manager: d.Manager, Hub: hub, Hooks: d.Hooks, Logger: log,
		Reload: d.Reload, Pools: d.pools,
	}, append(append(grpcOpts,
		grpc.ChainUnaryInterceptor(d.Metrics.GRPC.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(d.Metrics.GRPC.StreamServerInterceptor())),
		d.Guard.ServerOptions()...)...)
	d.Metrics.GRPC.InitializeMetrics(d.Server.GRPC)
	d.Metrics.Registry.MustRegister(d.gauges())
	d.health = startStoreHealth(d.Store, d.Server, log, storeHealthEvery)
	return d, nil
}

// openWork settles where the plans' workspaces live. Tasks write there and
// never under --plans, which aurad loads tasks from. Each plan's own
// directory is created by the first action that writes.
func (d *Daemon) openWork() error {
	if d.cfg.DataDir == "" || d.cfg.DataDir == ":memory:" {
		dir, err := os.MkdirTemp("", "aura-work-")
		if err != nil {
			return fmt.Errorf("creating a temporary directory for plan workspaces: %w", err)
		}
		d.work, d.ownWork = dir, true
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

func (d *Daemon) loadPlans() (*plan.Set, error) {
	dir, err := filepath.Abs(d.cfg.PlansDir)
	if err != nil {
		return nil, err
	}
	opts := PlanOptions(d.reg, d.cfg.SkipBrokenPlans)
	opts.MaxLoopIterations = d.cfg.MaxLoopIterations
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

// Reload loads the plan directory again and swaps it in; on error the old
// plans stay.
func (d *Daemon) Reload(ctx context.Context) (*plan.Set, error) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	set, err := d.loadPlans()
	if err != nil {
		d.log.Error("plan reload failed; keeping the current plans", "err", err)
		return nil, err
	}
	d.Manager.SetPlans(set)
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

// Shutdown drains: health goes NOT_SERVING, no new admissions, running
// tasks get the shutdown grace, then everything stops.
func (d *Daemon) Shutdown(ctx context.Context) {
	d.stopOnce.Do(func() {
		d.log.Info("draining", "grace", d.cfg.ShutdownGrace)
		d.health.shutdown()
		d.Server.Draining()
		gctx, cancel := context.WithTimeout(ctx, d.cfg.ShutdownGrace)
		// Tasks whose writes wait for disk space would wait past the grace
		// for ever: when it ends their writes fail, and the next start
		// recovers them from what the store holds.
		stopHolding := context.AfterFunc(gctx, func() {
			if st, ok := d.Store.(interface{ Abandon() }); ok {
				st.Abandon()
			}
		})
		d.Manager.Shutdown(gctx)
		stopHolding()
		cancel()
		stopped := make(chan struct{})
		go func() { d.Server.GRPC.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(2 * time.Second):
			d.Server.GRPC.Stop() // streams that never end on their own (watchers)
			<-stopped
		}
		d.closeParts()
		d.log.Info("stopped")
	})
}

func (d *Daemon) closeParts() {
	if d.cpu != nil {
		if err := d.cpu.Close(); err != nil {
			d.log.Warn("closing CPU workers", "err", err)
		}
	}
	if d.io != nil {
		d.io.Close()
	}
	if d.acts != nil {
		d.acts.close()
	}
	d.reg.Close()
	if d.ownWork {
		if err := os.RemoveAll(d.work); err != nil {
			d.log.Warn("removing the temporary plan workspaces", "dir", d.work, "err", err)
		}
	}
	if d.Store != nil {
		if err := d.Store.Close(); err != nil {
			d.log.Warn("closing the store", "err", err)
		}
	}
	if d.ownTP != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := d.ownTP.Shutdown(ctx); err != nil {
			d.log.Warn("flushing traces", "err", err)
		}
		cancel()
	}
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
	}
}
