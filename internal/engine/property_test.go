package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"pgregory.net/rapid"

	"github.com/aura-dev/aura/internal/plan"
)

// seqActions records when each step started and finished on one global
// clock, and fails the steps it is told to.
type seqActions struct {
	clock atomic.Int64
	mu    sync.Mutex
	start map[string]int64
	end   map[string]int64
	runs  map[string]int
}

func (s *seqActions) Lookup(name string) (Action, bool) {
	if name != "step" {
		return nil, false
	}
	return actionFunc{run: func(_ context.Context, _ *ActionEnv, p map[string]any) (any, error) {
		id := p["id"].(string)
		s.mu.Lock()
		s.start[id] = s.clock.Add(1)
		s.runs[id]++
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			s.end[id] = s.clock.Add(1)
			s.mu.Unlock()
		}()
		if p["fail"] == true {
			return nil, errors.New("told to fail")
		}
		return id, nil
	}}, true
}

type genStep struct {
	fail bool
	any  bool
	deps []int
	cond []string // per dep: success, failed or done
}

// TestGraphMatchesModel runs random dependency graphs and checks every
// step against a simple model of depends_on: what ran, what was skipped,
// that nothing ran twice and that a step started only after the
// dependencies that allowed it had finished.
func TestGraphMatchesModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(1, 12).Draw(rt, "n")
		steps := make([]genStep, n)
		var b strings.Builder
		b.WriteString("steps:\n")
		for i := range steps {
			g := &steps[i]
			g.fail = rapid.Float64Range(0, 1).Draw(rt, "fail") < 0.25
			fmt.Fprintf(&b, "  s%d:\n    action: step\n    params: {id: s%d, fail: %v}\n", i, i, g.fail)
			if i == 0 {
				continue
			}
			for j := range i {
				if rapid.Float64Range(0, 1).Draw(rt, "edge") < 0.3 {
					g.deps = append(g.deps, j)
					g.cond = append(g.cond, rapid.SampledFrom([]string{"success", "failed", "done"}).Draw(rt, "cond"))
				}
			}
			if len(g.deps) == 0 {
				continue
			}
			g.any = rapid.Bool().Draw(rt, "any")
			mode := "all"
			if g.any {
				mode = "any"
			}
			var items []string
			for k, d := range g.deps {
				items = append(items, fmt.Sprintf("{s%d: %s}", d, g.cond[k]))
			}
			fmt.Fprintf(&b, "    depends_on: {%s: [%s]}\n", mode, strings.Join(items, ", "))
		}
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "p", "tasks"), 0o755); err != nil {
			rt.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "p", "tasks", "g.yaml"), []byte(b.String()), 0o644); err != nil {
			rt.Fatal(err)
		}
		set, err := plan.Load(dir, plan.Options{})
		if err != nil {
			rt.Fatalf("load:\n%s\n%v", b.String(), err)
		}
		tk, _ := set.Task("p/g")
		acts := &seqActions{start: map[string]int64{}, end: map[string]int64{}, runs: map[string]int{}}
		res := New(Config{Actions: acts}).Run(context.Background(), Request{Task: tk})

		// The model: decide steps in index order (a topological order).
		want := make([]string, n)
		anyFailed := false
		for i, g := range steps {
			run := len(g.deps) == 0
			if !run {
				met := 0
				for k, d := range g.deps {
					if meetsModel(g.cond[k], want[d]) {
						met++
					}
				}
				run = met == len(g.deps) || g.any && met > 0
			}
			switch {
			case !run:
				want[i] = "skipped"
			case g.fail:
				want[i] = "failed"
				anyFailed = true
			default:
				want[i] = "succeeded"
			}
		}
		for i, g := range steps {
			id := fmt.Sprintf("s%d", i)
			if got := res.Steps[i].Status.String(); got != want[i] {
				rt.Fatalf("%s: status %s, want %s\n%s", id, got, want[i], b.String())
			}
			if r := acts.runs[id]; (want[i] == "skipped") != (r == 0) || r > 1 {
				rt.Fatalf("%s ran %d times with status %s", id, r, want[i])
			}
			if want[i] == "skipped" {
				continue
			}
			// Started after every dependency it needed (all) or after at
			// least one that allowed it (any).
			allowedBy := 0
			for k, d := range g.deps {
				dep := fmt.Sprintf("s%d", d)
				finishedBefore := acts.runs[dep] > 0 && acts.end[dep] < acts.start[id] || want[d] == "skipped"
				if g.any {
					if meetsModel(g.cond[k], want[d]) && finishedBefore {
						allowedBy++
					}
				} else if !finishedBefore {
					rt.Fatalf("%s started before its dependency %s finished", id, dep)
				}
			}
			if g.any && allowedBy == 0 {
				rt.Fatalf("%s (any) started before any allowing dependency finished", id)
			}
		}
		var se *StepError
		if anyFailed != errors.As(res.Err, &se) {
			rt.Fatalf("err = %v, but a step failed = %v", res.Err, anyFailed)
		}
	})
}

func meetsModel(cond, status string) bool {
	switch cond {
	case "failed":
		return status == "failed"
	case "done":
		return status == "failed" || status == "succeeded"
	}
	return status == "succeeded"
}
