package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/aura-dev/aura/internal/actions"
	"github.com/aura-dev/aura/internal/auth"
	"github.com/aura-dev/aura/internal/buildinfo"
	"github.com/aura-dev/aura/internal/containment"
	"github.com/aura-dev/aura/internal/daemon"
	"github.com/aura-dev/aura/internal/engine"
	"github.com/aura-dev/aura/internal/execmgr"
	"github.com/aura-dev/aura/internal/plan"
	"github.com/aura-dev/aura/internal/server"
	"github.com/aura-dev/aura/internal/store"
)

type serveFlags struct {
	plans, data, listen, adminListen     string
	tlsCert, tlsKey, clientCA            string
	insecureRemote, skipBroken           bool
	maxConcurrent, cpuWorkers, ioWorkers int
	cpuMaxJobs                           int
	cpuMaxRSS                            int64
	cpuJobCPU                            time.Duration
	cpuJobMem                            uint64
	limits                               []string
	resources, config                    string
	sync                                 string
	retain, idemTTL                      time.Duration
	killGrace, shutdownGrace             time.Duration
	envAllow                             []string
	httpAllowHosts                       []string
	httpMaxBody, maxTaskOutput           int64
	httpMaxJSONValues, maxLoop           int
	logFormat, logLevel                  string
	timezone                             string

	authTokens                 string
	authHealth, authReflection bool
	rateLimit                  float64
	rateBurst                  int
	maxStreams, maxSubscribers int
	runAsUser, socketGroup     string
	containment                string

	maxConns, maxConnsPerIP    int
	idleTimeout, keepaliveTime time.Duration
	requestTimeout             time.Duration

	maxQueued, maxQueuedPerPrincipal, maxPriority int

	uiListen    string
	uiListenSet bool // given by flag, config or environment rather than defaulted

	cluster          clusterFlags
	clusterTokenFile string
}

