package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/aura-dev/aura/client"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

type globals struct {
	addr      string
	output    string
	tokenFile string
	timeout   time.Duration

	// addrGiven: --addr was on the command line, so the commands auractl
	// suggests must carry it too.
	addrGiven func() bool

	tls                    bool
	tlsCA, tlsCert, tlsKey string
	tlsServerName          string
}

func newRoot() (*cobra.Command, *globals) {
	g := &globals{}
	root := &cobra.Command{
		Use:           "auractl",
		Short:         "Command-line client for the aurad task execution daemon",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	addr := os.Getenv("AURA_ADDR")
	if addr == "" {
		addr = client.DefaultAddr
	}
	root.PersistentFlags().StringVar(&g.addr, "addr", addr, "aurad address, host:port or unix:///path (env AURA_ADDR)")
	g.addrGiven = func() bool { return root.PersistentFlags().Changed("addr") }
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "table", "output format: table, json or yaml")
	root.PersistentFlags().StringVar(&g.tokenFile, "token-file", "", "file holding a bearer token (env AURA_TOKEN holds one directly)")
	root.PersistentFlags().DurationVar(&g.timeout, "rpc-timeout", 30*time.Second, "deadline for one-shot calls")
	pf := root.PersistentFlags()
	pf.BoolVar(&g.tls, "tls", os.Getenv("AURA_TLS") == "1", "connect over TLS (implied by --tls-ca/--tls-cert; env AURA_TLS=1)")
	pf.StringVar(&g.tlsCA, "tls-ca", os.Getenv("AURA_TLS_CA"), "CA bundle (PEM) to verify aurad's certificate (default: system roots; env AURA_TLS_CA)")
	pf.StringVar(&g.tlsCert, "tls-cert", os.Getenv("AURA_TLS_CERT"), "client certificate (PEM) for mTLS (env AURA_TLS_CERT)")
	pf.StringVar(&g.tlsKey, "tls-key", os.Getenv("AURA_TLS_KEY"), "client private key (PEM) for mTLS (env AURA_TLS_KEY)")
	pf.StringVar(&g.tlsServerName, "tls-server-name", os.Getenv("AURA_TLS_SERVER_NAME"), "name to verify in aurad's certificate (default: the host in --addr)")
	root.AddCommand(submitCmd(g), rerunCmd(g), getCmd(g), listCmd(g), cancelCmd(g), watchCmd(g), plansCmd(g), statsCmd(g), resourcesCmd(g), nodesCmd(g), hooksCmd(g), logsCmd(g), schedulesCmd(g), interruptsCmd(g), versionCmd(g))
	registerCompletion(root, g)
	markUsageErrors(root)
	return root, g
}

func (g *globals) dial() (*client.Client, error) {
	switch g.output {
	case "table", "json", "yaml":
	default:
		return nil, fmt.Errorf("--output: unknown format %q (want table, json or yaml)", g.output)
	}
	var opts []client.Option
	token := os.Getenv("AURA_TOKEN")
	if g.tokenFile != "" {
		b, err := os.ReadFile(g.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token != "" {
		opts = append(opts, client.WithToken(token))
	}
	if cfg, err := g.tlsConfig(); err != nil {
		return nil, err
	} else if cfg != nil {
		opts = append(opts, client.WithTLS(cfg))
	}
	return client.Dial(g.addr, opts...)
}

// self is how to run auractl again against the same aurad, for the
// commands it suggests.
func (g *globals) self() string {
	if g.addrGiven != nil && g.addrGiven() {
		return "auractl --addr " + g.addr
	}
	return "auractl"
}

// hasToken reports whether a bearer token was given.
func (g *globals) hasToken() bool {
	return g.tokenFile != "" || os.Getenv("AURA_TOKEN") != ""
}

// usesTLS reports whether auractl connects over TLS, as dial decides.
func (g *globals) usesTLS() bool {
	return g.tls || g.tlsCA != "" || g.tlsCert != "" || g.tlsKey != ""
}

func (g *globals) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, g.timeout)
}

