package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// instance is one system, started for one round: its server and, in this
// process, its client and (for Asynq and River) its workers.
type instance interface {
	// burst submits n no-op tasks from producers goroutines while the
	// workers run them: how long until the last submission was
	// acknowledged, and until the last task had finished.
	burst(ctx context.Context, n, producers int) (submitted, finished time.Duration, err error)
	// idleLatency submits one task at a time, each after the last has
	// finished: the client's clock before the submission to the handler's
	// (first step's) start.
	idleLatency(ctx context.Context, samples int) ([]time.Duration, error)
	// unary submits n tasks one after another from one caller, timing the
	// submissions, then waits for them to finish.
	unary(ctx context.Context, n int) (time.Duration, error)
	serverPID() int
	close() error
}

type system struct {
	key, name  string
	durability string
	needs      string // "redis" or "postgres"; "" for Aura
	// single: the idle and unary figures are taken here; River's
	// InsertMany variant would measure the same single Insert again.
	single bool
	start  func(ctx context.Context, env *environment, dir string) (instance, error)
}

var systems = []system{
	{key: "aura", name: "Aura", single: true, start: startAura,
		durability: "durable: acknowledged once fsynced (`--sync always`, SQLite WAL, group commit)"},
	{key: "asynq-aof", name: "Asynq, Redis AOF everysec", needs: "redis", single: true, start: startAsynq(true),
		durability: "acknowledged from Redis's memory; the append-only file is fsynced once a second, so a power loss can lose about the last second of acknowledged tasks"},
	{key: "asynq-none", name: "Asynq, Redis without persistence", needs: "redis", single: true, start: startAsynq(false),
		durability: "acknowledged from Redis's memory, never written to disk: a Redis restart loses every task"},
	{key: "river-many", name: "River, InsertMany ×100", needs: "postgres", start: startRiver(true),
		durability: "durable: acknowledged once PostgreSQL's commit is fsynced (fsync and synchronous_commit on); 100 jobs a commit"},
	{key: "river-single", name: "River, single Insert", needs: "postgres", single: true, start: startRiver(false),
		durability: "durable: acknowledged once PostgreSQL's commit is fsynced (fsync and synchronous_commit on); one job a commit"},
}

// idleGap is the pause after each idle-latency sample, the same for every
// system, so each submission finds the system idle.
const idleGap = 5 * time.Millisecond

// environment is what the systems need, found or built once per run.
type environment struct {
	aurad       string   // the aurad binary, built from the repository
	auraArgs    []string // more `aurad serve` flags (-aura-args)
	redis       string   // redis-server; "" when missing
	postgresBin string   // PostgreSQL's bin directory; "" when missing
	pgTemplate  *postgresTemplate
}

