package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/aura-dev/aura/internal/actions"
	"github.com/aura-dev/aura/internal/daemon"
	"github.com/aura-dev/aura/internal/plan"
)

// graphCmd is `aurad plan graph PLAN`: the plan's state map as a picture
// people can read (Graphviz DOT or Mermaid).
func graphCmd() *cobra.Command {
	var plansDir, format string
	cmd := &cobra.Command{
		Use:   "graph PLAN",
		Short: "Render a plan's states_map.yaml as Graphviz DOT or Mermaid",
		Long: `Render a plan's state graph: one node per state (with its check task),
one edge per transition (labelled with the transition task and its cost).

PLAN is a plan name under --plans, or the path of a plan directory.

  aurad plan graph stateful --plans examples/plans | dot -Tsvg > stateful.svg
  aurad plan graph examples/plans/stateful --format mermaid`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			render, ok := graphRenderers[format]
			if !ok {
				return fmt.Errorf("--format: want dot or mermaid, got %q", format)
			}
			dir, name := plansDir, args[0]
			if !cmd.Flags().Changed("plans") && isPlanDir(name) {
				dir, name = filepath.Dir(filepath.Clean(name)), filepath.Base(filepath.Clean(name))
			}
			p, err := loadPlanForGraph(dir, name)
			if err != nil {
				return err
			}
			return render(cmd.OutOrStdout(), p.Name, p.StateMap)
		},
	}
	cmd.Flags().StringVar(&plansDir, "plans", "plans", "plan directory: one subdirectory per plan")
	cmd.Flags().StringVar(&format, "format", "dot", "output format: dot or mermaid")
	return cmd
}

var graphRenderers = map[string]func(io.Writer, string, *plan.StateMap) error{
	"dot":     renderDOT,
	"mermaid": renderMermaid,
}

// isPlanDir reports whether path looks like a plan directory rather than a
// plan name: it is a directory holding states_map.yaml or tasks/.
func isPlanDir(path string) bool {
	for _, f := range []string{"states_map.yaml", "tasks"} {
		if _, err := os.Stat(filepath.Join(path, f)); err == nil {
			return true
		}
	}
	return false
}

// loadPlanForGraph loads the plans under dir (keeping broken ones, so one
// broken neighbour does not hide this plan) and returns the named plan when
// it is sound and has a state map.
func loadPlanForGraph(dir, name string) (*plan.Plan, error) {
	reg := actions.Builtin()
	defer reg.Close()
	set, err := plan.Load(dir, daemon.PlanOptions(reg, true))
	if err != nil {
		return nil, err
	}
	p, ok := set.Plan(name)
	if !ok {
		return nil, fmt.Errorf("no plan %q under %s", name, dir)
	}
	if !p.Available() {
		lines := make([]string, len(p.Problems))
		for i, pr := range p.Problems {
			lines[i] = pr.String()
		}
		return nil, fmt.Errorf("plan %s has problems:\n%s", name, strings.Join(lines, "\n"))
	}
	if p.StateMap == nil {
		return nil, errors.New("plan " + name + " has no states_map.yaml")
	}
	return p, nil
}

// sortedStates returns the state map's states ordered by name so the
// output is the same on every run.
func sortedStates(sm *plan.StateMap) []*plan.State {
	out := make([]*plan.State, 0, len(sm.States))
	for _, s := range sm.States {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// stateNotes are the lines under a state's name: its check task and any
// non-default settings.
func stateNotes(s *plan.State) []string {
	notes := []string{"check: " + s.Check}
	if s.Priority != 0 {
		notes = append(notes, "priority "+strconv.Itoa(s.Priority))
	}
	if s.Sequential {
		notes = append(notes, "sequential")
	}
	return notes
}

func transitionLabel(t *plan.Transition) string {
	return t.Task + " (cost " + strconv.FormatFloat(t.Cost, 'g', -1, 64) + ")"
}

// dotQuote makes s a DOT double-quoted string; "\n" in the result is
// kept as DOT's centred line break.
func dotQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

func renderDOT(w io.Writer, name string, sm *plan.StateMap) error {
	var b strings.Builder
	fmt.Fprintf(&b, "digraph %s {\n", dotQuote(name))
	b.WriteString("  rankdir=LR;\n")
	b.WriteString("  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n")
	b.WriteString("  edge [fontname=\"Helvetica\", fontsize=10];\n")
	for _, s := range sortedStates(sm) {
		label := s.Name + "\n" + strings.Join(stateNotes(s), "\n")
		fmt.Fprintf(&b, "  %s [label=%s];\n", dotQuote(s.Name), dotQuote(label))
	}
	for _, t := range sm.Transitions {
		fmt.Fprintf(&b, "  %s -> %s [label=%s];\n", dotQuote(t.From), dotQuote(t.To), dotQuote(transitionLabel(t)))
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// mermaidText escapes s for a quoted Mermaid label. Mermaid has no
// backslash escapes; it takes HTML entities.
func mermaidText(s string) string {
	r := strings.NewReplacer(`"`, "#quot;", "<", "#lt;", ">", "#gt;", "\n", "<br/>")
	return r.Replace(s)
}

// renderMermaid writes a flowchart (not stateDiagram: flowchart node ids
// are ours, s0, s1, ..., so any state name renders, and labels may carry
// the check task).
func renderMermaid(w io.Writer, name string, sm *plan.StateMap) error {
	var b strings.Builder
	fmt.Fprintf(&b, "---\ntitle: %s\n---\n", mermaidText(name))
	b.WriteString("flowchart LR\n")
	ids := map[string]string{}
	for i, s := range sortedStates(sm) {
		id := "s" + strconv.Itoa(i)
		ids[s.Name] = id
		label := "<b>" + mermaidText(s.Name) + "</b><br/>" + mermaidText(strings.Join(stateNotes(s), "\n"))
		fmt.Fprintf(&b, "    %s([\"%s\"])\n", id, label)
	}
	for _, t := range sm.Transitions {
		from, okF := ids[t.From]
		to, okT := ids[t.To]
		if !okF || !okT {
			return fmt.Errorf("transition %s -> %s: unknown state", t.From, t.To)
		}
		fmt.Fprintf(&b, "    %s -->|\"%s\"| %s\n", from, mermaidText(transitionLabel(t)), to)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