// unary dials aurad, runs fn under --rpc-timeout and hangs up.
func (g *globals) unary(cmd *cobra.Command, fn func(ctx context.Context, c *client.Client) error) error {
	c, err := g.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := g.callCtx(cmd.Context())
	defer cancel()
	return fn(ctx, c)
}

// print writes a message as json, yaml, or with the table printer.
func (g *globals) print(w io.Writer, m proto.Message, table func(w *tabwriter.Writer)) error {
	switch g.output {
	case "json", "yaml":
		b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
		if err != nil {
			return err
		}
		if g.output == "yaml" {
			if b, err = yaml.JSONToYAML(b); err != nil {
				return err
			}
			_, err = w.Write(b)
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

// printLine writes one event per line: a JSON object with -o json, else text.
func (g *globals) printLine(w io.Writer, m proto.Message, text string) error {
	if g.output == "json" || g.output == "yaml" {
		b, err := protojson.Marshal(m)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	}
	_, err := fmt.Fprintln(w, text)
	return err
}

func statusName(s aurav1.TaskStatus) string {
	return strings.TrimPrefix(s.String(), "TASK_STATUS_")
}

func stepStatusName(s aurav1.StepStatus) string {
	return strings.TrimPrefix(s.String(), "STEP_STATUS_")
}

func ts(t interface{ AsTime() time.Time }, ok bool) string {
	if !ok {
		return "-"
	}
	return t.AsTime().Local().Format("2006-01-02 15:04:05")
}

func taskTable(tw *tabwriter.Writer, t *aurav1.Task) {
	fmt.Fprintf(tw, "ID:\t%s\n", t.Id)
	fmt.Fprintf(tw, "Task:\t%s\n", t.Task)
	fmt.Fprintf(tw, "Status:\t%s\n", statusName(t.Status))
	if t.Error != nil {
		fmt.Fprintf(tw, "Error:\t%s: %s\n", t.Error.Kind, t.Error.Message)
		if t.Error.Step != "" {
			fmt.Fprintf(tw, "Failed step:\t%s\n", t.Error.Step)
		}
	}
	if t.ParentId != "" {
		fmt.Fprintf(tw, "Parent:\t%s\n", t.ParentId)
	}
	fmt.Fprintf(tw, "Created:\t%s\n", ts(t.CreatedAt, t.CreatedAt != nil))
	fmt.Fprintf(tw, "Started:\t%s\n", ts(t.StartedAt, t.StartedAt != nil))
	fmt.Fprintf(tw, "Finished:\t%s\n", ts(t.FinishedAt, t.FinishedAt != nil))
	if t.Result != nil {
		b, _ := protojson.Marshal(t.Result)
		fmt.Fprintf(tw, "Result:\t%s\n", b)
	}
	if len(t.Steps) > 0 {
		fmt.Fprintf(tw, "Steps:\n")
		for _, s := range t.Steps {
			line := fmt.Sprintf("  %s\t%s\tattempts=%d", s.Id, stepStatusName(s.Status), s.Attempts)
			if s.Error != "" {
				line += "\t" + s.Error
			}
			fmt.Fprintln(tw, line)
		}
	}
}

// exitCode is 0 only for success; other outcomes get distinct codes so
// scripts can tell them apart.
// exitCodeTable is exitCode and the codes of stopping early, as the help
// text shows them.
const exitCodeTable = `  0    succeeded
  2    failed
  3    timed out
  4    cancelled
  5    state planning failed
  6    interrupted (aurad stopped while it ran)
  130  Ctrl-C stopped auractl (143: SIGTERM); the task goes on in aurad
  1    auractl could not do what was asked (bad input, no aurad, ...)`

// outcomeExitCodes is the exit-code help of the commands that submit.
const outcomeExitCodes = "With --wait or --follow (or -q --wait), the exit code says how the task ended:\n" + exitCodeTable

func exitCode(s aurav1.TaskStatus) int {
	switch s {
	case aurav1.TaskStatus_TASK_STATUS_SUCCEEDED:
		return 0
	case aurav1.TaskStatus_TASK_STATUS_TIMED_OUT:
		return 3
	case aurav1.TaskStatus_TASK_STATUS_CANCELLED:
		return 4
	case aurav1.TaskStatus_TASK_STATUS_PLANNING_FAILED:
		return 5
	case aurav1.TaskStatus_TASK_STATUS_INTERRUPTED:
		return 6
	}
	return 2
}

// eventLine renders one event as a line: its time, n (the event's number
// in what is shown), type, step and what it says.
func eventLine(n uint64, ev *aurav1.TaskEvent) string {
	t := ev.Time.AsTime().Local().Format("15:04:05.000")
	parts := []string{t, fmt.Sprintf("#%d", n), ev.Type}
	if ev.Step != "" {
		parts = append(parts, ev.Step)
	}
	switch {
	case ev.Type == "step.retrying":
		next := fmt.Sprintf("attempt %d/%d", ev.Attempt, ev.MaxAttempts)
		if d := ev.RetryDelay.AsDuration(); d > 0 {
			next += " in " + d.String()
		} else {
			next += " now"
		}
		parts = append(parts, next)
		if ev.Message != "" {
			parts = append(parts, "after: "+ev.Message)
		}
		if ev.TaskId != "" {
			parts = append(parts, "task="+ev.TaskId)
		}
		return strings.Join(parts, "  ")
	case ev.Attempt > 1:
		parts = append(parts, fmt.Sprintf("attempt=%d", ev.Attempt))
	}
	if ev.Task != nil && (ev.Type == "task.finished" || ev.Type == "task.queued") {
		parts = append(parts, statusName(ev.Status))
	}
	if ev.Message != "" && ev.Message != ev.Status.String() {
		parts = append(parts, ev.Message)
	}
	if ev.TaskId != "" {
		parts = append(parts, "task="+ev.TaskId)
	}
	return strings.Join(parts, "  ")
}

func getCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show one task",
		Args:  taskIDArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.unary(cmd, func(ctx context.Context, c *client.Client) error {
				t, err := c.Get(ctx, args[0])
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), t, func(tw *tabwriter.Writer) { taskTable(tw, t) })
			})
		},
	}
}