type config struct {
	root, out, raw, from string
	tasks, rounds        int
	producers            int
	idleSamples, unaryN  int
	only                 []string
	auraArgs             []string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("peers", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	var only, auraArgs string
	fs.StringVar(&c.root, "root", "../..", "the Aura repository (aurad is built from it)")
	fs.StringVar(&c.out, "out", "../../BENCHMARKS.md", `the file whose bench-peers section is replaced ("-": print the section)`)
	fs.StringVar(&c.raw, "raw", "../../bench-peers.txt", `where the raw numbers go ("" for nowhere)`)
	fs.StringVar(&c.from, "from", "", "render the section from this raw file instead of measuring")
	fs.IntVar(&c.tasks, "tasks", 50_000, "no-op tasks in each end-to-end run")
	fs.IntVar(&c.rounds, "rounds", 5, "rounds; every round runs every system once")
	fs.IntVar(&c.producers, "producers", 16, "concurrent producers in the end-to-end run")
	fs.IntVar(&c.idleSamples, "idle-samples", 200, "idle-latency samples a round")
	fs.IntVar(&c.unaryN, "unary", 1_000, "one-caller submissions a round")
	fs.StringVar(&auraArgs, "aura-args", "", `more "aurad serve" flags, space-separated (e.g. "--admin-listen 127.0.0.1:7071" to profile it during a run)`)
	fs.StringVar(&only, "systems", "", "comma-separated subset of: aura, asynq-aof, asynq-none, river-many, river-single (default all)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.tasks < c.producers || c.rounds < 1 || c.producers < 1 || c.idleSamples < 1 || c.unaryN < 1 {
		return c, errors.New("-tasks must be at least -producers, and -rounds, -producers, -idle-samples and -unary at least 1")
	}
	c.auraArgs = strings.Fields(auraArgs)
	for _, k := range strings.Split(only, ",") {
		if k = strings.TrimSpace(k); k == "" {
			continue
		}
		if !slices.ContainsFunc(systems, func(s system) bool { return s.key == k }) {
			return c, fmt.Errorf("-systems: no system %q", k)
		}
		c.only = append(c.only, k)
	}
	return c, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	log := slog.New(slog.NewTextHandler(stderr, nil))
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "peers:", err)
		return 2
	}
	var res *Results
	if cfg.from != "" {
		f, err := os.Open(cfg.from)
		if err != nil {
			log.Error("reading the raw file", "err", err)
			return 2
		}
		res, err = ParseRaw(f)
		f.Close()
		if err != nil {
			log.Error("reading the raw file", "file", cfg.from, "err", err)
			return 2
		}
	} else {
		res, err = measure(ctx, cfg, stdout, log)
		if err != nil {
			log.Error("measuring", "err", err)
			return 2
		}
		if cfg.raw != "" {
			var buf bytes.Buffer
			if err := WriteRaw(&buf, res); err == nil {
				err = os.WriteFile(cfg.raw, buf.Bytes(), 0o644)
			}
			if err != nil {
				log.Error("writing the raw numbers", "err", err)
				return 2
			}
		}
	}
	var section bytes.Buffer
	if err := RenderSection(&section, res); err != nil {
		log.Error("rendering", "err", err)
		return 2
	}
	if cfg.out == "-" {
		_, _ = stdout.Write(section.Bytes())
		return 0
	}
	doc, err := os.ReadFile(cfg.out)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		log.Error("reading", "file", cfg.out, "err", err)
		return 2
	}
	doc, err = ReplaceSection(doc, section.Bytes())
	if err == nil {
		err = os.WriteFile(cfg.out, doc, 0o644)
	}
	if err != nil {
		log.Error("writing", "file", cfg.out, "err", err)
		return 2
	}
	log.Info("written", "out", cfg.out, "raw", cfg.raw)
	if ctx.Err() != nil {
		return 1
	}
	return 0
}

// measure runs the rounds and returns what they measured.
func measure(ctx context.Context, cfg config, stdout io.Writer, log *slog.Logger) (*Results, error) {
	root, err := filepath.Abs(cfg.root)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "bench-peers-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	// PostgreSQL runs as nobody when this runs as root: it must be able to
	// reach its data directory below tmp.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	res := &Results{}
	env := &environment{auraArgs: cfg.auraArgs}
	log.Info("building aurad", "from", root)
	if env.aurad, err = buildAurad(ctx, root, tmp); err != nil {
		return nil, err
	}
	env.redis, _ = exec.LookPath("redis-server")
	env.postgresBin = findPostgres()

	var run []system
	for _, s := range systems {
		if len(cfg.only) > 0 && !slices.Contains(cfg.only, s.key) {
			continue
		}
		switch {
		case s.needs == "redis" && env.redis == "":
			note(res, stdout, "skipped %s: no redis-server on PATH (Debian: apt-get install redis-server)", s.name)
			continue
		case s.needs == "postgres" && env.postgresBin == "":
			note(res, stdout, "skipped %s: no PostgreSQL server found in /usr/lib/postgresql/*/bin or on PATH (Debian: apt-get install postgresql)", s.name)
			continue
		case s.needs == "postgres" && env.pgTemplate == nil:
			if env.pgTemplate, err = initPostgres(ctx, env, filepath.Join(tmp, "pg-template")); err != nil {
				return nil, err
			}
		}
		run = append(run, s)
	}

	start := time.Now()
	res.Meta = metadata(ctx, cfg, root, env, start)
	for round := 1; round <= cfg.rounds && ctx.Err() == nil; round++ {
		for _, s := range run {
			if ctx.Err() != nil {
				break
			}
			dir := filepath.Join(tmp, fmt.Sprintf("%d-%s", round, s.key))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, err
			}
			if err := runSystem(ctx, cfg, env, s, round, dir, res, stdout); err != nil {
				note(res, stdout, "round %d, %s: %v", round, s.name, err)
			}
			if err := os.RemoveAll(dir); err != nil {
				return nil, err
			}
		}
	}
	for i, kv := range res.Meta {
		if kv[0] == "Load average (1, 5, 15 min)" {
			res.Meta[i][1] += fmt.Sprintf(" at the start, %s at the end (%s for the whole run)", loadAverage(), time.Since(start).Round(time.Second))
		}
	}
	if ctx.Err() != nil {
		note(res, stdout, "interrupted after %s: the figures are those of the rounds that ran", time.Since(start).Round(time.Second))
	}
	return res, nil
}

