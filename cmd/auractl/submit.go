package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/aura-dev/aura/client"
	"github.com/aura-dev/aura/internal/suggest"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// reportFlags say what submit and rerun print after the submission.
type reportFlags struct {
	wait, follow, quiet bool
}

func (f *reportFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.BoolVar(&f.wait, "wait", false, "wait for the task to end and print it")
	fl.BoolVar(&f.follow, "follow", false, "print each event as it happens, then the final status")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "print only the task id (with --wait, then wait silently: the exit code says how it ended)")
	cmd.MarkFlagsMutuallyExclusive("wait", "follow")
	cmd.MarkFlagsMutuallyExclusive("quiet", "follow")
}

func submitCmd(g *globals) *cobra.Command {
	var (
		inputs       []string
		inputsJSON   string
		tags         []string
		labels       []string
		timeout      time.Duration
		mode         string
		priority     int32
		idem         string
		skipPlanning bool
		preempt      bool
		preemptible  bool
		report       reportFlags
	)
	cmd := &cobra.Command{
		Use:   "submit PLAN/TASK",
		Short: "Submit a task (with --wait or --follow, exit 0 only when it succeeds)",
		Long:  "Submit a task. Without --wait or --follow, print its id and status and return.\n\n" + outcomeExitCodes,
		Args:  taskNameArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &aurav1.SubmitRequest{Task: args[0], ResourceTags: tags, Priority: priority,
				IdempotencyKey: idem, SkipPlanning: skipPlanning, Preempt: preempt, Preemptible: preemptible}
			if cmd.Flags().Changed("timeout") {
				req.Timeout = durationpb.New(timeout)
			}
			switch mode {
			case "":
			case "io":
				req.ExecutionMode = aurav1.ExecutionMode_EXECUTION_MODE_IO
			case "cpu":
				req.ExecutionMode = aurav1.ExecutionMode_EXECUTION_MODE_CPU
			default:
				return fmt.Errorf("--mode: want io or cpu, got %q", mode)
			}
			if len(labels) > 0 {
				req.Labels = map[string]string{}
				for _, l := range labels {
					k, v, ok := strings.Cut(l, "=")
					if !ok {
						return fmt.Errorf("--label %q: want key=value", l)
					}
					req.Labels[k] = v
				}
			}
			c, err := g.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			var schema *aurav1.TaskInfo
			if len(inputs) > 0 {
				// --input values are text; the task's declared types say
				// what each one means, so "123" stays a string for a
				// string input. Without the schema (no read role, say),
				// aurad still converts text to int, float and bool.
				schema, _ = g.taskInfo(cmd.Context(), c, args[0])
			}
			if req.Inputs, err = parseInputs(inputs, inputsJSON, schema); err != nil {
				return err
			}
			return g.submitAndReport(cmd, c, req, report)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&inputs, "input", nil, "input name=value (repeatable), read as the task's declared type: text for string, a number for int and float, true/false for bool, JSON for list and map")
	f.StringVar(&inputsJSON, "inputs-json", "", `inputs as a JSON object, sent as written (e.g. '{"n": 3, "tags": ["a"]}')`)
	f.StringArrayVar(&tags, "tag", nil, "extra resource tag, e.g. device:emulator-5554:1 (repeatable)")
	f.StringArrayVar(&labels, "label", nil, "label key=value (repeatable)")
	f.DurationVar(&timeout, "timeout", 0, "task timeout (default: the task's own)")
	f.StringVar(&mode, "mode", "", "execution mode: io or cpu (default: the task's own)")
	f.Int32Var(&priority, "priority", 0, "priority, higher first")
	f.StringVar(&idem, "idempotency-key", "", "idempotency key: a repeated key returns the first task")
	f.BoolVar(&skipPlanning, "skip-planning", false, "run without state planning")
	f.BoolVar(&preempt, "preempt", false, "may take a pool instance from a running preemptible task of lower priority (docs/preemption.md)")
	f.BoolVar(&preemptible, "preemptible", false, "may be preempted by a --preempt task of higher priority")
	report.register(cmd)
	return cmd
}

