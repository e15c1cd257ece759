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

func nodesCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "nodes",
		Short: "Show the cluster's live nodes: address, version, pools and instances, load, last seen, the leader",
		Long: `Show the live nodes of the cluster the daemon at --addr belongs to: each
node's address, version, pools (free/all instances), its running and queued
tasks against its capacity, and when it last refreshed its record. The
leader (it fires the schedules) is marked with *. A daemon outside a
cluster shows itself alone.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.unary(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := aurav1.NewClusterServiceClient(c.Conn()).ListNodes(ctx, &aurav1.ListNodesRequest{})
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), resp, func(tw *tabwriter.Writer) {
					if !resp.Clustered {
						fmt.Fprintln(tw, "# not in a cluster: this daemon alone (aurad serve --cluster-etcd makes it a node)")
					}
					fmt.Fprintln(tw, "NODE\tADDRESS\tVERSION\tPOOLS (FREE/ALL)\tRUNNING\tQUEUED\tCAPACITY\tLAST SEEN")
					now := time.Now()
					for _, n := range resp.Nodes {
						name := n.Name
						if name == "" {
							name = "-"
						}
						if n.Leader {
							name += " *"
						}
						addr := n.Address
						if addr == "" {
							addr = g.addr
						}
						seen := "-"
						if n.LastSeen != nil {
							seen = now.Sub(n.LastSeen.AsTime()).Round(100*time.Millisecond).String() + " ago"
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", name, addr, orDash(n.Version), poolsText(n.Pools),
							n.Running, n.Queued, n.Capacity, seen)
					}
				})
			})
		},
	}
}

// poolsText shows a node's pools as name(free/all), "-" for none.
func poolsText(pools []*aurav1.NodePool) string {
	if len(pools) == 0 {
		return "-"
	}
	parts := make([]string, len(pools))
	for i, p := range pools {
		parts[i] = fmt.Sprintf("%s(%d/%d)", p.Name, len(p.Free), len(p.Instances))
	}
	return strings.Join(parts, ",")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
