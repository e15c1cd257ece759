package interrupt

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aura-dev/aura/internal/plan"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func rule(planName, name, scope string, every, cooldown time.Duration) *plan.Interrupt {
	return &plan.Interrupt{ID: planName + "/" + name, Name: name, Plan: &plan.Plan{Name: planName}, Scope: scope,
		Every: every, Cooldown: cooldown, Check: planName + "/checks/" + name, Handler: planName + "/handlers/" + name,
		Preempted: plan.PreemptedResume}
}

func on(id, planName string, res ...string) Holder {
	h := Holder{TaskID: id, Plan: planName, Task: planName + "/work", Resources: map[string]string{}}
	for _, r := range res {
		pool, inst, _ := strings.Cut(r, ":")
		h.Resources[pool] = inst
	}
	return h
}

func dueNames(due []Due) []string {
	out := make([]string, len(due))
	for i, d := range due {
		out[i] = d.Rule.Name + "@" + d.Target + " under " + d.TaskID
	}
	slices.Sort(out)
	return out
}

func wantDue(t *testing.T, at string, got []Due, want ...string) {
	t.Helper()
	if g := dueNames(got); !slices.Equal(g, want) {
		t.Fatalf("%s: due %q, want %q", at, g, want)
	}
}

// A rule of a pool is polled for an instance only while a task of its
// plan holds that instance: never for an idle one, nor for one a task of
// another plan holds; first one interval after it became held, then every
// interval, never twice at once.
func TestBoardPollsOnlyWhileHeld(t *testing.T) {
	b := NewBoard()
	b.Load([]*plan.Interrupt{rule("p", "popup", "device", 5*time.Second, 0)})
	wantDue(t, "idle", b.Observe(nil, t0, 0))
	if _, ok := b.NextDue(); ok {
		t.Fatal("a check is due with nothing held")
	}
	other := []Holder{on("o-1", "other", "device:a")}
	wantDue(t, "other plan", b.Observe(other, t0.Add(10*time.Second), 0))

	held := []Holder{on("t-1", "p", "device:a")}
	wantDue(t, "first seen", b.Observe(held, t0, 0))
	// The first check comes within one interval, at a point of it that
	// depends on the rule and the instance only.
	tf, ok := b.NextDue()
	if !ok || !tf.After(t0) || tf.After(t0.Add(5*time.Second)) || !tf.Equal(t0.Add(firstWait(b.rules[0].rule, "device:a"))) {
		t.Fatalf("first check due %v %v, want in (t0, t0+5s]", tf, ok)
	}
	wantDue(t, "before its time", b.Observe(held, tf.Add(-time.Millisecond), 0))
	due := b.Observe(held, tf, 0)
	wantDue(t, "its time", due, "popup@device:a under t-1")
	wantDue(t, "while it runs", b.Observe(held, tf.Add(2*time.Second), 0))
	if f, next := b.Checked(due[0], false, nil, false, tf.Add(3*time.Second)); f != nil || !next.Equal(tf.Add(5*time.Second)) {
		t.Fatalf("a falsy check: fire %+v, next %v; want none, one interval after the first was due", f, next)
	}
	// The pace is kept: one interval after the check was due.
	wantDue(t, "before the next interval", b.Observe(held, tf.Add(4*time.Second), 0))
	due = b.Observe(held, tf.Add(5*time.Second), 0)
	wantDue(t, "next", due, "popup@device:a under t-1")
	// A check slower than its interval is followed by the next at once.
	if _, next := b.Checked(due[0], false, nil, false, tf.Add(12*time.Second)); !next.Equal(tf.Add(12 * time.Second)) {
		t.Fatalf("after a slow check, next %v; want at once", next)
	}
	due = b.Observe(held, tf.Add(12*time.Second), 0)
	wantDue(t, "after a slow check", due, "popup@device:a under t-1")
	b.Checked(due[0], false, nil, false, tf.Add(13*time.Second))

	// The task ends: nothing is polled, and the instance is not listed.
	wantDue(t, "ended", b.Observe(nil, t0.Add(100*time.Second), 0))
	if _, ok := b.NextDue(); ok {
		t.Fatal("a check is due after the holder ended")
	}
	v := b.View("", t0.Add(100*time.Second))
	if len(v) != 1 || len(v[0].Targets) != 0 || v[0].ChecksRun != 3 {
		t.Fatalf("view = %+v", v)
	}
}

// A pool rule is polled once per instance, not per task: two tasks on one
// instance share its check (run under the first), and a fire names both.
func TestBoardOncePerInstance(t *testing.T) {
	b := NewBoard()
	b.Load([]*plan.Interrupt{rule("p", "popup", "device", time.Second, 0)})
	held := []Holder{on("t-2", "p", "device:a"), on("t-1", "p", "device:a"), on("t-3", "p", "device:b"), on("t-4", "p")}
	b.Observe(held, t0, 0)
	due := b.Observe(held, t0.Add(time.Second), 0)
	wantDue(t, "two instances", due, "popup@device:a under t-1", "popup@device:b under t-3")
	for _, d := range due {
		f, _ := b.Checked(d, d.Target == "device:a", nil, false, t0.Add(time.Second))
		switch {
		case d.Target == "device:a" && (f == nil || !slices.Equal(f.TaskIDs, []string{"t-1", "t-2"})):
			t.Fatalf("fire on device:a = %+v, want t-1 and t-2", f)
		case d.Target == "device:b" && f != nil:
			t.Fatalf("device:b fired: %+v", f)
		}
	}
}

