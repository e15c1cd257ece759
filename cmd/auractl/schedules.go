package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/aura-dev/aura/client"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// schedulesCmd is `auractl schedules list|pause|resume|trigger|backfill`.
func schedulesCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schedules",
		Short: "Show and steer the plans' schedules and triggers (schedules.yaml)",
	}
	cmd.AddCommand(schedulesListCmd(g), schedulePauseCmd(g, true), schedulePauseCmd(g, false), scheduleTriggerCmd(g), scheduleBackfillCmd(g))
	return cmd
}

func scheduleClient(c *client.Client) aurav1.ScheduleServiceClient {
	return aurav1.NewScheduleServiceClient(c.Conn())
}

func schedulesListCmd(g *globals) *cobra.Command {
	var next int
	cmd := &cobra.Command{
		Use:   "list [PLAN]",
		Short: "List schedules: next fire times, last fire, its task and status",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &aurav1.ListSchedulesRequest{NextCount: int32(next)}
			if len(args) == 1 {
				req.Plan = args[0]
			}
			return g.unary(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := scheduleClient(c).ListSchedules(ctx, req)
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), resp, func(tw *tabwriter.Writer) {
					fmt.Fprintln(tw, "SCHEDULE\tTASK\tWHEN\tOVERLAP\tNEXT\tLAST TICK\tLAST TASK\tSTATUS")
					for _, s := range resp.Schedules {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Task, scheduleWhen(s), s.Overlap,
							nextTimes(s.NextFireTimes), ts(s.LastTick, s.LastTick != nil), dash(s.LastTaskId), lastStatus(s))
					}
				})
			})
		},
	}
	cmd.Flags().IntVar(&next, "next", 1, "how many next fire times to show (at most 10)")
	return cmd
}

func scheduleWhen(s *aurav1.Schedule) string {
	when := ""
	switch {
	case s.AfterTask != "":
		when = "after " + s.AfterTask + " " + strings.Join(s.AfterStatus, "|")
	case s.Cron != "":
		when = "cron " + s.Cron + " " + s.Timezone
	default:
		when = "every " + s.Every
	}
	if s.Paused {
		when += " (paused)"
	}
	return when
}

func nextTimes(ts []*timestamppb.Timestamp) string {
	if len(ts) == 0 {
		return "-"
	}
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.AsTime().Local().Format("2006-01-02 15:04:05")
	}
	return strings.Join(out, ", ")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func lastStatus(s *aurav1.Schedule) string {
	if s.LastTaskId == "" || s.LastTaskStatus == aurav1.TaskStatus_TASK_STATUS_UNSPECIFIED {
		return "-"
	}
	return statusName(s.LastTaskStatus)
}

func schedulePauseCmd(g *globals, pause bool) *cobra.Command {
	use, short := "resume PLAN/NAME", "Let a paused schedule fire again from its next tick"
	if pause {
		use, short = "pause PLAN/NAME", "Stop a schedule firing until resumed (kept across restarts)"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.unary(cmd, func(ctx context.Context, c *client.Client) error {
				var s *aurav1.Schedule
				var err error
				if pause {
					s, err = scheduleClient(c).PauseSchedule(ctx, &aurav1.PauseScheduleRequest{Schedule: args[0]})
				} else {
					s, err = scheduleClient(c).ResumeSchedule(ctx, &aurav1.ResumeScheduleRequest{Schedule: args[0]})
				}
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), s, func(tw *tabwriter.Writer) {
					state := "resumed"
					if s.Paused {
						state = "paused"
					}
					fmt.Fprintf(tw, "%s %s; next fire %s\n", s.Name, state, nextTimes(s.NextFireTimes))
				})
			})
		},
	}
}

func scheduleTriggerCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "trigger PLAN/NAME",
		Short: "Fire a schedule now (its overlap policy applies)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.unary(cmd, func(ctx context.Context, c *client.Client) error {
				r, err := scheduleClient(c).TriggerSchedule(ctx, &aurav1.TriggerScheduleRequest{Schedule: args[0]})
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), r, func(tw *tabwriter.Writer) { fireLine(tw, r) })
			})
		},
	}
}

func fireLine(tw *tabwriter.Writer, r *aurav1.TriggerScheduleResponse) {
	tick := r.Tick.AsTime().UTC().Format(time.RFC3339Nano)
	switch {
	case r.SkippedReason != "":
		fmt.Fprintf(tw, "%s\tskipped\t%s\n", tick, r.SkippedReason)
	case r.Deduplicated:
		fmt.Fprintf(tw, "%s\t%s\t(fired before)\n", tick, r.TaskId)
	default:
		fmt.Fprintf(tw, "%s\t%s\n", tick, r.TaskId)
	}
}

func scheduleBackfillCmd(g *globals) *cobra.Command {
	var from, to string
	cmd := &cobra.Command{
		Use:   "backfill PLAN/NAME --from T --to T",
		Short: "Fire every tick of a schedule in [from, to) (RFC 3339 times); ticks fired before are not fired again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := time.Parse(time.RFC3339, from)
			if err != nil {
				return fmt.Errorf("--from %q: want an RFC 3339 time such as 2026-01-02T15:04:05Z", from)
			}
			t, err := time.Parse(time.RFC3339, to)
			if err != nil {
				return fmt.Errorf("--to %q: want an RFC 3339 time such as 2026-01-02T15:04:05Z", to)
			}
			return g.unary(cmd, func(ctx context.Context, c *client.Client) error {
				r, err := scheduleClient(c).BackfillSchedule(ctx, &aurav1.BackfillScheduleRequest{
					Schedule: args[0], From: timestamppb.New(f), To: timestamppb.New(t)})
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), r, func(tw *tabwriter.Writer) {
					fmt.Fprintln(tw, "TICK\tTASK")
					for _, f := range r.Fires {
						fireLine(tw, f)
					}
				})
			})
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "first tick time, RFC 3339 (included)")
	cmd.Flags().StringVar(&to, "to", "", "end, RFC 3339 (excluded)")
	_ = cmd.MarkFlagRequired("from")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}
