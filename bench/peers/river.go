package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// River's client as its own benchmark (cmd/river/riverbench) configures
// it: the fetch cooldown and poll interval that benchmark chose for
// throughput, and 2,000 workers on the default queue.
const (
	riverFetchCooldown     = 2 * time.Millisecond
	riverFetchPollInterval = 20 * time.Millisecond
	riverMaxWorkers        = 2_000
	// riverBatch is how many jobs one InsertMany call carries.
	riverBatch = 100
	// riverPoolConns is the connection pool's size: more than the
	// producers, so no producer waits for a connection (pgxpool's default
	// is the number of CPUs).
	riverPoolConns = 32
)

type noopArgs struct {
	Probe bool `json:"probe,omitempty"`
}

func (noopArgs) Kind() string { return "noop" }

type noopWorker struct {
	river.WorkerDefaults[noopArgs]
	started chan time.Time
}

func (w *noopWorker) Work(_ context.Context, job *river.Job[noopArgs]) error {
	if job.Args.Probe {
		w.started <- time.Now()
	}
	return nil
}

// postgresTemplate initialises one PostgreSQL cluster per run; each
// instance starts from a copy of it.
type postgresTemplate struct {
	dir   string
	owner *user.User // nil: the current user
}

// initPostgres runs initdb into dir. As root it runs as nobody (initdb and
// postgres refuse root), in a directory nobody owns.
func initPostgres(ctx context.Context, env *environment, dir string) (*postgresTemplate, error) {
	t := &postgresTemplate{dir: dir}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			return nil, fmt.Errorf("running PostgreSQL as root needs the user nobody: %w", err)
		}
		t.owner = u
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := t.chown(dir); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(env.postgresBin, "initdb"), "-D", dir, "-U", "postgres",
		"--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions")
	if t.owner != nil {
		cred, err := credential(t.owner)
		if err != nil {
			return nil, err
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		cmd.Dir = "/"
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	return t, nil
}

func (t *postgresTemplate) chown(path string) error {
	if t.owner == nil {
		return nil
	}
	uid, _ := strconv.Atoi(t.owner.Uid)
	gid, _ := strconv.Atoi(t.owner.Gid)
	return filepath.Walk(path, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

type riverInstance struct {
	srv       *server
	pool      *pgxpool.Pool
	client    *river.Client[pgx.Tx]
	many      bool // the burst inserts with InsertMany; else one Insert a job
	completed atomic.Int64
	started   chan time.Time
	ran       int64
	stopSub   func()
}

func startRiver(many bool) func(context.Context, *environment, string) (instance, error) {
	return func(ctx context.Context, env *environment, dir string) (instance, error) {
		pgdata := filepath.Join(dir, "pg")
		if out, err := exec.CommandContext(ctx, "cp", "-a", env.pgTemplate.dir, pgdata).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("copying the PostgreSQL cluster: %w\n%s", err, out)
		}
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		// PostgreSQL's defaults, durable: fsync and synchronous_commit on.
		srv, err := startServer("postgres", filepath.Join(dir, "postgres.log"), env.pgTemplate.owner,
			filepath.Join(env.postgresBin, "postgres"), "-D", pgdata, "-p", strconv.Itoa(port),
			"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="+pgdata)
		if err != nil {
			return nil, err
		}
		dsn := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&pool_max_conns=%d", port, riverPoolConns)
		pool, err := pgxpool.New(ctx, dsn)
		if err != nil {
			_ = srv.stop(syscall.SIGINT)
			return nil, err
		}
		r := &riverInstance{srv: srv, pool: pool, many: many, started: make(chan time.Time, 1)}
		fail := func(err error) (instance, error) {
			pool.Close()
			_ = srv.stop(syscall.SIGINT)
			return nil, err
		}
		if err := srv.waitReady(ctx, pool.Ping); err != nil {
			return fail(err)
		}
		driver := riverpgxv5.New(pool)
		migrator, err := rivermigrate.New(driver, nil)
		if err != nil {
			return fail(err)
		}
		if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
			return fail(fmt.Errorf("river migrate: %w", err))
		}
		workers := river.NewWorkers()
		river.AddWorker(workers, &noopWorker{started: r.started})
		r.client, err = river.NewClient(driver, &river.Config{
			FetchCooldown:     riverFetchCooldown,
			FetchPollInterval: riverFetchPollInterval,
			Logger:            slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
			Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: riverMaxWorkers}},
			Workers:           workers,
		})
		if err != nil {
			return fail(err)
		}
		// As River's own benchmark does, completions are counted from the
		// client's events: a job is done once the completer has recorded it.
		events, cancel := r.client.SubscribeConfig(&river.SubscribeConfig{
			ChanSize: 100_000,
			Kinds:    []river.EventKind{river.EventKindJobCompleted},
		})
		r.stopSub = cancel
		go func() {
			for range events {
				r.completed.Add(1)
			}
		}()
		if err := r.client.Start(ctx); err != nil {
			cancel()
			return fail(err)
		}
		return r, nil
	}
}

