package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/aura-dev/aura/client"
	"github.com/aura-dev/aura/internal/suggest"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

func plansCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plans [PLAN]",
		Short: "List plans and their tasks (plans show PLAN/TASK describes one task)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.unary(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Exec.ListPlans(ctx, &aurav1.ListPlansRequest{})
				if err != nil {
					return err
				}
				if len(args) == 1 {
					var keep []*aurav1.Plan
					var names []string
					for _, p := range resp.Plans {
						names = append(names, p.Name)
						if p.Name == args[0] {
							keep = append(keep, p)
						}
					}
					if len(keep) == 0 {
						return fmt.Errorf("no plan %q%s; the plans are %s", args[0], suggest.Hint(args[0], names), strings.Join(names, ", "))
					}
					resp.Plans = keep
				}
				return g.print(cmd.OutOrStdout(), resp, func(tw *tabwriter.Writer) { plansTable(tw, resp.Plans) })
			})
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "reload",
		Short: "Reload the daemon's plan directory",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.unary(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Exec.ReloadPlans(ctx, &aurav1.ReloadPlansRequest{})
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), resp, func(tw *tabwriter.Writer) { plansTable(tw, resp.Plans) })
			})
		},
	}, planShowCmd(g))
	return cmd
}

// plansTable shows each plan with its title and description, then its
// tasks, one line each.
func plansTable(tw *tabwriter.Writer, plans []*aurav1.Plan) {
	for i, p := range plans {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		head := p.Name
		if p.Title != "" {
			head += " - " + p.Title
		}
		if !p.Available {
			head += "  (UNAVAILABLE)"
		}
		// Lines without a tab do not take part in the columns.
		fmt.Fprintln(tw, head)
		if d := strings.TrimSpace(p.Description); d != "" {
			for _, line := range strings.Split(d, "\n") {
				fmt.Fprintln(tw, "  "+line)
			}
		}
		if !p.Available {
			for _, e := range p.Errors {
				fmt.Fprintln(tw, "  "+e)
			}
			continue
		}
		fmt.Fprintln(tw, "  TASK\tTITLE\tINPUTS\tSTATE")
		for _, t := range p.Tasks {
			var ins []string
			for _, in := range t.Inputs {
				s := in.Name + ":" + in.Type
				if in.Required {
					s += "!"
				}
				ins = append(ins, s)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", t.Id, t.Title, strings.Join(ins, ","), t.GetMeta().GetRequiresInitialState())
		}
	}
}

// planShowCmd describes one task: what it is for, its inputs and defaults,
// its settings and its steps.
func planShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show PLAN/TASK",
		Short: "Describe one task: inputs, settings and steps",
		Args:  taskNameArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.unary(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Exec.ListPlans(ctx, &aurav1.ListPlansRequest{})
				if err != nil {
					return err
				}
				var ids []string
				for _, p := range resp.Plans {
					for _, t := range p.Tasks {
						ids = append(ids, t.Id)
						if t.Id == args[0] {
							return g.print(cmd.OutOrStdout(), t, func(tw *tabwriter.Writer) { taskInfoTable(tw, p, t) })
						}
					}
				}
				for _, p := range resp.Plans {
					if p.Name == args[0] && len(p.Tasks) > 0 {
						return fmt.Errorf("%q is a plan, not a task: name one of its tasks, e.g. auractl plans show %s (auractl plans %s lists them all)",
							args[0], p.Tasks[0].Id, p.Name)
					}
				}
				return fmt.Errorf("no task %q%s; auractl plans lists the tasks", args[0], suggest.Hint(args[0], ids))
			})
		},
	}
}

func taskInfoTable(tw *tabwriter.Writer, p *aurav1.Plan, t *aurav1.TaskInfo) {
	fmt.Fprintf(tw, "Task:\t%s\n", t.Id)
	if t.Title != "" {
		fmt.Fprintf(tw, "Title:\t%s\n", t.Title)
	}
	if d := strings.TrimSpace(t.Description); d != "" {
		fmt.Fprintf(tw, "Description:\t%s\n", strings.ReplaceAll(d, "\n", " "))
	}
	plan := p.Name
	if p.Title != "" {
		plan += " - " + p.Title
	}
	fmt.Fprintf(tw, "Plan:\t%s\n", plan)
	if m := t.Meta; m != nil {
		fmt.Fprintf(tw, "Mode:\t%s\n", strings.ToLower(strings.TrimPrefix(m.ExecutionMode.String(), "EXECUTION_MODE_")))
		if m.Timeout != nil {
			fmt.Fprintf(tw, "Timeout:\t%s\n", m.Timeout.AsDuration())
		}
		if m.Priority != 0 {
			fmt.Fprintf(tw, "Priority:\t%d\n", m.Priority)
		}
		if len(m.ResourceTags) > 0 {
			fmt.Fprintf(tw, "Resource tags:\t%s\n", strings.Join(m.ResourceTags, ", "))
		}
		if m.RequiresInitialState != "" {
			fmt.Fprintf(tw, "Requires state:\t%s\n", m.RequiresInitialState)
		}
		if m.OnInterrupt != "" {
			fmt.Fprintf(tw, "On interrupt:\t%s\n", m.OnInterrupt)
		}
	}
	if len(t.Inputs) == 0 {
		fmt.Fprintln(tw, "Inputs:\tnone")
	} else {
		fmt.Fprintln(tw, "Inputs:")
		for _, in := range t.Inputs {
			need := "optional"
			switch {
			case in.Required:
				need = "required"
			case in.Default != nil:
				b, _ := protojson.Marshal(in.Default)
				need = "default " + string(b)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", in.Name, in.Type, need, in.Description)
		}
	}
	order := "in order"
	if !t.Sequential {
		order = "a graph, by depends_on"
	}
	fmt.Fprintf(tw, "Steps:\t(%s)\n", order)
	for _, s := range t.Steps {
		var notes []string
		if len(s.DependsOn) > 0 {
			dep := "after " + strings.Join(s.DependsOn, ", ")
			if s.DependsMode == "any" && len(s.DependsOn) > 1 {
				dep = "after any of " + strings.Join(s.DependsOn, ", ")
			}
			notes = append(notes, dep)
		}
		if s.Conditional {
			notes = append(notes, "when")
		}
		if s.Loop {
			notes = append(notes, "loop")
		}
		if s.MaxAttempts > 1 {
			notes = append(notes, fmt.Sprintf("retry %d", s.MaxAttempts))
		}
		if s.Timeout != nil {
			notes = append(notes, "timeout "+s.Timeout.AsDuration().String())
		}
		if s.Lane != "" {
			notes = append(notes, "lane "+s.Lane)
		}
		if s.ContinueOnFailure {
			notes = append(notes, "continue_on_failure")
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", s.Id, s.Action, strings.Join(notes, ", "))
	}
}
