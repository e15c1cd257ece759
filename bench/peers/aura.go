package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/aura-dev/aura/client"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// The plan aurad runs: one task whose only step is the built-in no-op.
const (
	auraPlanYAML = "title: Peers benchmark\n"
	auraTaskYAML = "meta:\n  title: A no-op\nsteps:\n  - action: noop\n"
	auraTask     = "peers/noop"
)

// auraMaxConcurrent is aurad's limit on tasks running at once, as `make
// bench` sets it for its end-to-end figures.
const auraMaxConcurrent = 64

// buildAurad builds aurad from the repository at root into dir.
func buildAurad(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "aurad")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/aurad")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/aurad: %w\n%s", err, out)
	}
	return bin, nil
}

type auraInstance struct {
	srv    *server
	client *client.Client
	ran    int // tasks this daemon has run to the end so far
}

func startAura(ctx context.Context, env *environment, dir string) (instance, error) {
	plans := filepath.Join(dir, "plans")
	if err := os.MkdirAll(filepath.Join(plans, "peers", "tasks"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(plans, "peers", "plan.yaml"), []byte(auraPlanYAML), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(plans, "peers", "tasks", "noop.yaml"), []byte(auraTaskYAML), 0o644); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	argv := append([]string{env.aurad, "serve",
		"--plans", plans, "--data", filepath.Join(dir, "data"), "--listen", addr,
		"--sync", "always", "--max-concurrent", strconv.Itoa(auraMaxConcurrent), "--log-level", "warn"}, env.auraArgs...)
	srv, err := startServer("aurad", filepath.Join(dir, "aurad.log"), nil, argv...)
	if err != nil {
		return nil, err
	}
	c, err := client.Dial(addr)
	if err != nil {
		_ = srv.stop(syscall.SIGKILL)
		return nil, err
	}
	health := grpc_health_v1.NewHealthClient(c.Conn())
	err = srv.waitReady(ctx, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		r, err := health.Check(ctx, &grpc_health_v1.HealthCheckRequest{})
		if err == nil && r.Status != grpc_health_v1.HealthCheckResponse_SERVING {
			err = fmt.Errorf("health: %v", r.Status)
		}
		return err
	})
	if err != nil {
		c.Close()
		_ = srv.stop(syscall.SIGKILL)
		return nil, err
	}
	return &auraInstance{srv: srv, client: c}, nil
}

func (a *auraInstance) serverPID() int { return a.srv.pid() }

func (a *auraInstance) close() error {
	a.client.Close()
	return a.srv.stop(syscall.SIGTERM)
}

var auraSubmit = &aurav1.SubmitRequest{Task: auraTask}

// burst submits n tasks from producers SubmitStreams (one each, pipelined)
// while they run, and follows after_task_run hook events until all n have
// finished.
func (a *auraInstance) burst(ctx context.Context, n, producers int) (submitted, finished time.Duration, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	zero, want := uint64(0), a.ran+n
	done := make(chan error, 1)
	go func() {
		seen := 0
		errEnough := errors.New("enough")
		err := a.client.Subscribe(ctx, client.SubscribeOptions{After: &zero, Hooks: []string{"after_task_run"}}, func(*aurav1.HookEvent) error {
			if seen++; seen == want {
				return errEnough
			}
			return nil
		})
		if errors.Is(err, errEnough) {
			err = nil
		}
		done <- err
	}()
	start := time.Now()
	errs := make(chan error, producers)
	var wg sync.WaitGroup
	for i := range producers {
		wg.Go(func() { errs <- a.submitStream(ctx, share(n, producers, i)) })
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
	if err := <-done; err != nil {
		return 0, 0, fmt.Errorf("following after_task_run: %w", err)
	}
	a.ran = want
	return submitted, time.Since(start), nil
}

// submitStream submits n tasks over one pipelined SubmitStream and returns
// once every one is acknowledged.
func (a *auraInstance) submitStream(ctx context.Context, n int) error {
	stream, err := a.client.Exec.SubmitStream(ctx)
	if err != nil {
		return err
	}
	sent := make(chan error, 1)
	go func() {
		for range n {
			if err := stream.Send(auraSubmit); err != nil {
				sent <- err
				return
			}
		}
		sent <- stream.CloseSend()
	}()
	for i := range n {
		r, err := stream.Recv()
		if err != nil || r.Error != nil {
			return fmt.Errorf("submission %d of %d: %v %v", i+1, n, err, r.GetError())
		}
	}
	return <-sent
}

// idleLatency submits one task at a time to the idle daemon: the client's
// clock before Submit to the first step's start, which aurad stamps with
// the same machine's clock when the engine starts the step (after the
// task's RUNNING record is durable).
func (a *auraInstance) idleLatency(ctx context.Context, samples int) ([]time.Duration, error) {
	lat := make([]time.Duration, 0, samples)
	for range samples {
		t0 := time.Now()
		resp, err := a.client.Submit(ctx, auraSubmit)
		if err != nil {
			return nil, err
		}
		task, err := a.client.Wait(ctx, resp.TaskId)
		if err != nil {
			return nil, err
		}
		a.ran++
		if len(task.Steps) == 0 || task.Steps[0].StartedAt == nil {
			if task, err = a.client.Get(ctx, resp.TaskId); err != nil {
				return nil, err
			}
		}
		if len(task.Steps) == 0 || task.Steps[0].StartedAt == nil {
			return nil, fmt.Errorf("task %s finished %v without a step start time", resp.TaskId, task.Status)
		}
		lat = append(lat, task.Steps[0].StartedAt.AsTime().Sub(t0))
		time.Sleep(idleGap)
	}
	return lat, nil
}

// unary submits n tasks one after another from one caller, each Submit
// returning once the task is durable (--sync always), then waits until
// they have run.
func (a *auraInstance) unary(ctx context.Context, n int) (time.Duration, error) {
	start := time.Now()
	for range n {
		if _, err := a.client.Submit(ctx, auraSubmit); err != nil {
			return 0, err
		}
	}
	el := time.Since(start)
	a.ran += n
	return el, a.drain(ctx)
}

// drain waits until every task submitted so far has finished.
func (a *auraInstance) drain(ctx context.Context) error {
	return poll(ctx, func() (bool, error) {
		st, err := a.client.Exec.GetStats(ctx, &aurav1.GetStatsRequest{})
		if err != nil {
			return false, err
		}
		c := st.CountsByStatus
		done := c["TASK_STATUS_SUCCEEDED"] + c["TASK_STATUS_FAILED"] + c["TASK_STATUS_CANCELLED"] + c["TASK_STATUS_TIMED_OUT"]
		return done >= int64(a.ran), nil
	})
}