// After a fire the rule is held back on that instance for its cooldown,
// and only there: another instance fires meanwhile, and the held-back
// instance is polled again when the cooldown ends, even if its holder
// left and came back in between.
func TestBoardCooldownPerInstance(t *testing.T) {
	b := NewBoard()
	b.Load([]*plan.Interrupt{rule("p", "popup", "device", time.Second, time.Minute)})
	held := []Holder{on("t-1", "p", "device:a"), on("t-2", "p", "device:b")}
	b.Observe(held, t0, 0)
	now := t0.Add(time.Second)
	due := b.Observe(held, now, 0)
	var a, bb Due
	for _, d := range due {
		if d.Target == "device:a" {
			a = d
		} else {
			bb = d
		}
	}
	fa, _ := b.Checked(a, true, nil, false, now)
	if fa == nil || fa.Target != "device:a" || !slices.Equal(fa.TaskIDs, []string{"t-1"}) {
		t.Fatalf("device:a fire = %+v", fa)
	}
	b.Settled(fa, now)
	if f, _ := b.Checked(bb, false, nil, false, now); f != nil {
		t.Fatalf("device:b fired on a falsy check: %+v", f)
	}
	// device:b goes on being polled and fires inside device:a's cooldown.
	now = now.Add(time.Second)
	due = b.Observe(held, now, 0)
	wantDue(t, "in device:a's cooldown", due, "popup@device:b under t-2")
	fb, _ := b.Checked(due[0], true, nil, false, now)
	if fb == nil || fb.Target != "device:b" {
		t.Fatalf("device:b fire = %+v", fb)
	}
	b.Settled(fb, now)
	// device:a's holder leaves and another task takes it: still held back.
	b.Observe(held[1:], now.Add(10*time.Second), 0)
	back := []Holder{on("t-9", "p", "device:a"), held[1]}
	for s := 11; s < 61; s++ {
		for _, d := range b.Observe(back, t0.Add(time.Duration(s)*time.Second), 0) {
			if d.Target == "device:a" {
				t.Fatalf("device:a polled at t0+%ds, inside its cooldown (to t0+61s)", s)
			}
			b.Checked(d, false, nil, false, t0.Add(time.Duration(s)*time.Second))
		}
	}
	v := b.View("p", t0.Add(31*time.Second))
	if v[0].CooldownLeft != 31*time.Second || v[0].Fires != 2 || v[0].LastFire.Target != "device:b" {
		t.Fatalf("view = %+v", v[0])
	}
	due = b.Observe(back, t0.Add(61*time.Second), 0)
	if !slices.Contains(dueNames(due), "popup@device:a under t-9") {
		t.Fatalf("device:a not polled when its cooldown ended: %q", dueNames(due))
	}
}

// Scope plan is polled once while any task of the plan runs, whatever it
// holds; scope global while any task of any plan runs. A fire interrupts
// every task of its scope.
func TestBoardPlanAndGlobalScopes(t *testing.T) {
	b := NewBoard()
	b.Load([]*plan.Interrupt{
		rule("p", "planwide", plan.InterruptScopePlan, time.Second, 0),
		rule("p", "everything", plan.InterruptScopeGlobal, time.Second, 0),
	})
	only := []Holder{on("o-1", "other")}
	b.Observe(only, t0, 0)
	due := b.Observe(only, t0.Add(time.Second), 0)
	wantDue(t, "another plan's task", due, "everything@global under o-1")
	b.Checked(due[0], false, nil, false, t0.Add(time.Second))

	both := []Holder{on("o-1", "other"), on("t-1", "p", "device:a"), on("t-2", "p")}
	b.Observe(both, t0.Add(time.Second), 0)
	due = b.Observe(both, t0.Add(2*time.Second), 0)
	wantDue(t, "both", due, "everything@global under o-1", "planwide@plan under t-1")
	for _, d := range due {
		f, _ := b.Checked(d, true, nil, false, t0.Add(2*time.Second))
		want := []string{"t-1", "t-2"}
		if d.Target == "global" {
			want = []string{"o-1", "t-1", "t-2"}
		}
		if f == nil || !slices.Equal(f.TaskIDs, want) {
			t.Fatalf("%s fire = %+v, want %v", d.Target, f, want)
		}
	}
}

