package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/aura-dev/aura/internal/cluster/etcdtest"
	"github.com/aura-dev/aura/internal/store"
)

func TestAFireIsClaimedOnceAcrossNodes(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := NewScheduleStates(client(t, etcd.Endpoints()), store.NewScheduleMemory(), "a", nil)
	b := NewScheduleStates(client(t, etcd.Endpoints()), store.NewScheduleMemory(), "b", nil)
	t.Cleanup(func() { a.Close(); b.Close() })
	const key = "schedule:p/s@2026-01-01T00:00:00Z"
	if _, claimed, err := a.Claim(ctx, key); err != nil || !claimed {
		t.Fatalf("a's claim: %v, %v", claimed, err)
	}
	// Before a records the task (a stopped between claim and submit):
	// b finds the claim and fires nothing.
	if prior, claimed, err := b.Claim(ctx, key); err != nil || claimed || prior != "" {
		t.Fatalf("b claimed a claimed fire: %q, %v, %v", prior, claimed, err)
	}
	if err := a.Fired(ctx, key, "a.task-1"); err != nil {
		t.Fatal(err)
	}
	if prior, claimed, err := b.Claim(ctx, key); err != nil || claimed || prior != "a.task-1" {
		t.Fatalf("b's claim after a fired: %q, %v, %v", prior, claimed, err)
	}
	// Pruning keeps young claims and deletes old ones.
	if n, err := PruneFireClaims(ctx, a.cli, time.Hour); err != nil || n != 0 {
		t.Fatalf("pruned %d young claims: %v", n, err)
	}
	if n, err := PruneFireClaims(ctx, a.cli, -time.Second); err != nil || n != 1 {
		t.Fatalf("pruned %d of 1 old claim: %v", n, err)
	}
	if _, claimed, err := b.Claim(ctx, key); err != nil || !claimed {
		t.Fatalf("a pruned claim is still held: %v, %v", claimed, err)
	}
}

func TestScheduleStatesAreSharedAndNeverGoBack(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := NewScheduleStates(client(t, etcd.Endpoints()), store.NewScheduleMemory(), "a", nil)
	b := NewScheduleStates(client(t, etcd.Endpoints()), store.NewScheduleMemory(), "b", nil)
	t.Cleanup(func() { a.Close(); b.Close() })
	if _, err := b.ScheduleStates(ctx); err != nil { // b follows from here
		t.Fatal(err)
	}
	t1 := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	t0 := t1.Add(-time.Hour)
	if err := a.SaveScheduleStates(ctx, []store.ScheduleState{{ID: "p/s", LastTick: t1, LastFire: t1, LastTaskID: "a.1"}}); err != nil {
		t.Fatal(err)
	}
	select {
	case st := <-b.Changes():
		if st.ID != "p/s" || !st.LastTick.Equal(t1) || st.LastTaskID != "a.1" {
			t.Fatalf("b heard %+v", st)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("b did not hear of a's write")
	}
	// b, which had not heard of a's fire, pauses the schedule: the pause
	// is kept, the last tick is not moved back.
	paused := true
	if err := b.SaveScheduleStates(ctx, []store.ScheduleState{{ID: "p/s", LastTick: t0, LastFire: t0, LastTaskID: "b.0", Paused: &paused}}); err != nil {
		t.Fatal(err)
	}
	got, err := a.ScheduleStates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := got["p/s"]; !st.LastTick.Equal(t1) || st.LastTaskID != "a.1" || st.Paused == nil || !*st.Paused {
		t.Fatalf("after b's write: %+v", st)
	}
	// The after triggers' cursor stays with each node.
	if err := a.SetScheduleCursor(ctx, 42); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := b.ScheduleCursor(ctx); ok {
		t.Fatal("b has a's cursor")
	}
}
