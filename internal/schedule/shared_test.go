package schedule

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aura-dev/aura/internal/store"
)

// fakeShared is a cluster's shared schedule states in memory: one state
// table and one set of fire claims for every node.
type fakeShared struct {
	*store.ScheduleMemory
	mu      sync.Mutex
	claims  map[string]string
	changes chan store.ScheduleState
}

func newFakeShared() *fakeShared {
	return &fakeShared{ScheduleMemory: store.NewScheduleMemory(), claims: map[string]string{}, changes: make(chan store.ScheduleState)}
}

func (f *fakeShared) Changes() <-chan store.ScheduleState { return f.changes }

func (f *fakeShared) Claim(_ context.Context, key string) (string, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if prior, ok := f.claims[key]; ok {
		return prior, false, nil
	}
	f.claims[key] = ""
	return "", true, nil
}

func (f *fakeShared) Fired(_ context.Context, key, taskID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.claims[key] = taskID
	return nil
}

// Two nodes on shared states: neither fires before it leads; the leader
// fires; a new leader goes on from the last tick fired and skips a tick
// the old leader claimed before it died, so no tick fires twice.
func TestRunnersOnSharedStatesFireEachTickOnce(t *testing.T) {
	ctx := context.Background()
	shared := newFakeShared()
	a, b := newDaemonState(t), newDaemonState(t)
	t0 := utc("2026-01-01T00:00:00Z")
	now := t0
	clock := func() time.Time { return now }
	ra := New(Params{Tasks: a.tasks, Log: a.log, States: shared, Now: clock})
	rb := New(Params{Tasks: b.tasks, Log: b.log, States: shared, Now: clock})
	for _, r := range []*Runner{ra, rb} {
		if err := r.load(ctx, a.set); err != nil {
			t.Fatal(err)
		}
	}

	now = t0.Add(time.Hour)
	ra.fireDue(ctx)
	rb.fireDue(ctx)
	if len(a.tasks.keys())+len(b.tasks.keys()) != 0 {
		t.Fatalf("nodes that do not lead fired %v %v", a.tasks.keys(), b.tasks.keys())
	}

	if err := ra.takeOver(ctx); err != nil {
		t.Fatal(err)
	}
	ra.fireDue(ctx)
	// a claims the 02:00 tick and dies before submitting it.
	if _, ok, _ := shared.Claim(ctx, "schedule:p/hourly@2026-01-01T02:00:00Z"); !ok {
		t.Fatal("the 02:00 tick was claimed before")
	}

	now = t0.Add(2*time.Hour + time.Minute)
	if err := rb.takeOver(ctx); err != nil {
		t.Fatal(err)
	}
	rb.fireDue(ctx)
	now = t0.Add(3 * time.Hour)
	rb.fireDue(ctx)

	if got, want := fmt.Sprint(a.tasks.keys()), "[schedule:p/hourly@2026-01-01T01:00:00Z]"; got != want {
		t.Errorf("a fired %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(b.tasks.keys()), "[schedule:p/hourly@2026-01-01T03:00:00Z]"; got != want {
		t.Errorf("b fired %s, want %s (02:00 was claimed by a, 01:00 fired by a)", got, want)
	}
	if shared.claims["schedule:p/hourly@2026-01-01T03:00:00Z"] != b.tasks.tasks[0].Id {
		t.Errorf("the 03:00 claim does not name b's task: %v", shared.claims)
	}
}
