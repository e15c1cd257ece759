package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/aura-dev/aura/internal/actions"
	"github.com/aura-dev/aura/internal/daemon"
	"github.com/aura-dev/aura/internal/engine"
	"github.com/aura-dev/aura/internal/plan"
)

func planCmd() *cobra.Command {
	root := &cobra.Command{Use: "plan", Short: "Work with plan directories"}
	var maxLoop int
	var resourcesFile, config string
	check := &cobra.Command{
		Use:   "check DIR",
		Short: "Validate every plan under DIR and print each problem as file:line:col",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			reg := actions.Builtin()
			defer reg.Close()
			opts := daemon.PlanOptions(reg, false)
			opts.MaxLoopIterations = maxLoop
			decl, err := loadResources(resourcesFile, config)
			if err != nil {
				return err
			}
			opts.ResourceTagValid = decl.CheckTagString
			set, err := plan.Load(args[0], opts)
			if err != nil {
				fmt.Fprintln(cmd.OutOrStdout(), err.Error())
				return fmt.Errorf("plans under %s have problems", args[0])
			}
			n := 0
			for _, p := range set.Plans() {
				n += len(p.Tasks)
			}
			out := fmt.Sprintf("ok: %d plans, %d tasks", len(set.Plans()), n)
			if s := len(set.Schedules()); s > 0 {
				out += fmt.Sprintf(", %d schedules", s)
			}
			switch r := len(set.Interrupts()); r {
			case 0:
			case 1:
				out += ", 1 interrupt rule"
			default:
				out += fmt.Sprintf(", %d interrupt rules", r)
			}
			fmt.Fprintln(cmd.OutOrStdout(), out)
			return nil
		},
	}
	check.Flags().IntVar(&maxLoop, "max-loop-iterations", engine.DefaultMaxLoopIterations, "as aurad serve's: the most iterations a loop written in a task file may ask for")
	check.Flags().StringVar(&resourcesFile, "resources", "", "as aurad serve's: the declared resources and pools that tags may name")
	check.Flags().StringVar(&config, "config", "", "as aurad serve's: a config file whose resources: section declares resources and pools")
	root.AddCommand(check)
	root.AddCommand(graphCmd())
	return root
}
