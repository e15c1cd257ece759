package docs

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/aura-dev/aura/internal/actions"
	"github.com/aura-dev/aura/internal/daemon"
	"github.com/aura-dev/aura/internal/hooks"
	"github.com/aura-dev/aura/internal/plan"

	"github.com/aura-dev/aura/internal/testbin"
)

// aurad is the daemon binary built for these tests.
var aurad string

func TestMain(m *testing.M) {
	testbin.Main(m, map[string]*string{"../cmd/aurad": &aurad})
}

func page(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// section returns the text under the heading line (e.g. "### exec") up to
// the next heading of level 2 or 3.
func section(text, heading string) string {
	i := strings.Index(text, "\n"+heading+"\n")
	if i < 0 {
		return ""
	}
	rest := text[i+len(heading)+2:]
	for _, h := range []string{"\n### ", "\n## "} {
		if j := strings.Index(rest, h); j >= 0 {
			rest = rest[:j]
		}
	}
	return rest
}

// keyLists reads the accepted-key lists (`xxxKeys = []string{...}`) from
// the plan loader's source: the truth about which keys exist.
func keyLists(t *testing.T) map[string][]string {
	t.Helper()
	re := regexp.MustCompile(`(\w+Keys\w*)\s*=\s*\[\]string\{([^}]*)\}`)
	lists := map[string][]string{}
	for _, f := range []string{"../internal/plan/taskfile.go", "../internal/plan/load.go"} {
		for _, m := range re.FindAllStringSubmatch(page(t, f), -1) {
			for _, q := range regexp.MustCompile(`"([^"]+)"`).FindAllStringSubmatch(m[2], -1) {
				lists[m[1]] = append(lists[m[1]], q[1])
			}
		}
	}
	for _, want := range []string{"taskKeys", "metaKeys", "inputKeys", "stepKeysList", "stepKeysMap", "loopKeys", "retryKeys",
		"planKeys", "stateMapKeys", "stateKeys", "transKeys", "planningKeys"} {
		if len(lists[want]) == 0 {
			t.Fatalf("found no %s in internal/plan: the key lists moved; update this test", want)
		}
	}
	return lists
}

func TestEveryPlanKeyIsDocumented(t *testing.T) {
	plans := page(t, "writing-plans.md")
	states := page(t, "state-planning.md")
	for list, keys := range keyLists(t) {
		doc, where := plans, "writing-plans.md"
		switch list {
		case "stateMapKeys", "stateKeys", "transKeys", "planningKeys":
			doc, where = states, "state-planning.md"
		}
		for _, k := range keys {
			if !strings.Contains(doc, "`"+k+"`") {
				t.Errorf("%s does not document %s key `%s`", where, list, k)
			}
		}
	}
}

func TestEveryBuiltinActionIsDocumented(t *testing.T) {
	reg := actions.Builtin()
	defer reg.Close()
	doc := page(t, "writing-plans.md")
	for _, name := range reg.Names() {
		sec := section(doc, "### "+name)
		if sec == "" {
			t.Errorf("writing-plans.md has no section \"### %s\"", name)
			continue
		}
		if !strings.Contains(sec, "action: "+name) {
			t.Errorf("writing-plans.md: %s has no example", name)
		}
		spec, _ := reg.Lookup(name)
		for _, p := range spec.Params {
			if !strings.Contains(sec, "`"+p+"`") {
				t.Errorf("writing-plans.md: %s does not describe its parameter `%s`", name, p)
			}
		}
	}
}

var yamlBlockRE = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// The task examples marked "# task: plan/name" load without problems.
func TestTaskExamplesLoad(t *testing.T) {
	root := t.TempDir()
	n := 0
	for _, f := range []string{"writing-plans.md", "state-planning.md", "getting-started.md", "hooks.md", "operations.md"} {
		for _, m := range yamlBlockRE.FindAllStringSubmatch(page(t, f), -1) {
			first, _, _ := strings.Cut(m[1], "\n")
			id, ok := strings.CutPrefix(first, "# task: ")
			if !ok {
				continue
			}
			planName, task, _ := strings.Cut(strings.TrimSpace(id), "/")
			path := filepath.Join(root, planName, "tasks", task+".yaml")
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(m[1]), 0o644); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	if n < 3 {
		t.Fatalf("found %d marked task examples, want at least 3", n)
	}
	reg := actions.Builtin()
	defer reg.Close()
	if _, err := plan.Load(root, daemon.PlanOptions(reg, false)); err != nil {
		t.Fatalf("the documented task examples do not load:\n%v", err)
	}
}

// The diagram in state-planning.md is what `aurad plan graph` draws today.
func TestStateDiagramIsCurrent(t *testing.T) {
	out, err := exec.Command(aurad, "plan", "graph", "../examples/plans/stateful", "--format", "mermaid").CombinedOutput()
	if err != nil {
		t.Fatalf("aurad plan graph: %v\n%s", err, out)
	}
	if !strings.Contains(page(t, "state-planning.md"), "```mermaid\n"+string(out)+"```") {
		t.Fatalf("state-planning.md's diagram is stale; replace it with the output of\n"+
			"  aurad plan graph examples/plans/stateful --format mermaid\n%s", out)
	}
}

func TestEveryServeFlagIsDocumented(t *testing.T) {
	out, err := exec.Command(aurad, "serve", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("aurad serve --help: %v\n%s", err, out)
	}
	doc := page(t, "operations.md")
	flags := regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9-]+)`).FindAllStringSubmatch(string(out), -1)
	if len(flags) < 10 {
		t.Fatalf("read only %d flags from aurad serve --help", len(flags))
	}
	for _, f := range flags {
		if f[1] != "help" && !strings.Contains(doc, "`--"+f[1]) {
			t.Errorf("operations.md does not document --%s", f[1])
		}
	}
}

func TestEveryHookPointIsDocumented(t *testing.T) {
	doc := page(t, "hooks.md")
	for _, p := range hooks.Points {
		if !strings.Contains(doc, "`"+p+"`") {
			t.Errorf("hooks.md does not document `%s`", p)
		}
	}
}

var linkRE = regexp.MustCompile(`\]\(([^)#\s]+)(?:#[^)]*)?\)`)

func TestRelativeLinksResolve(t *testing.T) {
	// These pages, and the repository's own (README, CONTRIBUTING, ...).
	pages, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	root, _ := filepath.Glob("../*.md")
	for _, p := range append(pages, root...) {
		for _, m := range linkRE.FindAllStringSubmatch(page(t, p), -1) {
			target := m[1]
			if strings.Contains(target, "://") {
				continue
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(p), target)); err != nil {
				t.Errorf("%s links to %s, which does not exist", p, target)
			}
		}
	}
}