// A failing check is counted with its error and does not fire; one whose
// holder ended while it ran is not counted as failed. Several rules fire
// in one tick, each on its own instance.
func TestBoardErrorsAndSeveralRules(t *testing.T) {
	b := NewBoard()
	b.Load([]*plan.Interrupt{rule("p", "popup", "device", time.Second, 0), rule("p", "offline", "device", time.Second, 0)})
	held := []Holder{on("t-1", "p", "device:a"), on("t-2", "p", "device:b")}
	b.Observe(held, t0, 0)
	due := b.Observe(held, t0.Add(time.Second), 0)
	if len(due) != 4 {
		t.Fatalf("due %q", dueNames(due))
	}
	var fires []string
	for _, d := range due {
		var err error
		gone := false
		switch {
		case d.Rule.Name == "popup" && d.Target == "device:b":
			err = errors.New("exec: adb not found")
		case d.Rule.Name == "offline" && d.Target == "device:b":
			err, gone = errors.New("task t-2 is not running"), true
		}
		if f, _ := b.Checked(d, true, err, gone, t0.Add(time.Second)); f != nil {
			fires = append(fires, fmt.Sprintf("%s@%s", f.Rule.Name, f.Target))
		}
	}
	slices.Sort(fires)
	if !slices.Equal(fires, []string{"offline@device:a", "popup@device:a"}) {
		t.Fatalf("fires %q", fires)
	}
	v := b.View("", t0.Add(time.Second))
	off, pop := v[0], v[1]
	if pop.ChecksRun != 2 || pop.CheckErrs != 1 || pop.LastCheckError != "exec: adb not found" || pop.Fires != 1 {
		t.Errorf("popup = %+v", pop)
	}
	if off.ChecksRun != 1 || off.CheckErrs != 0 || off.Fires != 1 {
		t.Errorf("offline = %+v", off)
	}
}

// From a fire until its interrupts are over, and while a holder is paused
// (an interrupt is handled on its instance, or it plans), the instance is
// not polled, and not until one interval after.
func TestBoardNotPolledWhilePaused(t *testing.T) {
	b := NewBoard()
	b.Load([]*plan.Interrupt{rule("p", "popup", "device", time.Second, 0)})
	h := on("t-1", "p", "device:a")
	b.Observe([]Holder{h}, t0, 0)
	due := b.Observe([]Holder{h}, t0.Add(time.Second), 0)
	f, _ := b.Checked(due[0], true, nil, false, t0.Add(time.Second))
	for s := 2; s < 10; s++ {
		wantDue(t, "firing", b.Observe([]Holder{h}, t0.Add(time.Duration(s)*time.Second), 0))
	}
	b.Settled(f, t0.Add(10*time.Second))
	wantDue(t, "settled", b.Observe([]Holder{h}, t0.Add(10500*time.Millisecond), 0))
	due = b.Observe([]Holder{h}, t0.Add(11*time.Second), 0)
	wantDue(t, "an interval after it settled", due, "popup@device:a under t-1")
	b.Checked(due[0], false, nil, false, t0.Add(11*time.Second))
	t0 := t0.Add(11 * time.Second)
	h.Paused = true
	for s := 1; s < 10; s++ {
		wantDue(t, "paused", b.Observe([]Holder{h}, t0.Add(time.Duration(s)*time.Second), 0))
	}
	h.Paused = false
	wantDue(t, "just resumed", b.Observe([]Holder{h}, t0.Add(9500*time.Millisecond), 0))
	wantDue(t, "an interval after", b.Observe([]Holder{h}, t0.Add(10*time.Second), 0), "popup@device:a under t-1")
}

// A reload keeps a rule's figures and cooldowns; a rule that went is no
// longer polled, and its check still under way fires nothing.
func TestBoardReload(t *testing.T) {
	b := NewBoard()
	r1 := rule("p", "popup", "device", time.Second, time.Minute)
	b.Load([]*plan.Interrupt{r1})
	held := []Holder{on("t-1", "p", "device:a")}
	b.Observe(held, t0, 0)
	due := b.Observe(held, t0.Add(time.Second), 0)
	f, _ := b.Checked(due[0], true, nil, false, t0.Add(time.Second))
	b.Settled(f, t0.Add(time.Second))
	r2 := rule("p", "popup", "device", 2*time.Second, time.Minute)
	b.Load([]*plan.Interrupt{r2})
	v := b.View("", t0.Add(2*time.Second))
	if v[0].Fires != 1 || v[0].CooldownLeft != 59*time.Second || v[0].Rule != r2 {
		t.Fatalf("after reload: %+v", v[0])
	}
	wantDue(t, "cooldown kept", b.Observe(held, t0.Add(30*time.Second), 0))
	due = b.Observe(held, t0.Add(61*time.Second), 0)
	wantDue(t, "after cooldown", due, "popup@device:a under t-1")
	b.Load(nil)
	if f, _ := b.Checked(due[0], true, nil, false, t0.Add(62*time.Second)); f != nil {
		t.Fatalf("a removed rule fired: %+v", f)
	}
	wantDue(t, "removed", b.Observe(held, t0.Add(70*time.Second), 0))
}