func (r *riverInstance) serverPID() int { return r.srv.pid() }

func (r *riverInstance) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := r.client.Stop(ctx)
	r.stopSub()
	r.pool.Close()
	// SIGINT: PostgreSQL's fast shutdown.
	return errors.Join(err, r.srv.stop(syscall.SIGINT))
}

func (r *riverInstance) burst(ctx context.Context, n, producers int) (submitted, finished time.Duration, err error) {
	start := time.Now()
	errs := make(chan error, producers)
	var wg sync.WaitGroup
	for i := range producers {
		wg.Go(func() { errs <- r.produce(ctx, share(n, producers, i)) })
	}
	wg.Wait()
	submitted = time.Since(start)
	close(errs)
	for e := range errs {
		err = errors.Join(err, e)
	}
	if err != nil {
		return 0, 0, err
	}
	r.ran += int64(n)
	if err := r.drain(ctx); err != nil {
		return 0, 0, err
	}
	return submitted, time.Since(start), nil
}

// produce inserts n jobs: in InsertMany calls of riverBatch, or one Insert
// each.
func (r *riverInstance) produce(ctx context.Context, n int) error {
	if !r.many {
		for range n {
			if _, err := r.client.Insert(ctx, noopArgs{}, nil); err != nil {
				return err
			}
		}
		return nil
	}
	batch := make([]river.InsertManyParams, riverBatch)
	for i := range batch {
		batch[i].Args = noopArgs{}
	}
	for n > 0 {
		k := min(n, riverBatch)
		if _, err := r.client.InsertMany(ctx, batch[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

func (r *riverInstance) drain(ctx context.Context) error {
	return poll(ctx, func() (bool, error) { return r.completed.Load() >= r.ran, nil })
}

func (r *riverInstance) idleLatency(ctx context.Context, samples int) ([]time.Duration, error) {
	lat := make([]time.Duration, 0, samples)
	for range samples {
		t0 := time.Now()
		if _, err := r.client.Insert(ctx, noopArgs{Probe: true}, nil); err != nil {
			return nil, err
		}
		r.ran++
		select {
		case t := <-r.started:
			lat = append(lat, t.Sub(t0))
		case <-time.After(time.Minute):
			return nil, fmt.Errorf("a probe job did not start within a minute")
		}
		if err := r.drain(ctx); err != nil {
			return nil, err
		}
		time.Sleep(idleGap)
	}
	return lat, nil
}

func (r *riverInstance) unary(ctx context.Context, n int) (time.Duration, error) {
	start := time.Now()
	for range n {
		if _, err := r.client.Insert(ctx, noopArgs{}, nil); err != nil {
			return 0, err
		}
	}
	el := time.Since(start)
	r.ran += int64(n)
	return el, r.drain(ctx)
}