func serveCmd() *cobra.Command {
	f := &serveFlags{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the daemon",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := applyConfig(cmd.Flags()); err != nil {
				return err
			}
			f.config = cmd.Flags().Lookup("config").Value.String()
			f.uiListenSet = cmd.Flags().Changed("ui-listen")
			f.clusterTokenFile = cmd.Flags().Lookup("cluster-token-file").Value.String()
			return serve(cmd.Context(), f)
		},
	}
	fl := cmd.Flags()
	fl.String("config", "", "YAML file of settings: keys are these flags' names; the environment (AURA_*) and flags win over it")
	fl.StringVar(&f.plans, "plans", "plans", "plan directory: one subdirectory per plan")
	fl.StringVar(&f.data, "data", "data", `data directory for the embedded store (":memory:" keeps nothing)`)
	fl.StringVar(&f.listen, "listen", "127.0.0.1:7070", "gRPC address: host:port or unix:///path")
	fl.StringVar(&f.adminListen, "admin-listen", "", "HTTP address for /metrics, /healthz, /readyz, /debug/pprof (off when empty)")
	fl.StringVar(&f.timezone, "timezone", "UTC", "IANA time zone of cron schedules whose schedules.yaml entry names none")
	fl.StringVar(&f.uiListen, "ui-listen", defaultUIListen, "web UI address host:port (off when empty); plaintext on loopback only, like --listen: elsewhere it needs --tls-cert/--tls-key (or --insecure-listen-remote)")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "TLS certificate (PEM)")
	fl.StringVar(&f.tlsKey, "tls-key", "", "TLS private key (PEM)")
	fl.StringVar(&f.clientCA, "client-ca", "", "CA bundle (PEM) that client certificates must chain to: enables mTLS")
	fl.BoolVar(&f.insecureRemote, "insecure-listen-remote", false, "allow plaintext on a non-loopback address (logs a warning)")
	fl.BoolVar(&f.skipBroken, "skip-broken-plans", false, "start even when some plans are broken (they are listed as unavailable)")
	fl.IntVar(&f.maxConcurrent, "max-concurrent", 32, "global limit on tasks running at once")
	fl.IntVar(&f.cpuWorkers, "cpu-workers", 0, "CPU worker processes (default: number of CPUs; -1 disables)")
	fl.IntVar(&f.ioWorkers, "io-workers", 0, "IO pool goroutines (default: 4 x CPUs)")
	fl.IntVar(&f.cpuMaxJobs, "cpu-worker-max-jobs", 0, "recycle a CPU worker after this many jobs (0: never)")
	fl.Int64Var(&f.cpuMaxRSS, "cpu-worker-max-rss", 0, "recycle a CPU worker whose RSS exceeds this many bytes (0: never)")
	fl.DurationVar(&f.cpuJobCPU, "cpu-job-max-cpu", 0, "CPU time one CPU-lane job may use before its worker is killed (setrlimit; 0: no limit)")
	fl.Uint64Var(&f.cpuJobMem, "cpu-job-max-memory", 0, "address space a CPU worker may map, in bytes (setrlimit; 0: no limit; a Go worker needs about 2 GiB)")
	fl.StringArrayVar(&f.limits, "resource-limit", nil, "resource limit key=n; wins over plan.yaml and tags (repeatable)")
	fl.StringVar(&f.resources, "resources", "", "YAML file declaring counting resources and pools of named instances (resources: {device: {instances: [...], limit: 1}, \"api:openai\": 5}); a resources: section in --config does the same")
	fl.StringVar(&f.sync, "sync", "always", "store durability: always (fsync each group commit), batch, off")
	fl.DurationVar(&f.retain, "retain", 7*24*time.Hour, "keep finished tasks and events this long")
	fl.DurationVar(&f.idemTTL, "idempotency-ttl", 24*time.Hour, "how long an idempotency key deduplicates")
	fl.DurationVar(&f.killGrace, "kill-grace", 5*time.Second, "exec children: SIGTERM, then SIGKILL after this")
	fl.DurationVar(&f.shutdownGrace, "shutdown-grace", 30*time.Second, "on SIGTERM, how long running tasks may finish before they are interrupted")
	fl.StringSliceVar(&f.envAllow, "env-allow", []string{"PATH", "HOME", "LANG", "TZ"}, "aurad environment variables that child processes inherit")
	fl.StringSliceVar(&f.httpAllowHosts, "http-allow-hosts", nil, "loopback, link-local or metadata addresses, prefixes or host names (optionally :port) that every plan's http.request may reach (refused by default; a plan allows its own in plan.yaml http.allow_hosts)")
	fl.Int64Var(&f.httpMaxBody, "http-max-body", actions.DefaultHTTPMaxBody, "bytes of an http.request response body a step may read")
	fl.IntVar(&f.httpMaxJSONValues, "http-max-json-values", actions.DefaultMaxJSONValues, "values (objects, arrays, strings, numbers...) an http.request JSON response may decode to")
	fl.IntVar(&f.maxLoop, "max-loop-iterations", engine.DefaultMaxLoopIterations, "iterations one step loop may run (loop.times, loop.for_each items)")
	fl.Int64Var(&f.maxTaskOutput, "max-task-output", engine.DefaultMaxTaskOutput, "estimated bytes of step output one task may keep (every step's output stays in memory until the task ends)")
	fl.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fl.StringVar(&f.authTokens, "auth-tokens", "", "tokens file (YAML: hashed bearer tokens and certificate principals with roles); unset = no authentication, safe only on loopback or a unix socket")
	fl.BoolVar(&f.authHealth, "auth-health", false, "require credentials (role read) for grpc.health.v1 (default: open)")
	fl.BoolVar(&f.authReflection, "auth-reflection", false, "require credentials (role read) for server reflection (default: open)")
	fl.Float64Var(&f.rateLimit, "rate-limit", 0, "requests per second per principal, each SubmitStream message counting (0: unlimited; set it when several callers share aurad)")
	fl.IntVar(&f.rateBurst, "rate-burst", 0, "requests a principal may send at once above --rate-limit (0: one second's worth)")
	fl.IntVar(&f.maxStreams, "max-streams-per-principal", 128, "concurrent streaming RPCs per principal, and per client address the health Watch and reflection streams of callers without credentials (0: unlimited)")
	fl.IntVar(&f.maxSubscribers, "max-subscribers-per-principal", 16, "concurrent hook Subscribe/Intercept streams per principal (0: unlimited)")
	fl.StringVar(&f.runAsUser, "run-as-user", "", "when aurad runs as root, run exec children as this user")
	fl.StringVar(&f.socketGroup, "socket-group", "", "group given to a unix:// socket (mode 0660)")
	fl.IntVar(&f.maxQueued, "max-queued", execmgr.DefaultMaxQueued, "tasks waiting to start, all callers together; beyond it Submit is RESOURCE_EXHAUSTED (-1: unbounded)")
	fl.IntVar(&f.maxQueuedPerPrincipal, "max-queued-per-principal", execmgr.DefaultMaxQueuedPerPrincipal, "tasks of one principal waiting to start; beyond it its Submit is RESOURCE_EXHAUSTED (-1: unbounded)")
	fl.IntVar(&f.maxPriority, "max-priority", auth.DefaultMaxPriority, "highest priority a caller may set on a submission, unless its tokens-file entry has max_priority")
	fl.StringVar(&f.containment, "process-containment", "auto", "how the processes of exec steps and CPU workers are kept killable: cgroup (a cgroup v2 group each), subreaper (parent links, orphans killed), auto (cgroup where possible)")
	fl.IntVar(&f.maxConns, "max-connections", 4096, "gRPC connections open at once, in all (0: as many as the descriptor limit allows, less a reserve); at the limit a new connection replaces an idle one, or is refused")
	fl.IntVar(&f.maxConnsPerIP, "max-connections-per-ip", 256, "gRPC connections open at once from one IPv4 address or IPv6 /64 (0: unlimited); at the limit a new connection replaces an idle one from that address, or is refused")
	fl.DurationVar(&f.idleTimeout, "idle-timeout", 5*time.Minute, "close a gRPC connection with no RPC in flight for this long (GOAWAY; clients reconnect when they need to; 0: never)")
	fl.DurationVar(&f.requestTimeout, "request-timeout", 30*time.Second, "a unary call's request message must arrive within this long of its headers, or the call is cancelled (0: no limit)")
	fl.DurationVar(&f.keepaliveTime, "keepalive-time", time.Minute, "ping a gRPC connection silent for this long; drop it if the ping is not answered within 20s (finds half-open connections)")
	addClusterFlags(fl, &f.cluster)
	// One flag for every call a node makes in its own name, whichever
	// part of the cluster registers it first; serve reads it by name.
	if fl.Lookup("cluster-token-file") == nil {
		fl.String("cluster-token-file", "", "file holding the bearer token this node presents when it calls another node on its own behalf (asking an interceptor connected there); with --auth-tokens, it must name a principal with the hooks role on every node")
	}
	return cmd
}