func note(res *Results, w io.Writer, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	res.Notes = append(res.Notes, msg)
	fmt.Fprintln(w, msg)
}

// runSystem starts one system, measures it and stops it.
func runSystem(ctx context.Context, cfg config, env *environment, s system, round int, dir string, res *Results, out io.Writer) (err error) {
	inst, err := s.start(ctx, env, dir)
	if err != nil {
		return fmt.Errorf("starting: %w", err)
	}
	defer func() { err = errors.Join(err, inst.close()) }()
	idle, err := settledMemory(inst.serverPID())
	if err != nil {
		return fmt.Errorf("memory: %w", err)
	}
	res.add(round, s.key, metricMemIdle, float64(idle)/(1<<20))
	if s.single {
		lat, err := inst.idleLatency(ctx, cfg.idleSamples)
		if err != nil {
			return fmt.Errorf("idle latency: %w", err)
		}
		ms := make([]float64, len(lat))
		for i, d := range lat {
			ms[i] = float64(d) / float64(time.Millisecond)
		}
		sort.Float64s(ms)
		res.add(round, s.key, metricIdleP50, percentileMS(ms, 0.50))
		res.add(round, s.key, metricIdleP99, percentileMS(ms, 0.99))
		el, err := inst.unary(ctx, cfg.unaryN)
		if err != nil {
			return fmt.Errorf("unary: %w", err)
		}
		res.add(round, s.key, metricUnary, float64(cfg.unaryN)/el.Seconds())
	}
	mem := sampleMemory(inst.serverPID())
	cpu0, err := treeCPU(inst.serverPID())
	if err != nil {
		return fmt.Errorf("cpu: %w", err)
	}
	self0 := selfCPU()
	submitted, finished, err := inst.burst(ctx, cfg.tasks, cfg.producers)
	self1 := selfCPU()
	cpu1, cpuErr := treeCPU(inst.serverPID())
	peak := mem.stop()
	if err = errors.Join(err, cpuErr); err != nil {
		return fmt.Errorf("end to end: %w", err)
	}
	perTask := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(cfg.tasks) }
	res.add(round, s.key, metricCPUServer, perTask(cpu1-cpu0))
	res.add(round, s.key, metricCPUHarness, perTask(self1-self0))
	res.add(round, s.key, metricCPUTotal, perTask(cpu1-cpu0+self1-self0))
	res.add(round, s.key, metricSubmit, float64(cfg.tasks)/submitted.Seconds())
	res.add(round, s.key, metricEndToEnd, float64(cfg.tasks)/finished.Seconds())
	res.add(round, s.key, metricMemPeak, float64(peak)/(1<<20))
	fmt.Fprintf(out, "round %d %-34s end to end %8.0f tasks/s, submissions %8.0f acks/s", round, s.name,
		float64(cfg.tasks)/finished.Seconds(), float64(cfg.tasks)/submitted.Seconds())
	if v, ok := res.value(round, s.key, metricIdleP50); ok {
		p99, _ := res.value(round, s.key, metricIdleP99)
		u, _ := res.value(round, s.key, metricUnary)
		fmt.Fprintf(out, ", idle p50 %.2f ms p99 %.2f ms, unary %.0f acks/s", v, p99, u)
	}
	fmt.Fprintf(out, ", CPU a task: server %.0f µs, harness %.0f µs, memory idle %.1f MB peak %.1f MB\n",
		perTask(cpu1-cpu0), perTask(self1-self0), float64(idle)/(1<<20), float64(peak)/(1<<20))
	return nil
}

// settledMemory waits until two readings 250 ms apart agree within 1 %
// (the server has finished starting), up to 5 s, and returns the last.
func settledMemory(pid int) (int64, error) {
	prev, err := treeMemory(pid)
	if err != nil {
		return 0, err
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		time.Sleep(250 * time.Millisecond)
		cur, err := treeMemory(pid)
		if err != nil {
			return 0, err
		}
		if d := cur - prev; d*100 <= cur && -d*100 <= cur {
			return cur, nil
		}
		prev = cur
	}
	return prev, nil
}

