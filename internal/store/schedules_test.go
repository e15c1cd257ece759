package store

import (
	"context"
	"testing"
	"time"
)

// The schedule tables keep each schedule's last ticks, pause state and
// the after triggers' cursor across a close and reopen of the real file.
func TestScheduleTableSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	tick := time.Date(2026, 3, 29, 1, 0, 0, 0, time.UTC)
	paused := true
	for i, write := range []bool{true, false} {
		s, err := Open(ctx, dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		tab, err := OpenScheduleTable(s)
		if err != nil {
			t.Fatal(err)
		}
		if write {
			if _, ok, _ := tab.ScheduleCursor(ctx); ok {
				t.Fatal("a cursor before any was set")
			}
			if err := tab.SaveScheduleStates(ctx, []ScheduleState{
				{ID: "p/a", LastTick: tick, LastFire: tick, LastTaskID: "t1", Paused: &paused},
				{ID: "p/b"},
			}); err != nil {
				t.Fatal(err)
			}
			if err := tab.SetScheduleCursor(ctx, 42); err != nil {
				t.Fatal(err)
			}
		} else {
			got, err := tab.ScheduleStates(ctx)
			if err != nil {
				t.Fatal(err)
			}
			a, b := got["p/a"], got["p/b"]
			if !a.LastTick.Equal(tick) || !a.LastFire.Equal(tick) || a.LastTaskID != "t1" || a.Paused == nil || !*a.Paused {
				t.Errorf("reopen %d: p/a = %+v", i, a)
			}
			if !b.LastTick.IsZero() || b.Paused != nil {
				t.Errorf("reopen %d: p/b = %+v", i, b)
			}
			if seq, ok, err := tab.ScheduleCursor(ctx); seq != 42 || !ok || err != nil {
				t.Errorf("cursor = %d, %v, %v", seq, ok, err)
			}
		}
		if err := tab.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