func newLogger(format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: want text or json, got %q", format)
}

func serve(ctx context.Context, f *serveFlags) error {
	log, err := newLogger(f.logFormat, f.logLevel)
	if err != nil {
		return err
	}
	slog.SetDefault(log)
	syncMode, err := store.ParseSyncMode(f.sync)
	if err != nil {
		return fmt.Errorf("--sync: %w", err)
	}
	limits := map[string]int{}
	for _, l := range f.limits {
		k, v, ok := strings.Cut(l, "=")
		n, err := strconv.Atoi(v)
		if !ok || k == "" || err != nil || n <= 0 {
			return fmt.Errorf("--resource-limit %q: want key=n with n > 0", l)
		}
		limits[k] = n
	}
	decl, err := loadResources(f.resources, f.config)
	if err != nil {
		return err
	}
	clusterCfg, err := clusterConfig(&f.cluster)
	if err != nil {
		return err
	}
	if err := nodeCallsConfig(clusterCfg, f.clusterTokenFile, f.tlsCert, f.tlsKey, f.clientCA); err != nil {
		return err
	}
	var grpcOpts []grpc.ServerOption
	tlsOn := f.tlsCert != "" || f.tlsKey != ""
	if tlsOn {
		cfg, err := serverTLS(f.tlsCert, f.tlsKey, f.clientCA)
		if err != nil {
			return err
		}
		grpcOpts = append(grpcOpts, grpc.Creds(credentials.NewTLS(cfg)))
	} else if f.clientCA != "" {
		return errors.New("--client-ca needs --tls-cert and --tls-key")
	}
	if f.insecureRemote {
		log.Warn("--insecure-listen-remote: plaintext gRPC may be reachable from other machines; anyone who can connect can run tasks")
	}
	sec, err := securityConfig(f, log)
	if err != nil {
		return err
	}
	conns, err := connLimits(f, log)
	if err != nil {
		return err
	}
	connGuard := server.NewConnGuard(conns)
	grpcOpts = append(grpcOpts, connGuard.ServerOptions()...)
	lis, err := server.Listen(server.ListenConfig{Addr: f.listen, TLS: tlsOn, InsecureRemote: f.insecureRemote, SocketGID: sec.socketGID})
	if err != nil {
		return err
	}
	lis = connGuard.Listener(lis)
	defer lis.Close()
	advertisedPort(clusterCfg, lis.Addr())
	if sec.auth.Registry == nil && !strings.HasPrefix(f.listen, "unix://") && (tlsOn || f.insecureRemote) && f.clientCA == "" {
		log.Warn("no --auth-tokens and no --client-ca: anyone who can reach " + f.listen + " can run tasks")
	}

	zone, err := time.LoadLocation(f.timezone)
	if err != nil || f.timezone == "" || f.timezone == "Local" {
		return fmt.Errorf("--timezone %q: not an IANA time zone (e.g. UTC, Europe/Berlin, America/New_York)", f.timezone)
	}

	mode, err := containment.ParseMode(f.containment)
	if err != nil {
		return fmt.Errorf("--process-containment: %w", err)
	}
	procs, err := containment.New(containment.Config{Mode: mode, Logger: log})
	if err != nil {
		return err
	}
	// Closed after the daemon, which stops every process first.
	defer procs.Close()

	uiCfg, err := uiConfig(f, f.uiListenSet, lis.Addr().String())
	if err != nil {
		return err
	}
	d, err := daemon.New(ctx, daemon.Config{
		PlansDir: f.plans, DataDir: f.data, SkipBrokenPlans: f.skipBroken,
		MaxConcurrent: f.maxConcurrent, ResourceLimits: limits, Resources: decl, LoadResources: reloadResources(f.resources, f.config),
		MaxQueued: f.maxQueued, MaxQueuedPerPrincipal: f.maxQueuedPerPrincipal,
		IOWorkers: f.ioWorkers, CPUWorkers: f.cpuWorkers, CPUWorkerMaxJobs: f.cpuMaxJobs, CPUWorkerMaxRSS: f.cpuMaxRSS,
		CPUJobMaxCPU: f.cpuJobCPU, CPUJobMaxMemory: f.cpuJobMem,
		Sync: syncMode, Retain: f.retain, IdempotencyTTL: f.idemTTL,
		KillGrace: f.killGrace, ShutdownGrace: f.shutdownGrace, EnvAllow: f.envAllow,
		HTTPAllowHosts: f.httpAllowHosts, HTTPMaxBody: f.httpMaxBody, HTTPMaxJSONValues: f.httpMaxJSONValues,
		MaxLoopIterations: f.maxLoop, MaxTaskOutput: f.maxTaskOutput, Auth: sec.auth, RunAs: sec.runAs, Processes: procs,
		AdminListen: f.adminListen, UI: uiCfg, Logger: log, Timezone: zone, Cluster: clusterCfg,
		Version: buildinfo.Read(version).Short(),
	}, grpcOpts...)
	if err != nil {
		return err
	}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	served := make(chan error, 1)
	go func() { served <- d.Serve(lis) }()
	logPlans(log, f.plans, d.Manager.Plans())
	log.Info("aurad serving", "listen", lis.Addr().String(), "plans", f.plans, "data", f.data, "version", buildinfo.Read(version).Short())
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				_, _ = d.Reload(context.Background())
				if f.authTokens != "" {
					if reg, err := auth.LoadFile(f.authTokens); err != nil {
						log.Error("tokens file reload failed; keeping the current tokens", "err", err)
					} else {
						d.Guard.SetRegistry(reg)
						log.Info("tokens file reloaded", "file", f.authTokens)
					}
				}
				continue
			}
			log.Info("signal received; shutting down", "signal", sig.String())
			d.Shutdown(context.Background())
			<-served
			return nil
		case err := <-served:
			d.Shutdown(context.Background())
			return err
		}
	}
}