func listCmd(g *globals) *cobra.Command {
	var (
		statusF, plan, selector, token string
		limit                          int32
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tasks, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &aurav1.ListTasksRequest{Plan: plan, LabelSelector: selector, PageSize: limit, PageToken: token}
			if statusF != "" {
				v, ok := aurav1.TaskStatus_value["TASK_STATUS_"+strings.ToUpper(statusF)]
				if !ok {
					return fmt.Errorf("--status: unknown status %q", statusF)
				}
				req.Status = aurav1.TaskStatus(v)
			}
			return g.unary(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Exec.ListTasks(ctx, req)
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), resp, func(tw *tabwriter.Writer) {
					fmt.Fprintln(tw, "ID\tTASK\tSTATUS\tCREATED\tERROR")
					for _, t := range resp.Tasks {
						msg := ""
						if t.Error != nil {
							msg = t.Error.Kind + ": " + t.Error.Message
							if len(msg) > 60 {
								msg = msg[:57] + "..."
							}
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.Id, t.Task, statusName(t.Status), ts(t.CreatedAt, t.CreatedAt != nil), msg)
					}
					if resp.NextPageToken != "" {
						fmt.Fprintf(tw, "(more: --page-token %s)\n", resp.NextPageToken)
					}
				})
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&statusF, "status", "", "only this status (queued, running, succeeded, failed, ...)")
	f.StringVar(&plan, "plan", "", "only tasks of this plan")
	f.StringVarP(&selector, "selector", "l", "", "label selector, e.g. team=qa,env!=prod")
	f.Int32Var(&limit, "limit", 50, "page size")
	f.StringVar(&token, "page-token", "", "continue from a previous page")
	return cmd
}

