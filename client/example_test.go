package client_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/aura-dev/aura/client"
	"github.com/aura-dev/aura/internal/daemon"
	"github.com/aura-dev/aura/internal/resources"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// addr is where the examples' aurad listens: a real daemon started by
// TestMain on the example plans, in-process, on a free loopback port.
var addr string

func TestMain(m *testing.M) {
	ctx := context.Background()
	// The device-farm example asks for the pools it declares.
	decl, err := resources.Load("../examples/resources.yaml")
	if err != nil {
		log.Fatal(err)
	}
	d, err := daemon.New(ctx, daemon.Config{
		PlansDir: "../examples/plans", DataDir: ":memory:", CPUWorkers: -1, Resources: decl,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		log.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	addr = lis.Addr().String()
	go d.Serve(lis)
	code := m.Run()
	d.Shutdown(ctx)
	os.Exit(code)
}

// Submit a task, wait for it and read its result.
func Example() {
	c, err := client.Dial(addr) // e.g. "127.0.0.1:7070", or "unix:///run/aura/aurad.sock"
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	resp, err := c.Submit(ctx, &aurav1.SubmitRequest{Task: "demo/hello", IdempotencyKey: "example-run-1"})
	if err != nil {
		log.Fatal(err)
	}
	task, err := c.Wait(ctx, resp.TaskId)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(task.Status)
	fmt.Println(task.Result.GetStructValue().AsMap()["greeting"])
	// Output:
	// TASK_STATUS_SUCCEEDED
	// hello, world
}

// Follow every hook event, resuming after a disconnect without gaps.
func ExampleClient_Subscribe() {
	c, err := client.Dial(addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := c.Submit(ctx, &aurav1.SubmitRequest{Task: "demo/fail"})
	if err != nil {
		log.Fatal(err)
	}
	from := uint64(0) // replay everything stored, then live
	done := fmt.Errorf("seen the end")
	err = c.Subscribe(ctx, client.SubscribeOptions{After: &from, Plan: "demo"}, func(ev *aurav1.HookEvent) error {
		if ev.Task.GetId() != resp.TaskId {
			return nil
		}
		fmt.Println(ev.Hook)
		if ev.Hook == "after_task_run" {
			return done
		}
		return nil
	})
	if err != done {
		log.Fatal(err)
	}
	// Output:
	// before_task_run
	// after_task_failure
	// after_task_run
}
