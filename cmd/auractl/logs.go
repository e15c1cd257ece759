package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// logsCmd prints what a task's child processes wrote (task.log events):
// everything so far, then live until the task ends.
func logsCmd(g *globals) *cobra.Command {
	var prefix bool
	cmd := &cobra.Command{
		Use:   "logs ID",
		Short: "Print a task's process output (stdout and stderr), following it until the task ends",
		Args:  taskIDArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			out := cmd.OutOrStdout()
			err = c.Watch(cmd.Context(), args[0], func(ev *aurav1.TaskEvent) error {
				if ev.Type != "task.log" {
					return nil
				}
				if g.output != "table" {
					return g.printLine(out, ev, "")
				}
				for _, line := range strings.Split(ev.Message, "\n") {
					if prefix {
						line = fmt.Sprintf("%s %s| %s", ev.Step, ev.Stream, line)
					}
					if _, err := fmt.Fprintln(out, line); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil && interruptedBy(cmd.Context()) != nil {
				return g.detached(c, args[0], signalExitCode(cmd.Context()))
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&prefix, "prefix", false, "prefix each line with its step and stream")
	return cmd
}
