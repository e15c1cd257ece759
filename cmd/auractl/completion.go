package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// completionTimeout bounds the daemon calls made while the user waits at
// a <TAB>: a slow or absent daemon must not hang the shell.
const completionTimeout = 2 * time.Second

// registerCompletion adds `auractl completion bash|zsh|fish` and teaches
// the commands to complete task names and task ids from the daemon.
func registerCompletion(root *cobra.Command, g *globals) {
	// Ours replaces cobra's default command so the help text can say how
	// to install each script.
	root.CompletionOptions.DisableDefaultCmd = true
	root.AddCommand(completionCmd(root))
	_ = root.RegisterFlagCompletionFunc("output", fixedChoices("table", "json", "yaml"))
	for _, c := range root.Commands() {
		switch c.Name() {
		case "submit":
			c.ValidArgsFunction = g.completeTaskNames
			_ = c.RegisterFlagCompletionFunc("mode", fixedChoices("io", "cpu"))
		case "get", "watch", "logs", "rerun":
			c.ValidArgsFunction = g.completeTaskIDs(false)
		case "cancel":
			c.ValidArgsFunction = g.completeTaskIDs(true)
		case "plans":
			c.ValidArgsFunction = g.completePlanNames
			for _, sub := range c.Commands() {
				if sub.Name() == "show" {
					sub.ValidArgsFunction = g.completeTaskNames
				}
			}
		case "list":
			_ = c.RegisterFlagCompletionFunc("plan", g.completePlanNames)
			_ = c.RegisterFlagCompletionFunc("status", fixedChoices(statusChoices()...))
		}
	}
}

func completionCmd(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print a shell completion script",
		Long: `Print a completion script for your shell. Task names (for submit and
plans show) and task ids (for get, cancel, watch, logs and rerun) are
completed from the daemon at --addr / AURA_ADDR.

  bash:  source <(auractl completion bash)
         # or for every session:
         auractl completion bash > /etc/bash_completion.d/auractl
  zsh:   auractl completion zsh > "${fpath[1]}/_auractl"
         # (compinit must be enabled: autoload -U compinit; compinit)
  fish:  auractl completion fish > ~/.config/fish/completions/auractl.fish`,
		Args:                  cobra.ExactArgs(1),
		ValidArgs:             []string{"bash", "zsh", "fish"},
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			case "fish":
				return root.GenFishCompletion(out, true)
			}
			return fmt.Errorf("unknown shell %q (want bash, zsh or fish)", args[0])
		},
	}
}

type completeFunc = func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective)

func fixedChoices(choices ...string) completeFunc {
	return func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return choices, cobra.ShellCompDirectiveNoFileComp
	}
}

func statusChoices() []string {
	var out []string
	for i := int32(1); ; i++ {
		name, ok := aurav1.TaskStatus_name[i]
		if !ok {
			return out
		}
		out = append(out, strings.ToLower(strings.TrimPrefix(name, "TASK_STATUS_")))
	}
}

// completionCtx is the context for one completion's daemon call.
func completionCtx(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return context.WithTimeout(ctx, completionTimeout)
}

// listPlans asks the daemon for its plans; errors go to cobra's debug log
// (BASH_COMP_DEBUG_FILE) because a completion has nowhere else to say them.
func (g *globals) listPlans(cmd *cobra.Command) []*aurav1.Plan {
	c, err := g.dial()
	if err != nil {
		cobra.CompDebugln("dial: "+err.Error(), false)
		return nil
	}
	defer c.Close()
	ctx, cancel := completionCtx(cmd)
	defer cancel()
	resp, err := c.Exec.ListPlans(ctx, &aurav1.ListPlansRequest{})
	if err != nil {
		cobra.CompDebugln("ListPlans: "+err.Error(), false)
		return nil
	}
	return resp.Plans
}

// completeTaskNames completes `submit PLAN/TASK` with the daemon's tasks,
// each described by its title.
func (g *globals) completeTaskNames(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []cobra.Completion
	for _, p := range g.listPlans(cmd) {
		if !p.Available {
			continue
		}
		for _, t := range p.Tasks {
			if strings.HasPrefix(t.Id, toComplete) {
				out = append(out, cobra.CompletionWithDesc(t.Id, t.Title))
			}
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

func (g *globals) completePlanNames(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 && cmd.Name() == "plans" {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []cobra.Completion
	for _, p := range g.listPlans(cmd) {
		if strings.HasPrefix(p.Name, toComplete) {
			out = append(out, cobra.CompletionWithDesc(p.Name, p.Title))
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completionTaskLimit is how many of the newest tasks are offered.
const completionTaskLimit = 200

// completeTaskIDs completes a task id with the newest tasks, described by
// task name and status; activeOnly keeps only queued, planning and running
// ones (what cancel can act on).
func (g *globals) completeTaskIDs(activeOnly bool) completeFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, err := g.dial()
		if err != nil {
			cobra.CompDebugln("dial: "+err.Error(), false)
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		defer c.Close()
		ctx, cancel := completionCtx(cmd)
		defer cancel()
		resp, err := c.Exec.ListTasks(ctx, &aurav1.ListTasksRequest{PageSize: completionTaskLimit})
		if err != nil {
			cobra.CompDebugln("ListTasks: "+err.Error(), false)
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, t := range resp.Tasks {
			if activeOnly && !active(t.Status) {
				continue
			}
			if strings.HasPrefix(t.Id, toComplete) {
				out = append(out, cobra.CompletionWithDesc(t.Id, t.Task+" "+statusName(t.Status)))
			}
		}
		// Newest first is the useful order; keep it rather than the shell's sort.
		return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveKeepOrder
	}
}

func active(s aurav1.TaskStatus) bool {
	switch s {
	case aurav1.TaskStatus_TASK_STATUS_QUEUED, aurav1.TaskStatus_TASK_STATUS_PLANNING, aurav1.TaskStatus_TASK_STATUS_RUNNING:
		return true
	}
	return false
}
