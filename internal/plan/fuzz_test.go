package plan

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzTaskFile feeds arbitrary task files to the loader: it must report
// problems, never panic (a recovered panic shows up as "internal error").
func FuzzTaskFile(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*/*/p/tasks/*.yaml")
	more, _ := filepath.Glob("../../examples/plans/*/tasks/*.yaml")
	for _, path := range append(seeds, more...) {
		if data, err := os.ReadFile(path); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("steps: {a: {action: noop, depends_on: {any: [a]}}}"))
	f.Add([]byte("steps:\n  - &x {action: noop}\n  - *x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		tasks := filepath.Join(dir, "p", "tasks")
		if err := os.MkdirAll(tasks, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tasks, "t.yaml"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		done := make(chan []Problem, 1)
		go func() { done <- CheckWith(dir, Options{ActionKnown: builtinKnown, ActionParams: testParams}) }()
		var problems []Problem
		select {
		case problems = <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("loader hangs on input %q", data)
		}
		for _, p := range problems {
			if strings.Contains(p.Msg, "internal error") {
				t.Fatalf("loader panicked: %v\ninput:\n%s", p, data)
			}
		}
	})
}