func cancelCmd(g *globals) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a queued or running task (exit 7 when it had already ended)",
		Args:  taskIDArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.unary(cmd, func(ctx context.Context, c *client.Client) error {
				// CancelTask leaves an ended task alone and returns it; what it
				// was before the call tells "cancelled now" from "had ended".
				// A token with the cancel role alone may not read tasks: then
				// only the answer can tell.
				before, err := c.Get(ctx, args[0])
				if err != nil && status.Code(err) != codes.PermissionDenied {
					return err
				}
				t := before
				if before == nil || !terminal(before.Status) {
					if t, err = c.Cancel(ctx, args[0], reason); err != nil {
						return err
					}
				}
				if err := g.print(cmd.OutOrStdout(), t, func(tw *tabwriter.Writer) { taskTable(tw, t) }); err != nil {
					return err
				}
				switch {
				case before != nil && terminal(before.Status):
					return &exitError{code: exitNothingToCancel, msg: fmt.Sprintf("task %s had already ended %s at %s: nothing to cancel",
						t.Id, statusName(t.Status), ts(t.FinishedAt, t.FinishedAt != nil))}
				case terminal(t.Status) && t.Status != aurav1.TaskStatus_TASK_STATUS_CANCELLED:
					return &exitError{code: exitNothingToCancel, msg: fmt.Sprintf("task %s ended %s before the cancel reached it: nothing was cancelled",
						t.Id, statusName(t.Status))}
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "requested with auractl", "why (recorded as the task's error)")
	return cmd
}

// terminal reports whether a task with status s has ended for good.
func terminal(s aurav1.TaskStatus) bool {
	switch s {
	case aurav1.TaskStatus_TASK_STATUS_UNSPECIFIED, aurav1.TaskStatus_TASK_STATUS_QUEUED,
		aurav1.TaskStatus_TASK_STATUS_PLANNING, aurav1.TaskStatus_TASK_STATUS_RUNNING:
		return false
	}
	return true
}

func watchCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "watch [ID]",
		Short: "Print a task's events until it ends, or every new event",
		Long: "With an ID, print that task's events until it ends; without, print every new event until\n" +
			"Ctrl-C.\n\nWith an ID, the exit code says how the task ended:\n" + exitCodeTable,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			id := ""
			if len(args) == 1 {
				id = args[0]
			}
			out := cmd.OutOrStdout()
			var final *aurav1.Task
			var n uint64
			err = c.Watch(cmd.Context(), id, func(ev *aurav1.TaskEvent) error {
				if ev.Type == "task.finished" && id != "" {
					final = ev.Task
				}
				// One task's events are numbered from 1 as shown; every
				// task's keep the global sequence, which ties them together.
				n++
				shown := ev.Sequence
				if id != "" {
					shown = n
				}
				return g.printLine(out, ev, eventLine(shown, ev))
			})
			if err != nil {
				if cmd.Context().Err() != nil && id == "" {
					return nil
				}
				if interruptedBy(cmd.Context()) != nil {
					return g.detached(c, id, signalExitCode(cmd.Context()))
				}
				return err
			}
			if final != nil && final.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
				return &exitError{code: exitCode(final.Status)}
			}
			return nil
		},
	}
}

func statsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "stats",
		Short: "Show limits, queues, pools and task counts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.unary(cmd, func(ctx context.Context, c *client.Client) error {
				s, err := c.Exec.GetStats(ctx, &aurav1.GetStatsRequest{})
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), s, func(tw *tabwriter.Writer) {
					fmt.Fprintln(tw, "RESOURCE\tLIMIT\tIN USE\tWAITING")
					for _, r := range append([]*aurav1.ResourceStats{s.Global}, s.Resources...) {
						fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", r.Key, r.Limit, r.InUse, r.Waiting)
					}
					fmt.Fprintln(tw)
					fmt.Fprintln(tw, "POOL\tSIZE\tLIVE\tBUSY\tQUEUED\tRESTARTS\tCRASHES")
					for _, p := range s.Pools {
						fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\n", p.Name, p.Size, p.Live, p.Busy, p.Queued, p.Restarts, p.Crashes)
					}
					fmt.Fprintln(tw)
					if len(s.Principals) > 0 {
						fmt.Fprintln(tw, "PRINCIPAL\tIN USE\tWAITING\tMAX WAITING\tFAIR SHARE")
						for _, p := range s.Principals {
							fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%.1f\n", p.Principal, p.InUse, p.Waiting, boundText(p.MaxWaiting), p.FairShare)
						}
						fmt.Fprintf(tw, "queued in all at most %s\n\n", boundText(s.MaxQueued))
					}
					keys := make([]string, 0, len(s.CountsByStatus))
					for k := range s.CountsByStatus {
						keys = append(keys, k)
					}
					sort.Strings(keys)
					fmt.Fprintln(tw, "STATUS\tTASKS")
					for _, k := range keys {
						fmt.Fprintf(tw, "%s\t%d\n", strings.TrimPrefix(k, "TASK_STATUS_"), s.CountsByStatus[k])
					}
					fmt.Fprintf(tw, "\nlast sequence %d, %d hook subscribers, %d interceptors\n", s.LastSequence, s.HookSubscribers, s.Interceptors)
				})
			})
		},
	}
}

// boundText shows a queue bound, 0 being none.
func boundText(n int32) string {
	if n <= 0 {
		return "unbounded"
	}
	return strconv.Itoa(int(n))
}

func hooksCmd(g *globals) *cobra.Command {
	hooksRoot := &cobra.Command{Use: "hooks", Short: "Follow lifecycle hook events"}
	var (
		names   []string
		from    int64
		plan    string
		cluster bool
		nodes   []string
	)
	tail := &cobra.Command{
		Use:   "tail",
		Short: "Print hook events as they happen (with --from, replay stored ones first)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			o := client.SubscribeOptions{Hooks: names, Plan: plan, Cluster: cluster, Nodes: nodes}
			if len(nodes) > 0 && !cluster {
				return errors.New("--node: needs --cluster")
			}
			if cmd.Flags().Changed("from") {
				if from < 0 {
					return fmt.Errorf("--from: must not be negative")
				}
				v := uint64(from)
				o.After = &v
			}
			out := bufio.NewWriter(cmd.OutOrStdout())
			defer out.Flush()
			err = c.Subscribe(cmd.Context(), o, func(ev *aurav1.HookEvent) error {
				seq := fmt.Sprintf("#%d", ev.Sequence)
				if cluster {
					seq = ev.Node + seq // each node numbers its own events
				}
				line := fmt.Sprintf("%s  %s  %s  %s  %s  %s", seq, ev.Time.AsTime().Local().Format("15:04:05.000"),
					ev.Hook, ev.Task.GetId(), ev.Task.GetTask(), statusName(ev.Task.GetStatus()))
				if err := g.printLine(out, ev, line); err != nil {
					return err
				}
				return out.Flush()
			})
			if cmd.Context().Err() != nil {
				return nil
			}
			return err
		},
	}
	tail.Flags().StringArrayVar(&names, "hook", nil, "only this hook point (repeatable)")
	tail.Flags().Int64Var(&from, "from", 0, "replay stored hook events after this sequence first")
	tail.Flags().StringVar(&plan, "plan", "", "only tasks of this plan")
	tail.Flags().BoolVar(&cluster, "cluster", false, "every node of the cluster on one stream (lines start with the node; --from applies to each node)")
	tail.Flags().StringArrayVar(&nodes, "node", nil, "with --cluster, only this node (repeatable)")
	hooksRoot.AddCommand(tail)
	return hooksRoot
}

// tlsConfig builds the client's TLS settings; nil means plaintext.
func (g *globals) tlsConfig() (*tls.Config, error) {
	if !g.tls && g.tlsCA == "" && g.tlsCert == "" && g.tlsKey == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: g.tlsServerName}
	if g.tlsCA != "" {
		pem, err := os.ReadFile(g.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificates found", g.tlsCA)
		}
		cfg.RootCAs = pool
	}
	if (g.tlsCert == "") != (g.tlsKey == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	if g.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(g.tlsCert, g.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