// rerunCmd submits a task again as it was first submitted: same task,
// inputs, extra tags, labels, priority, mode, timeout and planning choice;
// never the idempotency key, which would only return the old task.
func rerunCmd(g *globals) *cobra.Command {
	var report reportFlags
	cmd := &cobra.Command{
		Use:   "rerun ID",
		Short: "Submit a task again with the same task, inputs, tags and labels",
		Long: "Submit a task again as it was first submitted: the same task, inputs, extra tags, labels,\n" +
			"priority, mode, timeout and planning choice (never its idempotency key).\n\n" + outcomeExitCodes,
		Args: taskIDArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := g.callCtx(cmd.Context())
			old, err := c.Get(ctx, args[0])
			cancel()
			if err != nil {
				return err
			}
			req := &aurav1.SubmitRequest{
				Task: old.Task, Inputs: old.Inputs, Priority: old.Priority, ExecutionMode: old.ExecutionMode,
				Timeout: old.Timeout, Labels: old.Labels, SkipPlanning: old.SkipPlanning,
			}
			// A task's recorded tags are its definition's followed by the
			// submission's; only the latter are sent again, or the
			// definition's would be counted twice.
			info, err := g.taskInfo(cmd.Context(), c, old.Task)
			if err != nil {
				return fmt.Errorf("reading the definition of %s: %w", old.Task, err)
			}
			if info == nil {
				return fmt.Errorf("task %s is no longer defined (auractl plans lists the tasks)", old.Task)
			}
			req.ResourceTags = extraTags(old.ResourceTags, info.GetMeta().GetResourceTags())
			return g.submitAndReport(cmd, c, req, report)
		},
	}
	report.register(cmd)
	return cmd
}

// extraTags is recorded with the definition's own tags taken out once each.
func extraTags(recorded, own []string) []string {
	left := map[string]int{}
	for _, t := range own {
		left[t]++
	}
	var out []string
	for _, t := range recorded {
		if left[t] > 0 {
			left[t]--
			continue
		}
		out = append(out, t)
	}
	return out
}

// taskInfo looks a task's definition up with ListPlans: nil, nil when
// there is no such task.
func (g *globals) taskInfo(ctx context.Context, c *client.Client, id string) (*aurav1.TaskInfo, error) {
	ctx, cancel := g.callCtx(ctx)
	defer cancel()
	resp, err := c.Exec.ListPlans(ctx, &aurav1.ListPlansRequest{})
	if err != nil {
		return nil, err
	}
	for _, p := range resp.Plans {
		for _, t := range p.Tasks {
			if t.Id == id {
				return t, nil
			}
		}
	}
	return nil, nil
}

// parseInputs builds the submission's inputs: --inputs-json as written,
// then each --input name=value converted by the input's declared type in
// schema (nil when unknown).
func parseInputs(kv []string, js string, schema *aurav1.TaskInfo) (*structpb.Struct, error) {
	m := map[string]any{}
	if js != "" {
		if err := json.Unmarshal([]byte(js), &m); err != nil {
			var typeErr *json.UnmarshalTypeError
			if errors.As(err, &typeErr) && typeErr.Field == "" {
				return nil, fmt.Errorf(`--inputs-json: want a JSON object of input names to values, e.g. '{"n": 3}', got a JSON %s`, typeErr.Value)
			}
			return nil, fmt.Errorf(`--inputs-json: not JSON (%v); want an object such as '{"n": 3}'`, err)
		}
	}
	for _, p := range kv {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--input %q: want name=value", p)
		}
		if schema == nil {
			m[k] = untypedInput(v)
			continue
		}
		var spec *aurav1.InputSpec
		var names []string
		for _, in := range schema.Inputs {
			names = append(names, in.Name)
			if in.Name == k {
				spec = in
			}
		}
		if spec == nil {
			if len(names) == 0 {
				return nil, fmt.Errorf("--input %s: task %s takes no inputs", k, schema.Id)
			}
			return nil, fmt.Errorf("--input %s: task %s has no input %q%s; its inputs are %s",
				k, schema.Id, k, suggest.Hint(k, names), strings.Join(names, ", "))
		}
		val, err := typedInput(spec.Type, v)
		if err != nil {
			return nil, fmt.Errorf("--input %s=%s: %s is %s input: %v", k, v, k, article(spec.Type), err)
		}
		m[k] = val
	}
	if len(m) == 0 {
		return nil, nil
	}
	return structpb.NewStruct(m)
}

// typedInput reads one command-line value as the declared type.
func typedInput(typ, v string) (any, error) {
	switch typ {
	case "string":
		return v, nil
	case "int":
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, errors.New("want a whole number, e.g. 3")
		}
		if n > 1<<53 || n < -(1<<53) {
			return nil, errors.New("too large: at most 2^53 in magnitude")
		}
		return float64(n), nil
	case "float":
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, errors.New("want a number, e.g. 0.5")
		}
		return f, nil
	case "bool":
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, errors.New("want true or false")
		}
		return b, nil
	case "list":
		var l []any
		if err := json.Unmarshal([]byte(v), &l); err != nil {
			return nil, errors.New(`want a JSON list, e.g. '["a","b"]'`)
		}
		return l, nil
	case "map":
		var o map[string]any
		if err := json.Unmarshal([]byte(v), &o); err != nil {
			return nil, errors.New(`want a JSON object, e.g. '{"k":"v"}'`)
		}
		return o, nil
	}
	// A type this auractl does not know: JSON when it is, else text.
	return untypedInput(v), nil
}

