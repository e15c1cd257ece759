package plan

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/broken/*/want.txt")

// TestBrokenPlansReportEveryProblem loads each fixture under
// testdata/broken and compares all problems (file:line:col: msg, paths
// relative to the fixture) with its want.txt.
func TestBrokenPlansReportEveryProblem(t *testing.T) {
	cases, err := os.ReadDir("testdata/broken")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.Name(), func(t *testing.T) {
			root, _ := filepath.Abs(filepath.Join("testdata/broken", c.Name()))
			var lines []string
			for _, p := range CheckWith(root, Options{ActionKnown: builtinKnown, ActionNames: func() []string { return builtinActions }, ActionParams: testParams}) {
				lines = append(lines, strings.TrimPrefix(p.String(), root+string(filepath.Separator)))
			}
			got := strings.Join(lines, "\n") + "\n"
			wantFile := filepath.Join(root, "want.txt")
			if *update {
				if err := os.WriteFile(wantFile, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(wantFile)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("problems:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestLoadErrorListsAllPlansSorted(t *testing.T) {
	_, err := Load("testdata/broken/statemap", Options{})
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("err = %v, want *LoadError", err)
	}
	if len(le.Problems) < 5 {
		t.Fatalf("only %d problems reported", len(le.Problems))
	}
	if n := strings.Count(le.Error(), "\n") + 1; n != len(le.Problems) {
		t.Errorf("Error() has %d lines for %d problems", n, len(le.Problems))
	}
	for i := 1; i < len(le.Problems); i++ {
		a, b := le.Problems[i-1], le.Problems[i]
		if a.File > b.File || a.File == b.File && a.Line > b.Line {
			t.Errorf("problems out of order: %v before %v", a, b)
		}
	}
}

func TestSkipBrokenKeepsBrokenPlansUnavailable(t *testing.T) {
	set, err := Load("testdata/good", Options{SkipBroken: true})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range set.Plans() {
		names = append(names, p.Name)
	}
	if !reflect.DeepEqual(names, []string{"broken2", "ok"}) {
		t.Fatalf("plans = %v", names)
	}
	broken, _ := set.Plan("broken2")
	if broken.Available() || len(broken.Problems) == 0 {
		t.Fatalf("broken2 should be unavailable with problems")
	}
	if _, err := set.Task("broken2/bad"); !errors.Is(err, ErrPlanUnavailable) {
		t.Errorf("Task on a broken plan: err = %v, want ErrPlanUnavailable", err)
	}
	if _, err := Load("testdata/good", Options{}); err == nil {
		t.Errorf("without SkipBroken a broken plan must fail the load")
	}
}

func TestGoodPlan(t *testing.T) {
	set, err := Load("testdata/good", Options{SkipBroken: true})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := set.Plan("ok")
	if !p.Available() {
		t.Fatalf("problems: %v", p.Problems)
	}
	if !filepath.IsAbs(p.Dir) || p.Title != "OK" || p.Description != "a good plan" || p.Resources["device"] != 2 {
		t.Errorf("plan = %+v", p)
	}
	tk, err := set.Task("ok/hello")
	if err != nil {
		t.Fatal(err)
	}
	wantMeta := Meta{
		Title: "Hello", ExecutionMode: "cpu", Timeout: 5 * time.Minute, Priority: 3,
		ResourceTags: []string{"device:emulator-5554:1", "api"}, OnInterrupt: "requeue", Preempted: "resume",
	}
	if !reflect.DeepEqual(tk.Meta, wantMeta) {
		t.Errorf("meta = %+v\nwant %+v", tk.Meta, wantMeta)
	}
	if tk.ID != "ok/hello" || tk.Name != "hello" || !filepath.IsAbs(tk.File) || tk.Plan != p {
		t.Errorf("task = %+v", tk)
	}
	deep, err := set.Task("ok/sub/deep")
	if err != nil {
		t.Fatal(err)
	}
	if deep.Meta.Timeout != DefaultTimeout || deep.Meta.ExecutionMode != "io" || deep.Meta.OnInterrupt != "fail" {
		t.Errorf("defaults not applied: %+v", deep.Meta)
	}
}

func TestTaskLookupErrors(t *testing.T) {
	set, err := Load("testdata/good", Options{SkipBroken: true})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		id   string
		want error
	}{
		{"ok", ErrBadTaskName},
		{"/ok/hello", ErrBadTaskName},
		{"ok/hello/", ErrBadTaskName},
		{"ok//hello", ErrBadTaskName},
		{"ok/../ok/hello", ErrBadTaskName},
		{"ok/he llo", ErrBadTaskName},
		{"ok/nothing", ErrUnknownTask},
		{"nope/hello", ErrUnknownTask},
		{"broken2/bad", ErrPlanUnavailable},
	}
	for _, tc := range tests {
		_, err := set.Task(tc.id)
		if !errors.Is(err, tc.want) {
			t.Errorf("Task(%q) = %v, want %v", tc.id, err, tc.want)
		}
		if err != nil && !strings.Contains(err.Error(), tc.id) {
			t.Errorf("Task(%q) error %q does not name the id", tc.id, err)
		}
	}
}

// An unknown task names the closest known ones, or the plan's tasks when
// none is close.
func TestUnknownTaskSuggests(t *testing.T) {
	set, err := Load("testdata/good", Options{SkipBroken: true})
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{
		"ok/helo":     `unknown task "ok/helo" (did you mean "ok/hello"?)`,
		"ko/hello":    `unknown task "ko/hello": no plan "ko" (did you mean "ok/hello"?)`,
		"ok/zzzzzzzz": `unknown task "ok/zzzzzzzz" (plan "ok" has tasks `,
	} {
		_, err := set.Task(id)
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("Task(%q) = %v, want %s...", id, err, want)
		}
	}
}

func TestCheckUnreadableDir(t *testing.T) {
	ps := Check("testdata/does-not-exist")
	if len(ps) != 1 || !strings.Contains(ps[0].Msg, "no such file") {
		t.Fatalf("problems = %v", ps)
	}
}

func TestPlanHTTPAllowHosts(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "web")
	writeTree(t, dir, map[string]string{
		"plan.yaml":    "http:\n  allow_hosts:\n    - 127.0.0.1:8080\n    - not a host\n    - 10.0.0.0/8\n",
		"tasks/a.yaml": "steps:\n  - action: noop\n",
	})
	valid := func(s string) error {
		if strings.Contains(s, " ") {
			return errors.New("not a host")
		}
		return nil
	}
	set, err := Load(root, Options{SkipBroken: true, HTTPHostValid: valid})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := set.Plan("web")
	if want := []string{"127.0.0.1:8080", "10.0.0.0/8"}; !reflect.DeepEqual(p.HTTP.AllowHosts, want) {
		t.Errorf("AllowHosts = %q, want %q", p.HTTP.AllowHosts, want)
	}
	if len(p.Problems) != 1 || !strings.Contains(p.Problems[0].String(), "plan.yaml:4:") || !strings.Contains(p.Problems[0].Msg, "http.allow_hosts") {
		t.Errorf("problems = %v, want one at plan.yaml:4 naming http.allow_hosts", p.Problems)
	}
}

// writeTree writes files (relative path -> content) under dir.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for rel, content := range files {
		path := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLoopCountsCheckedAtLoad: a loop count written in the file above
// Options.MaxLoopIterations is a problem at its line; templates are left
// for run time.
func TestLoopCountsCheckedAtLoad(t *testing.T) {
	root := t.TempDir()
	writeTree(t, filepath.Join(root, "p"), map[string]string{
		"tasks/a.yaml": "inputs:\n  - {name: n, type: int, default: 1}\nsteps:\n" +
			"  - action: noop\n    loop: {times: 4}\n" +
			"  - action: noop\n    loop: {times: 3}\n" +
			"  - action: noop\n    loop: {for_each: [1, 2, 3, 4]}\n" +
			"  - action: noop\n    loop: {times: \"{{ inputs.n }}\"}\n",
	})
	probs := CheckWith(root, Options{MaxLoopIterations: 3})
	var got []string
	for _, p := range probs {
		got = append(got, fmt.Sprintf("%d: %s", p.Line, p.Msg))
	}
	want := []string{
		`5: step "step1": loop.times is 4, more than the limit of 3 iterations (aurad --max-loop-iterations)`,
		`9: step "step3": loop.for_each has 4 items, more than the limit of 3 iterations (aurad --max-loop-iterations)`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