// findPostgres returns the bin directory of the newest PostgreSQL server
// Debian installed, or of one on PATH.
func findPostgres() string {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	sort.Slice(matches, func(i, j int) bool { return pgMajor(matches[i]) > pgMajor(matches[j]) })
	if len(matches) > 0 {
		return filepath.Dir(matches[0])
	}
	if p, err := exec.LookPath("postgres"); err == nil {
		return filepath.Dir(p)
	}
	return ""
}

func pgMajor(path string) int {
	var v int
	fmt.Sscanf(filepath.Base(filepath.Dir(filepath.Dir(path))), "%d", &v)
	return v
}

// poll calls done every 5 ms until it says so, fails, or 10 minutes pass.
func poll(ctx context.Context, done func() (bool, error)) error {
	deadline := time.Now().Add(10 * time.Minute)
	for {
		ok, err := done()
		if ok || err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return errors.New("not finished after 10 minutes")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// share is producer i's part of n tasks split among producers.
func share(n, producers, i int) int {
	k := n / producers
	if i < n%producers {
		k++
	}
	return k
}

// metadata describes the run: the command, the date, the machine and the
// versions measured.
func metadata(ctx context.Context, cfg config, root string, env *environment, start time.Time) [][2]string {
	cmd := fmt.Sprintf("`make bench-peers` (`go run . -tasks %d -rounds %d -producers %d -idle-samples %d -unary %d` in bench/peers)",
		cfg.tasks, cfg.rounds, cfg.producers, cfg.idleSamples, cfg.unaryN)
	meta := [][2]string{
		{"Command", cmd},
		{"Date", start.UTC().Format("2006-01-02 15:04 UTC")},
		{"Machine", machine()},
		{"Load average (1, 5, 15 min)", loadAverage()},
		{"Aura", "commit " + commandOutput(ctx, root, "git", "rev-parse", "--short=12", "HEAD") + ", aurad `" +
			strings.Join(append([]string{"--sync", "always", "--max-concurrent", strconv.Itoa(auraMaxConcurrent)}, cfg.auraArgs...), " ") + "`"},
	}
	var versions []string
	if env.redis != "" {
		versions = append(versions, fmt.Sprintf("Asynq %s (Concurrency %d, TaskCheckInterval %v) on %s", moduleVersion("github.com/hibiken/asynq"),
			asynqConcurrency, asynqTaskCheckInterval, firstWords(commandOutput(ctx, "", env.redis, "--version"), 3)))
	}
	if env.postgresBin != "" {
		versions = append(versions, fmt.Sprintf("River %s (FetchCooldown %v, FetchPollInterval %v, MaxWorkers %d, pgxpool of %d) on %s",
			moduleVersion("github.com/riverqueue/river"), riverFetchCooldown, riverFetchPollInterval, riverMaxWorkers, riverPoolConns,
			commandOutput(ctx, "", filepath.Join(env.postgresBin, "postgres"), "--version")))
	}
	if len(versions) > 0 {
		meta = append(meta, [2]string{"Peers", strings.Join(versions, "; ")})
	}
	meta = append(meta, [2]string{"Go", runtime.Version()}, [2]string{"Raw numbers", "bench-peers.txt (`go run . -from ../../bench-peers.txt` renders this section again from them)"})
	return meta
}

func moduleVersion(path string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == path {
				return d.Version
			}
		}
	}
	return "(unknown version)"
}

func commandOutput(ctx context.Context, dir, name string, args ...string) string {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	b, err := cmd.Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

func firstWords(s string, n int) string {
	f := strings.Fields(s)
	return strings.Join(f[:min(n, len(f))], " ")
}

func machine() string {
	model, cores := "unknown CPU", runtime.NumCPU()
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.Join(strings.Fields(v), " ")
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				fmt.Sscanf(strings.TrimSpace(rest), "%d", &kb)
			}
		}
		mem = fmt.Sprintf(", %.1f GiB memory", float64(kb)/(1<<20))
	}
	kernel := "unknown"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%s, %d cores%s; Linux %s", model, cores, mem, kernel)
}

func loadAverage() string {
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			return strings.Join(f[:3], ", ")
		}
	}
	return "unknown"
}
