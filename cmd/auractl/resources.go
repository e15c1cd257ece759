package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/aura-dev/aura/client"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

func resourcesCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "resources",
		Short: "Show counting resources and pool instances: limit, holders, waiters, last known states",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.unary(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Exec.ListResources(ctx, &aurav1.ListResourcesRequest{})
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), resp, func(tw *tabwriter.Writer) {
					fmt.Fprintln(tw, "RESOURCE\tLIMIT\tIN USE\tHOLDERS\tWAITING\tFIRST WAITERS\tSTATES")
					for _, r := range resp.Resources {
						fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\t%s\t%s\n", r.Key, r.Limit, r.InUse, listText(r.Holders), r.Waiting,
							listText(r.Waiters), statesText(r.States))
					}
				})
			})
		},
	}
}

// listText shows task ids comma-separated, "-" for none.
func listText(ids []string) string {
	if len(ids) == 0 {
		return "-"
	}
	return strings.Join(ids, ",")
}

// statesText shows an instance's last known states as plan=state.
func statesText(states []*aurav1.InstanceState) string {
	if len(states) == 0 {
		return "-"
	}
	parts := make([]string, len(states))
	for i, s := range states {
		st := s.State
		if st == "" {
			st = "unknown" // lost by a failed or interrupted task, or not found by detection
		}
		parts[i] = s.Plan + "=" + st
	}
	return strings.Join(parts, ",")
}
