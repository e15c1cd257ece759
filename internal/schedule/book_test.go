package schedule

import (
	"fmt"
	"testing"
	"time"

	"github.com/aura-dev/aura/internal/plan"
	"github.com/aura-dev/aura/internal/store"
)

func testSchedule(id string, mod func(*plan.Schedule)) *plan.Schedule {
	sc := &plan.Schedule{ID: id, Name: id, Task: "p/t", Overlap: plan.OverlapSkip, Plan: &plan.Plan{Name: "p"}}
	if mod != nil {
		mod(sc)
	}
	return sc
}

// The scheduler driven by a fake clock, minute by minute, fires a daily
// 02:30 once on each day around both transitions, in both zones.
func TestBookDailyFiresOncePerDayAcrossDST(t *testing.T) {
	for _, c := range []struct{ zone, from string }{
		{"Europe/Berlin", "2026-03-27"}, {"Europe/Berlin", "2026-10-23"},
		{"America/New_York", "2026-03-06"}, {"America/New_York", "2026-10-30"},
	} {
		loc := mustZone(t, c.zone)
		start, _ := time.ParseInLocation(time.DateOnly, c.from, loc)
		b := NewBook(nil)
		b.Load([]*plan.Schedule{testSchedule("p/daily", func(s *plan.Schedule) { s.Cron = "30 2 * * *"; s.Location = loc })}, nil, start)
		perDay := map[string][]time.Time{}
		for now := start; now.Before(start.AddDate(0, 0, 4)); now = now.Add(time.Minute) {
			for _, a := range b.Due(now) {
				if !a.Fire {
					t.Fatalf("%s: tick %s skipped (%s) on an on-time clock", c.zone, a.Tick, a.Reason)
				}
				day := a.Tick.In(loc).Format(time.DateOnly)
				perDay[day] = append(perDay[day], a.Tick)
			}
		}
		if len(perDay) != 4 {
			t.Errorf("%s from %s: fired on %d days, want 4: %v", c.zone, c.from, len(perDay), perDay)
		}
		for day, fires := range perDay {
			if len(fires) != 1 {
				t.Errorf("%s %s: fired %d times: %v", c.zone, day, len(fires), fires)
			}
		}
	}
}

// every: 1h fires an hour of real time apart on a fake clock crossing
// both transitions.
func TestBookEveryHourAcrossDST(t *testing.T) {
	loc := mustZone(t, "Europe/Berlin")
	for _, day := range []string{"2026-03-29", "2026-10-25"} {
		start, _ := time.ParseInLocation(time.DateOnly, day, loc)
		b := NewBook(nil)
		b.Load([]*plan.Schedule{testSchedule("p/hourly", func(s *plan.Schedule) { s.Every = time.Hour })}, nil, start)
		var fires []time.Time
		for now := start; now.Before(start.Add(26 * time.Hour)); now = now.Add(time.Minute) {
			for _, a := range b.Due(now) {
				fires = append(fires, a.Tick)
			}
		}
		for i := 1; i < len(fires); i++ {
			if d := fires[i].Sub(fires[i-1]); d != time.Hour {
				t.Fatalf("%s: fires %s and %s are %s apart", day, fires[i-1], fires[i], d)
			}
		}
		if len(fires) != 25 { // 1:00 to 25:00 after a start at midnight
			t.Errorf("%s: %d fires in 26h", day, len(fires))
		}
	}
}

// sim runs one schedule on a fake clock with tasks that each take run:
// it fires what the book says, ends tasks when their time is up, and
// reports what happened.
type sim struct {
	b          *Book
	id         string
	run        time.Duration
	ends       map[string]time.Time // running task -> end
	fires      int
	skips      map[string]int
	cancelled  []string
	maxRunning int
	n          int
	waited     int // fires that started after their tick: buffered ones
}

func newSim(overlap string, every, run time.Duration, start time.Time) *sim {
	s := &sim{b: NewBook(nil), id: "p/s", run: run, ends: map[string]time.Time{}, skips: map[string]int{}}
	s.b.Load([]*plan.Schedule{testSchedule(s.id, func(sc *plan.Schedule) { sc.Every = every; sc.Overlap = overlap })}, nil, start)
	return s
}

func (s *sim) do(now time.Time, actions []Action) {
	for _, a := range actions {
		if !a.Fire {
			s.skips[a.Reason]++
			continue
		}
		for _, id := range a.Cancel {
			s.cancelled = append(s.cancelled, id)
			delete(s.ends, id)
			s.do(now, s.b.Ended(s.id, id))
		}
		s.n++
		if now.After(a.Tick) {
			s.waited++
		}
		task := fmt.Sprint("task", s.n)
		s.fires++
		s.ends[task] = now.Add(s.run)
		s.b.Fired(s.id, a.Tick, task, true)
		s.maxRunning = max(s.maxRunning, len(s.ends))
	}
}

