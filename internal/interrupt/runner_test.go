package interrupt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aura-dev/aura/internal/plan"
)

// fakeManager is the ExecutionManager as the poller sees it: what holds
// what, a check result per target, and the interrupts asked for.
type fakeManager struct {
	mu         sync.Mutex
	holders    []Holder
	truthy     map[string]bool  // "<rule>@<target>" -> result
	failing    map[string]error // the same -> error
	checks     map[string]int
	interrupts []string // "<task>:<rule>@<target>"
}

func (f *fakeManager) Holders() []Holder {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.holders)
}

func (f *fakeManager) target(taskID, check string) string {
	for _, h := range f.holders {
		if h.TaskID == taskID {
			for pool, inst := range h.Resources {
				return check + "@" + pool + ":" + inst
			}
		}
	}
	return check + "@?"
}

func (f *fakeManager) Check(_ context.Context, taskID, check string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := f.target(taskID, check)
	f.checks[k]++
	return f.truthy[k], f.failing[k]
}

func (f *fakeManager) Interrupt(_ context.Context, taskID string, req Request) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.interrupts = append(f.interrupts, fmt.Sprintf("%s:%s@%s", taskID, req.Rule, req.Target))
	return nil
}

func (f *fakeManager) count(k string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.checks[k]
}

func (f *fakeManager) set(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// loadRules loads plan p with the given interrupts.yaml, and tasks
// checks/<name> and handlers/<name> for the rules named.
func loadRules(t *testing.T, rulesYAML string, names ...string) *plan.Set {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "p")
	files := map[string]string{"tasks/work.yaml": "steps:\n  - action: noop\n", "interrupts.yaml": rulesYAML}
	for _, n := range names {
		files["tasks/checks/"+n+".yaml"] = "steps:\n  - action: noop\n"
		files["tasks/handlers/"+n+".yaml"] = "steps:\n  - action: noop\n"
	}
	for rel, body := range files {
		path := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	set, err := plan.Load(filepath.Dir(dir), plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// The component polls each held instance on its own goroutine: a rule
// whose check fails on one instance (logged, counted) does not keep
// another rule from firing on another instance; an idle instance is never
// checked; checks stop when the holder goes.
func TestRunnerPollsAndFires(t *testing.T) {
	set := loadRules(t, `interrupts:
  popup: {check: checks/popup, every: 100ms, scope: device, handler: handlers/popup, cooldown: 1h}
  offline: {check: checks/offline, every: 100ms, scope: device, handler: handlers/offline}
`, "popup", "offline")
	fm := &fakeManager{
		holders: []Holder{on("t-1", "p", "device:a"), on("t-2", "p", "device:b")},
		truthy:  map[string]bool{"p/checks/popup@device:a": true},
		failing: map[string]error{"p/checks/offline@device:b": errors.New("adb: device offline")},
		checks:  map[string]int{},
	}
	r := New(Params{Manager: fm, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	r.Start(set)
	defer r.Shutdown()

	waitFor(t, "popup to fire on device:a", func() bool {
		fm.mu.Lock()
		defer fm.mu.Unlock()
		return slices.Contains(fm.interrupts, "t-1:p/popup@device:a")
	})
	waitFor(t, "offline checks on device:b", func() bool { return fm.count("p/checks/offline@device:b") >= 3 })
	waitFor(t, "popup to be polled on device:b", func() bool { return fm.count("p/checks/popup@device:b") >= 3 })
	fm.set(func() { fm.holders = fm.holders[:1] }) // t-2 ends: device:b is idle
	waitFor(t, "device:b to leave the rules' targets", func() bool {
		for _, v := range r.List("") {
			for _, tv := range v.Targets {
				if tv.Target == "device:b" {
					return false // a check under way there has yet to end
				}
			}
		}
		return true
	})
	before := fm.count("p/checks/popup@device:b")
	waitFor(t, "more checks on device:a", func() bool { return fm.count("p/checks/offline@device:a") >= 6 })
	if n := fm.count("p/checks/popup@device:b"); n != before {
		t.Fatalf("device:b checked %d more times after its holder ended", n-before)
	}
	if n := fm.count("p/checks/popup@device:a"); n != 1 {
		t.Fatalf("popup checked %d times on device:a in its hour of cooldown, want 1", n)
	}
	views := r.List("p")
	off := views[0]
	if off.Rule.ID != "p/offline" || off.CheckErrs < 3 || off.LastCheckError != "adb: device offline" || off.Fires != 0 {
		t.Fatalf("offline = %+v", off)
	}
	pop := views[1]
	if pop.Fires != 1 || pop.LastFire == nil || pop.LastFire.Target != "device:a" || pop.CooldownLeft < 59*time.Minute {
		t.Fatalf("popup = %+v", pop)
	}
	fm.mu.Lock()
	defer fm.mu.Unlock()
	if len(fm.interrupts) != 1 || fm.checks["p/checks/popup@device:?"] != 0 {
		t.Fatalf("interrupts %q, checks %v", fm.interrupts, fm.checks)
	}
}
