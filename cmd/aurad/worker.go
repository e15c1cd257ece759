package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
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
		runAs     string
	)
	cmd := &cobra.Command{
		Use:    "worker",
		Hidden: true,
		Args:   cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			cred, err := parseRunAs(runAs)
			if err != nil {
				fmt.Fprintln(os.Stderr, "aurad worker:", err)
				os.Exit(2)
			}
			reg := actions.Builtin()
			code := workers.WorkerMain(workerHandler(reg, killGrace, envAllow, cred))
			reg.Close()
			os.Exit(code)
		},
	}
	cmd.Flags().DurationVar(&killGrace, "kill-grace", 5*time.Second, "exec children: SIGTERM, then SIGKILL after this")
	cmd.Flags().StringSliceVar(&envAllow, "env-allow", nil, "variables exec children inherit")
	cmd.Flags().StringVar(&runAs, "run-as", "", "UID:GID exec children run as (from aurad serve --run-as-user)")
	return cmd
}

// workerHandler runs portable builtin actions inside the worker process,
// with the same view as the io lane: the job's plan directory to read, its
// workspace to write.
func workerHandler(reg *actions.Registry, killGrace time.Duration, envAllow []string, runAs *syscall.Credential) workers.Handler {
	return func(ctx context.Context, job workers.Job) (any, error) {
		spec, ok := reg.Lookup(job.Action)
		if !ok || !spec.Portable {
			return nil, fmt.Errorf("action %q cannot run in a worker process", job.Action)
		}
		return spec.Run(ctx, &actions.Env{PlanDir: job.PlanDir, WorkDir: job.WorkDir, KillGrace: killGrace, EnvAllow: envAllow, RunAs: runAs}, job.Params)
	}
}

// parseRunAs reads "UID:GID"; "" is nil (children run as the worker does).
func parseRunAs(s string) (*syscall.Credential, error) {
	if s == "" {
		return nil, nil
	}
	u, g, ok := strings.Cut(s, ":")
	uid, err1 := strconv.ParseUint(u, 10, 32)
	gid, err2 := strconv.ParseUint(g, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return nil, fmt.Errorf("--run-as %q: want UID:GID", s)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}