func (s *sim) step(now time.Time) {
	for task, end := range s.ends {
		if !end.After(now) {
			delete(s.ends, task)
			s.do(now, s.b.Ended(s.id, task))
		}
	}
	s.do(now, s.b.Due(now))
}

// With a task longer than the interval (every minute, 150s each), each
// policy does what it says over ten minutes.
func TestBookOverlapPolicies(t *testing.T) {
	start := utc("2026-01-01T00:00:00Z")
	runSim := func(overlap string) *sim {
		s := newSim(overlap, time.Minute, 150*time.Second, start)
		for now := start; !now.After(start.Add(10 * time.Minute)); now = now.Add(time.Second) {
			s.step(now)
		}
		return s
	}
	skip := runSim(plan.OverlapSkip)
	if skip.maxRunning != 1 || skip.skips[ReasonOverlap] == 0 {
		t.Errorf("skip: at most %d running, %d skipped for overlap; want never two and some skipped", skip.maxRunning, skip.skips[ReasonOverlap])
	}
	buf := runSim(plan.OverlapBufferOne)
	if buf.maxRunning != 1 || buf.skips[ReasonBufferFull] == 0 || buf.waited == 0 || skip.waited != 0 {
		t.Errorf("buffer_one: at most %d running, %d fires waited for the one before, %d skipped as buffer_full; want one running, fires queued behind it, the rest skipped",
			buf.maxRunning, buf.waited, buf.skips[ReasonBufferFull])
	}
	allow := runSim(plan.OverlapAllow)
	if allow.maxRunning < 2 || allow.fires != 10 || len(allow.skips) != 0 {
		t.Errorf("allow: at most %d running, %d fires, skips %v; want overlapping runs, every tick fired", allow.maxRunning, allow.fires, allow.skips)
	}
	cp := runSim(plan.OverlapCancelPrevious)
	if cp.maxRunning != 1 || cp.fires != 10 || len(cp.cancelled) != 9 {
		t.Errorf("cancel_previous: at most %d running, %d fires, %d cancelled; want each tick to cancel the one before", cp.maxRunning, cp.fires, len(cp.cancelled))
	}
}

// buffer_one holds at most one fire: the buffered tick fires the moment
// the running task ends.
func TestBookBufferOneFiresWhenRunningEnds(t *testing.T) {
	start := utc("2026-01-01T00:00:00Z")
	s := newSim(plan.OverlapBufferOne, time.Minute, 150*time.Second, start)
	s.step(start.Add(time.Minute))     // fires task1, runs to 3:30
	s.step(start.Add(2 * time.Minute)) // buffered
	s.step(start.Add(3 * time.Minute)) // buffer full: skipped
	if s.fires != 1 || s.skips[ReasonBufferFull] != 1 {
		t.Fatalf("fires %d, skips %v", s.fires, s.skips)
	}
	s.step(start.Add(3*time.Minute + 30*time.Second)) // task1 ends: the buffered 0:02 tick fires
	if s.fires != 2 {
		t.Fatalf("after the running task ended: %d fires, want the buffered one too", s.fires)
	}
}

// Downtime of three ticks with catch_up covering two: allow fires both
// in the window, skip fires the latest; the oldest is recorded skipped as
// missed either way.
func TestBookCatchUp(t *testing.T) {
	t0 := utc("2026-01-01T00:00:00Z")
	now := t0.Add(3*time.Hour + 10*time.Minute) // ticks 1:00, 2:00, 3:00 missed
	for _, c := range []struct {
		overlap string
		fires   []time.Time
		skipped map[string][]time.Time
	}{
		{plan.OverlapAllow, []time.Time{t0.Add(2 * time.Hour), t0.Add(3 * time.Hour)},
			map[string][]time.Time{ReasonMissed: {t0.Add(time.Hour)}}},
		{plan.OverlapSkip, []time.Time{t0.Add(3 * time.Hour)},
			map[string][]time.Time{ReasonMissed: {t0.Add(time.Hour)}, ReasonCoalesced: {t0.Add(2 * time.Hour)}}},
		{plan.OverlapBufferOne, []time.Time{t0.Add(3 * time.Hour)},
			map[string][]time.Time{ReasonMissed: {t0.Add(time.Hour)}, ReasonCoalesced: {t0.Add(2 * time.Hour)}}},
	} {
		b := NewBook(nil)
		sc := testSchedule("p/h", func(s *plan.Schedule) { s.Every = time.Hour; s.CatchUp = 90 * time.Minute; s.Overlap = c.overlap })
		b.Load([]*plan.Schedule{sc}, map[string]store.ScheduleState{"p/h": {ID: "p/h", LastTick: t0}}, now)
		var fires []time.Time
		skipped := map[string][]time.Time{}
		for _, a := range b.Due(now) {
			if a.Fire {
				fires = append(fires, a.Tick)
			} else {
				skipped[a.Reason] = append(skipped[a.Reason], a.Tick)
			}
		}
		if fmt.Sprint(fires) != fmt.Sprint(c.fires) || fmt.Sprint(skipped) != fmt.Sprint(c.skipped) {
			t.Errorf("%s: fired %v, skipped %v; want %v and %v", c.overlap, fires, skipped, c.fires, c.skipped)
		}
		if e, _ := b.Entry("p/h"); !e.Last.Equal(t0.Add(3 * time.Hour)) {
			t.Errorf("%s: last tick %s after catching up", c.overlap, e.Last)
		}
		if a := b.Due(now); len(a) != 0 {
			t.Errorf("%s: a second look at the same moment: %v", c.overlap, a)
		}
	}
}

