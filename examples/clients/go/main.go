// Command auraclient shows how a program in its own Go module uses Aura's Go
// client (github.com/aura-dev/aura/client): it submits demo/hello, follows
// the task's events as they happen, waits for its result, and reads the
// after_task_run hook event that reported it, resuming the hook log from the
// start.
//
// The Aura module is not published under its module path, so a module that
// imports it needs a replace directive pointing at a checkout of this
// repository (see this directory's go.mod and README.md):
//
//	require github.com/aura-dev/aura v0.0.0
//	replace github.com/aura-dev/aura => ../aura
//
// Run it next to a daemon started with `make run`:
//
//	go run . --addr 127.0.0.1:7070 --name you
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/aura-dev/aura/client"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

func main() {
	addr := flag.String("addr", envOr("AURA_ADDR", client.DefaultAddr), "aurad's address (host:port or unix:///path); env AURA_ADDR")
	name := flag.String("name", "world", "the name demo/hello greets")
	timeout := flag.Duration("timeout", time.Minute, "give up after this long")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := run(ctx, *addr, *name); err != nil {
		fmt.Fprintln(os.Stderr, "auraclient:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr, name string) error {
	c, err := client.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()

	inputs, err := structpb.NewStruct(map[string]any{"name": name})
	if err != nil {
		return err
	}
	resp, err := c.Submit(ctx, &aurav1.SubmitRequest{Task: "demo/hello", Inputs: inputs})
	if err != nil {
		return fmt.Errorf("submit demo/hello: %w", err)
	}
	fmt.Println("submitted", resp.TaskId)

	// Follow: every event of the task from its first, until it ends.
	err = c.Watch(ctx, resp.TaskId, func(ev *aurav1.TaskEvent) error {
		if ev.Step != "" {
			fmt.Printf("event %s %s\n", ev.Type, ev.Step)
		} else {
			fmt.Printf("event %s\n", ev.Type)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("follow %s: %w", resp.TaskId, err)
	}

	// Wait returns the task as it ended (at once here: it has ended).
	task, err := c.Wait(ctx, resp.TaskId)
	if err != nil {
		return fmt.Errorf("wait for %s: %w", resp.TaskId, err)
	}
	result, err := protojson.Marshal(task.Result)
	if err != nil {
		return err
	}
	fmt.Println("status", task.Status)
	fmt.Println("result", string(result))

	// Hooks: replay the stored hook log from its start (After = 0) until
	// the after_task_run of this task; a plugin that remembers the last
	// sequence it handled passes that instead and misses nothing.
	from := uint64(0)
	errFound := errors.New("found")
	err = c.Subscribe(ctx, client.SubscribeOptions{Hooks: []string{"after_task_run"}, Plan: "demo", After: &from},
		func(ev *aurav1.HookEvent) error {
			if ev.Task.GetId() != resp.TaskId {
				return nil
			}
			fmt.Printf("hook %s %s %s\n", ev.Hook, ev.Task.GetId(), ev.Task.GetStatus())
			return errFound
		})
	if !errors.Is(err, errFound) {
		return fmt.Errorf("subscribe: %w", err)
	}
	if task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		return fmt.Errorf("task %s ended %s: %s", task.Id, task.Status, task.GetError().GetMessage())
	}
	return nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
