package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/aura-dev/aura/client"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// interruptsCmd is `auractl interrupts [PLAN]`.
func interruptsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "interrupts [PLAN]",
		Short: "List the plans' interrupt rules (interrupts.yaml): where each is polled, last fire, cooldown left, checks run and failed",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &aurav1.ListInterruptsRequest{}
			if len(args) == 1 {
				req.Plan = args[0]
			}
			return g.unary(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := aurav1.NewInterruptServiceClient(c.Conn()).ListInterrupts(ctx, req)
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), resp, func(tw *tabwriter.Writer) {
					fmt.Fprintln(tw, "RULE\tSCOPE\tEVERY\tCHECK\tHANDLER\tPREEMPTED\tPOLLED ON\tLAST FIRE\tON\tTASKS\tCOOLDOWN LEFT\tCHECKS\tERRORS\tFIRES")
					for _, r := range resp.Rules {
						fire, on, tasks := "-", "-", "-"
						if f := r.LastFire; f != nil {
							fire, on, tasks = ts(f.Time, f.Time != nil), f.Instance, dash(strings.Join(f.TaskIds, ","))
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\n", r.Name, r.Scope, r.Every, r.Check, r.Handler,
							preempted(r), polledOn(r), fire, on, tasks, cooldownLeft(r.CooldownLeft.AsDuration()), r.ChecksRun, r.ChecksErrored, r.Fires)
					}
				})
			})
		},
	}
}

func preempted(r *aurav1.InterruptRule) string {
	if r.AbortStep {
		return r.Preempted + " (abort step)"
	}
	return r.Preempted
}

// polledOn names the instances the rule is polled on now.
func polledOn(r *aurav1.InterruptRule) string {
	var on []string
	for _, t := range r.Targets {
		if len(t.TaskIds) > 0 {
			on = append(on, t.Instance)
		}
	}
	return dash(strings.Join(on, ","))
}

func cooldownLeft(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return d.Round(time.Second).String()
}