// A clock that jumps a year ahead records the missed ticks as one range
// and fires at most the latest: no storm of fires, and no storm of events.
func TestBookClockJumpDoesNotStorm(t *testing.T) {
	t0 := utc("2026-01-01T00:00:00Z")
	for _, overlap := range []string{plan.OverlapAllow, plan.OverlapSkip} {
		b := NewBook(nil)
		b.Load([]*plan.Schedule{testSchedule("p/s", func(s *plan.Schedule) { s.Every = time.Second; s.Overlap = overlap })}, nil, t0)
		actions := b.Due(t0.AddDate(1, 0, 0))
		fires, skipped := 0, 0
		for _, a := range actions {
			if a.Fire {
				fires++
			}
			skipped += a.Skipped
		}
		// The grace of a minute: sixty ticks for allow, one for skip.
		if len(actions) > 62 || fires > 60 || skipped < 365*86400-61 {
			t.Errorf("%s: %d actions, %d fires, %d skipped after a year's jump", overlap, len(actions), fires, skipped)
		}
		// A clock going back fires nothing until it passes the last tick.
		if a := b.Due(t0.AddDate(0, 6, 0)); len(a) != 0 {
			t.Errorf("%s: the clock went back and %d actions came", overlap, len(a))
		}
	}
}

// A reload that changes a schedule goes on from its last tick: the tick
// just fired does not fire again.
func TestBookReloadDoesNotRefireTheCurrentTick(t *testing.T) {
	t0 := utc("2026-01-01T00:00:00Z")
	b := NewBook(nil)
	b.Load([]*plan.Schedule{testSchedule("p/s", func(s *plan.Schedule) { s.Every = time.Minute })}, nil, t0)
	now := t0.Add(time.Minute)
	if a := b.Due(now); len(a) != 1 || !a[0].Fire {
		t.Fatalf("first tick: %v", a)
	}
	// The file now says every 30s (1:00 is a tick of it too) and a minute's catch_up.
	b.Load([]*plan.Schedule{testSchedule("p/s", func(s *plan.Schedule) { s.Every = 30 * time.Second; s.CatchUp = time.Hour })}, nil, now)
	if a := b.Due(now); len(a) != 0 {
		t.Fatalf("after the reload at the same moment: %v", a)
	}
	if a := b.Due(now.Add(30 * time.Second)); len(a) != 1 || !a[0].Tick.Equal(now.Add(30*time.Second)) {
		t.Fatalf("the reloaded schedule's next tick: %v", a)
	}
}

// Paused schedules fire nothing; resuming goes on from now without the
// ticks that passed meanwhile.
func TestBookPauseResume(t *testing.T) {
	t0 := utc("2026-01-01T00:00:00Z")
	b := NewBook(nil)
	b.Load([]*plan.Schedule{testSchedule("p/s", func(s *plan.Schedule) { s.Every = time.Minute; s.CatchUp = time.Hour })}, nil, t0)
	b.SetPaused("p/s", true, t0)
	if a := b.Due(t0.Add(10 * time.Minute)); len(a) != 0 {
		t.Fatalf("paused: %v", a)
	}
	b.SetPaused("p/s", false, t0.Add(10*time.Minute))
	if a := b.Due(t0.Add(10 * time.Minute)); len(a) != 0 {
		t.Fatalf("resumed: the paused ticks came back: %v", a)
	}
	if a := b.Due(t0.Add(11 * time.Minute)); len(a) != 1 || !a[0].Fire {
		t.Fatalf("resumed: next tick %v", a)
	}
}
