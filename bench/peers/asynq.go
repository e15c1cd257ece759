package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Asynq's server as its own benchmark (benchmark_test.go) configures it,
// with TaskCheckInterval at 1 ms: the default (1 s) is how long an idle
// worker sleeps before looking for work again, which would put a second
// into every idle submission's latency.
const (
	asynqConcurrency       = 10
	asynqTaskCheckInterval = time.Millisecond
	asynqTaskType          = "noop"
	// asynqActiveKey is the list of tasks Asynq's workers hold; a task
	// leaves it when its completion is written to Redis.
	asynqActiveKey = "asynq:{default}:active"
)

var asynqProbe = []byte("probe")

type asynqInstance struct {
	srv     *server
	rdb     *redis.Client
	client  *asynq.Client
	workers *asynq.Server
	handled atomic.Int64   // tasks whose handler has returned
	started chan time.Time // a probe's handler start, for idleLatency
	ran     int64          // tasks submitted so far
}

// startAsynq starts redis-server in dir, with the append-only file fsynced
// every second when aof is true and no persistence at all when it is not,
// and an Asynq server (the workers) in this process.
func startAsynq(aof bool) func(context.Context, *environment, string) (instance, error) {
	return func(ctx context.Context, env *environment, dir string) (instance, error) {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		args := []string{env.redis, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
			"--save", "", "--daemonize", "no", "--protected-mode", "yes"}
		if aof {
			args = append(args, "--appendonly", "yes", "--appendfsync", "everysec")
		} else {
			args = append(args, "--appendonly", "no")
		}
		srv, err := startServer("redis-server", filepath.Join(dir, "redis.log"), nil, args...)
		if err != nil {
			return nil, err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		if err := srv.waitReady(ctx, func(ctx context.Context) error { return rdb.Ping(ctx).Err() }); err != nil {
			rdb.Close()
			_ = srv.stop(syscall.SIGKILL)
			return nil, err
		}
		a := &asynqInstance{srv: srv, rdb: rdb, started: make(chan time.Time, 1)}
		opt := asynq.RedisClientOpt{Addr: addr}
		a.client = asynq.NewClient(opt)
		a.workers = asynq.NewServer(opt, asynq.Config{
			Concurrency:       asynqConcurrency,
			TaskCheckInterval: asynqTaskCheckInterval,
			LogLevel:          asynq.ErrorLevel,
		})
		if err := a.workers.Start(asynq.HandlerFunc(a.handle)); err != nil {
			a.client.Close()
			rdb.Close()
			_ = srv.stop(syscall.SIGKILL)
			return nil, err
		}
		return a, nil
	}
}

func (a *asynqInstance) handle(_ context.Context, t *asynq.Task) error {
	if bytes.Equal(t.Payload(), asynqProbe) {
		a.started <- time.Now()
	}
	a.handled.Add(1)
	return nil
}

func (a *asynqInstance) serverPID() int { return a.srv.pid() }

func (a *asynqInstance) close() error {
	a.workers.Shutdown()
	a.client.Close()
	a.rdb.Close()
	// SIGTERM: redis-server flushes its append-only file and exits.
	return a.srv.stop(syscall.SIGTERM)
}

func (a *asynqInstance) burst(ctx context.Context, n, producers int) (submitted, finished time.Duration, err error) {
	task := asynq.NewTask(asynqTaskType, nil)
	start := time.Now()
	errs := make(chan error, producers)
	var wg sync.WaitGroup
	for i := range producers {
		wg.Go(func() {
			for range share(n, producers, i) {
				if _, err := a.client.EnqueueContext(ctx, task); err != nil {
					errs <- err
					return
				}
			}
		})
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
	a.ran += int64(n)
	if err := a.drain(ctx); err != nil {
		return 0, 0, err
	}
	return submitted, time.Since(start), nil
}

// drain waits until every handler has run and Redis holds no task in
// flight: a task is done for Asynq once its completion is written.
func (a *asynqInstance) drain(ctx context.Context) error {
	return poll(ctx, func() (bool, error) {
		if a.handled.Load() < a.ran {
			return false, nil
		}
		active, err := a.rdb.LLen(ctx, asynqActiveKey).Result()
		return active == 0, err
	})
}

func (a *asynqInstance) idleLatency(ctx context.Context, samples int) ([]time.Duration, error) {
	task := asynq.NewTask(asynqTaskType, asynqProbe)
	lat := make([]time.Duration, 0, samples)
	for range samples {
		t0 := time.Now()
		if _, err := a.client.EnqueueContext(ctx, task); err != nil {
			return nil, err
		}
		a.ran++
		select {
		case t := <-a.started:
			lat = append(lat, t.Sub(t0))
		case <-time.After(time.Minute):
			return nil, fmt.Errorf("a probe task did not start within a minute")
		}
		if err := a.drain(ctx); err != nil {
			return nil, err
		}
		time.Sleep(idleGap)
	}
	return lat, nil
}

func (a *asynqInstance) unary(ctx context.Context, n int) (time.Duration, error) {
	task := asynq.NewTask(asynqTaskType, nil)
	start := time.Now()
	for range n {
		if _, err := a.client.EnqueueContext(ctx, task); err != nil {
			return 0, err
		}
	}
	el := time.Since(start)
	a.ran += int64(n)
	return el, a.drain(ctx)
}