// untypedInput is a value for an input whose type is unknown: text, which
// aurad converts to int, float or bool as declared, except a JSON list or
// object, which text could never be converted to.
func untypedInput(v string) any {
	if strings.HasPrefix(v, "[") || strings.HasPrefix(v, "{") {
		var x any
		if json.Unmarshal([]byte(v), &x) == nil {
			return x
		}
	}
	return v
}

func article(typ string) string {
	if typ == "int" {
		return "an int"
	}
	return "a " + typ
}

// submitAndReport submits req and prints the answer; with --wait or
// --follow it stays with the task until it ends and exits by its status.
func (g *globals) submitAndReport(cmd *cobra.Command, c *client.Client, req *aurav1.SubmitRequest, o reportFlags) error {
	ctx := cmd.Context()
	cctx, cancel := g.callCtx(ctx)
	resp, err := c.Submit(cctx, req)
	cancel()
	if err != nil {
		if interruptedBy(ctx) != nil {
			return &exitError{code: signalExitCode(ctx), msg: "interrupted before aurad answered: the task may or may not have been accepted (auractl list shows the newest tasks)"}
		}
		return g.explainTaskError(ctx, c, req.Task, err)
	}
	out := cmd.OutOrStdout()
	switch {
	case o.quiet:
		fmt.Fprintln(out, resp.TaskId)
		if !o.wait {
			return nil
		}
	case !o.wait && !o.follow:
		return g.print(out, resp, func(tw *tabwriter.Writer) {
			fmt.Fprintf(tw, "%s\t%s", resp.TaskId, statusName(resp.Status))
			if resp.Deduplicated {
				fmt.Fprint(tw, "\t(deduplicated)")
			}
			fmt.Fprintln(tw)
		})
	}
	if o.follow && g.output == "table" {
		fmt.Fprintf(out, "submitted %s\n", resp.TaskId)
	}
	var final *aurav1.Task
	view := newFollowView(g, out, o.follow)
	err = c.Watch(ctx, resp.TaskId, func(ev *aurav1.TaskEvent) error {
		if ev.Type == "task.finished" {
			final = ev.Task
		}
		if o.follow {
			return view.event(ev)
		}
		return nil
	})
	view.close()
	if err != nil {
		if interruptedBy(ctx) != nil {
			return g.detached(c, resp.TaskId, signalExitCode(ctx))
		}
		return err
	}
	if final == nil {
		if final, err = c.Get(ctx, resp.TaskId); err != nil {
			return err
		}
	}
	if !o.quiet && (o.wait || g.output == "table") {
		if err := g.print(out, final, func(tw *tabwriter.Writer) { taskTable(tw, final) }); err != nil {
			return err
		}
	}
	if final.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		return &exitError{code: exitCode(final.Status)}
	}
	return nil
}

// explainTaskError adds to a refusal that names the task what the user
// can do: the closest task names and where to find them all.
func (g *globals) explainTaskError(ctx context.Context, c *client.Client, name string, err error) error {
	st, ok := status.FromError(err)
	if ok && st.Code() == codes.InvalidArgument && strings.HasPrefix(st.Message(), "inputs: ") {
		return status.Error(st.Code(), fmt.Sprintf("%s; auractl plans show %s lists its inputs (give one with --input NAME=VALUE)", st.Message(), name))
	}
	if !ok || (st.Code() != codes.NotFound && st.Code() != codes.InvalidArgument) || !strings.HasPrefix(st.Message(), "task: ") {
		return err
	}
	msg := st.Message()
	if !strings.Contains(msg, "did you mean") {
		lctx, cancel := g.callCtx(ctx)
		defer cancel()
		if resp, lerr := c.Exec.ListPlans(lctx, &aurav1.ListPlansRequest{}); lerr == nil {
			var ids []string
			for _, p := range resp.Plans {
				for _, t := range p.Tasks {
					ids = append(ids, t.Id)
				}
			}
			msg += suggest.Hint(name, ids)
		}
	}
	return status.Error(st.Code(), msg+"; auractl plans lists the tasks")
}
