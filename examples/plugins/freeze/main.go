// Command freeze is an example Aura plugin. It connects to aurad over gRPC
// and does two things:
//
//   - as an interceptor (HookService/Intercept) it denies every task that
//     is about to run while a change freeze is on, that is while the file
//     --freeze-file exists, unless the task carries the label
//     freeze-exempt=true;
//   - as a subscriber (HookService/Subscribe) it writes one JSON line per
//     finished task (after_task_run) to stdout: an audit log.
//
// Run it next to a daemon:
//
//	go run ./examples/plugins/freeze --addr 127.0.0.1:7070 --freeze-file /tmp/aura-freeze
//	touch /tmp/aura-freeze        # tasks now end FAILED, error kind "denied"
//	rm /tmp/aura-freeze           # and run again
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/aura-dev/aura/client"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// config is what the plugin needs to run.
type config struct {
	addr       string
	freezeFile string
	plan       string        // only this plan's tasks; "" = all
	timeout    time.Duration // how long aurad waits for a decision
}

func main() {
	var cfg config
	flag.StringVar(&cfg.addr, "addr", client.DefaultAddr, "aurad address")
	flag.StringVar(&cfg.freezeFile, "freeze-file", "/run/aura/freeze", "while this file exists, tasks are denied")
	flag.StringVar(&cfg.plan, "plan", "", "only intercept this plan's tasks (default: all)")
	flag.DurationVar(&cfg.timeout, "decision-timeout", 2*time.Second, "how long aurad waits for a decision")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout, slog.Default()); err != nil {
		fmt.Fprintln(os.Stderr, "freeze:", err)
		os.Exit(1)
	}
}

// run serves as interceptor and audit logger until ctx ends.
func run(ctx context.Context, cfg config, audit io.Writer, log *slog.Logger) error {
	c, err := client.Dial(cfg.addr)
	if err != nil {
		return err
	}
	defer c.Close()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return intercept(gctx, c, cfg, log) })
	g.Go(func() error { return auditLog(gctx, c, audit) })
	err = g.Wait()
	if ctx.Err() != nil {
		return nil // asked to stop: the streams end with Canceled
	}
	return err
}

// decide is the policy: pure, so it is easy to test and to change.
func decide(task *aurav1.Task, frozen bool) (allow bool, reason string) {
	if !frozen || task.GetLabels()["freeze-exempt"] == "true" {
		return true, ""
	}
	return false, "change freeze in effect (label freeze-exempt=true to override)"
}

// intercept registers with aurad and answers each before_task_run call.
// fail_open is false: if this plugin hangs or dies, matching tasks are
// denied rather than run unchecked during a freeze.
func intercept(ctx context.Context, c *client.Client, cfg config, log *slog.Logger) error {
	stream, err := aurav1.NewHookServiceClient(c.Conn()).Intercept(ctx)
	if err != nil {
		return fmt.Errorf("intercept: %w", err)
	}
	err = stream.Send(&aurav1.InterceptReply{Msg: &aurav1.InterceptReply_Register{Register: &aurav1.InterceptRegistration{
		Name:     "freeze",
		Hooks:    []string{"before_task_run"},
		Plan:     cfg.plan,
		Timeout:  durationpb.New(cfg.timeout),
		FailOpen: false,
	}}})
	// A stream aurad has ended (a missing role, say) refuses the Send
	// with io.EOF and gives its reason to the next Recv.
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("intercept: register: %w", err)
	}
	for {
		call, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("intercept: %w", err)
		}
		_, statErr := os.Stat(cfg.freezeFile)
		allow, reason := decide(call.GetTask(), statErr == nil)
		log.Info("decision", "task_id", call.GetTask().GetId(), "task", call.GetTask().GetTask(), "allow", allow)
		err = stream.Send(&aurav1.InterceptReply{Msg: &aurav1.InterceptReply_Decision{Decision: &aurav1.InterceptDecision{
			CallId: call.GetCallId(), Allow: allow, Reason: reason,
		}}})
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("intercept: %w", err)
		}
	}
}

// auditRecord is one line of the audit log.
type auditRecord struct {
	Sequence  uint64    `json:"sequence"`
	Time      time.Time `json:"time"`
	TaskID    string    `json:"task_id"`
	Task      string    `json:"task"`
	Status    string    `json:"status"`
	ErrorKind string    `json:"error_kind,omitempty"`
	Error     string    `json:"error,omitempty"`
}

// auditLog follows after_task_run from now on. The client resumes after a
// disconnect from the last sequence it saw, so no line is lost or doubled;
// a real audit log would store that sequence and pass it as After on the
// next start to cover the time it was down.
func auditLog(ctx context.Context, c *client.Client, w io.Writer) error {
	enc := json.NewEncoder(w)
	return c.Subscribe(ctx, client.SubscribeOptions{Hooks: []string{"after_task_run"}}, func(ev *aurav1.HookEvent) error {
		t := ev.GetTask()
		return enc.Encode(auditRecord{
			Sequence: ev.GetSequence(), Time: ev.GetTime().AsTime(), TaskID: t.GetId(), Task: t.GetTask(),
			Status: t.GetStatus().String(), ErrorKind: t.GetError().GetKind(), Error: t.GetError().GetMessage(),
		})
	})
}
