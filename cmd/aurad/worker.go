package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/aura-dev/aura/internal/actions"
	"github.com/aura-dev/aura/internal/containment"
	"github.com/aura-dev/aura/internal/workers"
)

// workerCmd is the CPU-lane child process: aurad re-executes itself with
// this hidden command and speaks the worker protocol with it.
func workerCmd() *cobra.Command {
	var (
		killGrace time.Duration
		envAllow  []string
		runAs     string
		contain   string
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
			procs, err := workerContainment(contain)
			if err != nil {
				fmt.Fprintln(os.Stderr, "aurad worker:", err)
				os.Exit(2)
			}
			reg := actions.Builtin()
			code := workers.WorkerMain(workerHandler(reg, killGrace, envAllow, cred, procs))
			reg.Close()
			if procs != nil {
				procs.Close()
			}
			os.Exit(code)
		},
	}
	cmd.Flags().DurationVar(&killGrace, "kill-grace", 5*time.Second, "exec children: SIGTERM, then SIGKILL after this")
	cmd.Flags().StringSliceVar(&envAllow, "env-allow", nil, "variables exec children inherit")
	cmd.Flags().StringVar(&runAs, "run-as", "", "UID:GID exec children run as (from aurad serve --run-as-user)")
	cmd.Flags().StringVar(&contain, "process-containment", "", "cgroup or subreaper (from aurad serve); empty: exec steps keep their process group only")
	return cmd
}

// workerHandler runs portable builtin actions inside the worker process,
// with the same view as the io lane: the job's plan directory to read, its
// workspace to write; its exec steps' processes are kept in procs' groups.
func workerHandler(reg *actions.Registry, killGrace time.Duration, envAllow []string, runAs *syscall.Credential, procs *containment.Tree) workers.Handler {
	return func(ctx context.Context, job workers.Job) (any, error) {
		spec, ok := reg.Lookup(job.Action)
		if !ok || !spec.Portable {
			return nil, fmt.Errorf("action %q cannot run in a worker process", job.Action)
		}
		return spec.Run(ctx, &actions.Env{PlanDir: job.PlanDir, WorkDir: job.WorkDir, KillGrace: killGrace, EnvAllow: envAllow, RunAs: runAs, Processes: procs}, job.Params)
	}
}

// workerContainment makes the worker's own containment tree in aurad's
// mode: each exec step a group of its own inside the worker's. The worker
// only warns (to aurad's log, through its stderr) when it falls back.
func workerContainment(mode string) (*containment.Tree, error) {
	if mode == "" {
		return nil, nil
	}
	m, err := containment.ParseMode(mode)
	if err != nil {
		return nil, err
	}
	if m == containment.ModeCgroup {
		// aurad made the worker's cgroup; should the worker be unable to
		// nest in it, that cgroup still holds everything it starts.
		m = containment.ModeAuto
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).
		With("component", "aura-worker", "pid", os.Getpid())
	return containment.New(containment.Config{Mode: m, Logger: log})
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