// fdReserve is the descriptors kept back from connections for everything
// else aurad opens: the store, worker pipes, exec children's pipes, the
// admin listener.
const fdReserve = 256

// connLimits checks the connection flags and bounds --max-connections by
// the descriptor limit, so that connections alone can never take aurad to
// it.
func connLimits(f *serveFlags, log *slog.Logger) (server.ConnLimits, error) {
	l := server.ConnLimits{Max: f.maxConns, PerIP: f.maxConnsPerIP, IdleTimeout: f.idleTimeout, KeepaliveTime: f.keepaliveTime,
		RequestTimeout: f.requestTimeout, Logger: log}
	if f.maxConns < 0 || f.maxConnsPerIP < 0 || f.idleTimeout < 0 || f.keepaliveTime < 0 || f.requestTimeout < 0 {
		return l, errors.New("--max-connections, --max-connections-per-ip, --idle-timeout, --keepalive-time and --request-timeout must not be negative")
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && rl.Cur < 1<<31 {
		room := max(int(rl.Cur)-fdReserve, 64)
		if l.Max == 0 || l.Max > room {
			if l.Max > room {
				log.Warn("--max-connections lowered to fit the open-file limit", "asked", l.Max, "max_connections", room, "open_file_limit", rl.Cur)
			}
			l.Max = room
		}
	}
	return l, nil
}

func serverTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("TLS needs both --tls-cert and --tls-key")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--client-ca %s: no PEM certificates found", caFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// security is what serve's security flags resolve to.
type security struct {
	auth      auth.Options
	runAs     *syscall.Credential
	socketGID int
}

func securityConfig(f *serveFlags, log *slog.Logger) (security, error) {
	sec := security{auth: auth.Options{
		OpenHealth: !f.authHealth, OpenReflection: !f.authReflection,
		Limits: auth.Limits{Rate: f.rateLimit, Burst: f.rateBurst, MaxStreams: f.maxStreams, MaxSubscribers: f.maxSubscribers},
	}}
	if f.maxPriority < 0 || f.maxPriority > math.MaxInt32 {
		return sec, fmt.Errorf("--max-priority %d: want 0 to %d", f.maxPriority, math.MaxInt32)
	}
	sec.auth.MaxPriority = int32(f.maxPriority)
	if f.maxPriority == 0 {
		sec.auth.MaxPriority = -1 // nobody may raise a priority above 0
	}
	if f.rateLimit < 0 || f.rateBurst < 0 || f.maxStreams < 0 || f.maxSubscribers < 0 {
		return sec, errors.New("--rate-limit, --rate-burst, --max-streams-per-principal and --max-subscribers-per-principal must not be negative")
	}
	if f.authTokens != "" {
		reg, err := auth.LoadFile(f.authTokens)
		if err != nil {
			return sec, fmt.Errorf("--auth-tokens: %w", err)
		}
		sec.auth.Registry = reg
	}
	if f.runAsUser != "" {
		u, err := user.Lookup(f.runAsUser)
		if err != nil {
			return sec, fmt.Errorf("--run-as-user: %w", err)
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			return sec, fmt.Errorf("--run-as-user %s: uid %q / gid %q are not numeric", f.runAsUser, u.Uid, u.Gid)
		}
		switch {
		case os.Geteuid() == 0:
			sec.runAs = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
			log.Info("exec children run as another user", "user", f.runAsUser, "uid", uid, "gid", gid)
		case uint64(os.Geteuid()) == uid:
			// Already that user: nothing to drop.
		default:
			return sec, fmt.Errorf("--run-as-user %s: aurad must run as root to switch users", f.runAsUser)
		}
	}
	if f.socketGroup != "" {
		if !strings.HasPrefix(f.listen, "unix://") {
			return sec, errors.New("--socket-group needs a unix:// --listen address")
		}
		g, err := user.LookupGroup(f.socketGroup)
		if err != nil {
			return sec, fmt.Errorf("--socket-group: %w", err)
		}
		gid, err := strconv.Atoi(g.Gid)
		if err != nil {
			return sec, fmt.Errorf("--socket-group %s: gid %q is not numeric", f.socketGroup, g.Gid)
		}
		sec.socketGID = gid
	}
	return sec, nil
}

// logPlans says what the daemon will serve: how many plans and tasks, which
// plans are unavailable, and, loudly, when there is nothing at all (every
// submission would be refused as an unknown task).
func logPlans(log *slog.Logger, dir string, set *plan.Set) {
	var tasks int
	var unavailable []string
	for _, p := range set.Plans() {
		if !p.Available() {
			unavailable = append(unavailable, p.Name)
			continue
		}
		tasks += len(p.Tasks)
	}
	if len(set.Plans()) == 0 {
		log.Warn("no plans found: every submission will be refused; a plan is a directory <plans>/<plan>/ with task files under tasks/ (see docs/writing-plans.md)", "plans", dir)
		return
	}
	attrs := []any{"plans", len(set.Plans()), "tasks", tasks, "dir", dir}
	if len(unavailable) > 0 {
		attrs = append(attrs, "unavailable", strings.Join(unavailable, ","))
	}
	log.Info("plans loaded", attrs...)
	if tasks == 0 {
		log.Warn("the plans hold no available task: every submission will be refused", "dir", dir)
	}
}
