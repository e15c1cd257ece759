package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/aura-dev/aura/internal/actions"
	"github.com/aura-dev/aura/internal/workers"
)

// workerCmd is the CPU-lane child process: aurad re-executes itself with
// this hidden command and speaks the worker protocol with it.
func workerCmd() *cobra.Command {
	var (
		killGrace time.Duration
		envAllow  []string
	)
	cmd := &cobra.Command{
		Use:    "worker",
		Hidden: true,
		Args:   cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			reg := actions.Builtin()
			code := workers.WorkerMain(workerHandler(reg, killGrace, envAllow))
			reg.Close()
			os.Exit(code)
		},
	}
	cmd.Flags().DurationVar(&killGrace, "kill-grace", 5*time.Second, "exec children: SIGTERM, then SIGKILL after this")
	cmd.Flags().StringSliceVar(&envAllow, "env-allow", nil, "variables exec children inherit")
	return cmd
}

// workerHandler runs portable builtin actions inside the worker process,
// confined to the job's plan directory like everywhere else.
func workerHandler(reg *actions.Registry, killGrace time.Duration, envAllow []string) workers.Handler {
	return func(ctx context.Context, job workers.Job) (any, error) {
		spec, ok := reg.Lookup(job.Action)
		if !ok || !spec.Portable {
			return nil, fmt.Errorf("action %q cannot run in a worker process", job.Action)
		}
		return spec.Run(ctx, &actions.Env{PlanDir: job.PlanDir, KillGrace: killGrace, EnvAllow: envAllow}, job.Params)
	}
}
