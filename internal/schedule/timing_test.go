package schedule

import (
	"testing"
	"time"
)

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// ticks returns the ticks of tm in [from, to).
func ticks(t *testing.T, tm Timing, from, to time.Time) []time.Time {
	t.Helper()
	var out []time.Time
	at := from.Add(-time.Nanosecond)
	for {
		next, err := tm.Next(at)
		if err != nil {
			t.Fatal(err)
		}
		if !next.Before(to) {
			return out
		}
		out = append(out, next)
		at = next
	}
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

// A daily 02:30 fires once on every day around both DST transitions: at
// the next valid instant on the day the clock skips 02:30, and once (the
// first occurrence) on the day a repeated hour holds it.
func TestDailyAcrossDST(t *testing.T) {
	cases := []struct {
		zone, cron, day string
		want            string // the one fire that day, UTC
	}{
		// Berlin springs forward 2026-03-29 02:00 CET -> 03:00 CEST: 02:30
		// does not exist; the next valid instant is 03:00 CEST.
		{"Europe/Berlin", "30 2 * * *", "2026-03-29", "2026-03-29T01:00:00Z"},
		{"Europe/Berlin", "30 2 * * *", "2026-03-28", "2026-03-28T01:30:00Z"},
		{"Europe/Berlin", "30 2 * * *", "2026-03-30", "2026-03-30T00:30:00Z"},
		// Berlin falls back 2026-10-25 03:00 CEST -> 02:00 CET: 02:30
		// happens twice; it fires at the first (CEST).
		{"Europe/Berlin", "30 2 * * *", "2026-10-25", "2026-10-25T00:30:00Z"},
		{"Europe/Berlin", "30 2 * * *", "2026-10-26", "2026-10-26T01:30:00Z"},
		// New York springs forward 2026-03-08 02:00 EST -> 03:00 EDT.
		{"America/New_York", "30 2 * * *", "2026-03-08", "2026-03-08T07:00:00Z"},
		{"America/New_York", "30 2 * * *", "2026-03-09", "2026-03-09T06:30:00Z"},
		// New York falls back 2026-11-01 02:00 EDT -> 01:00 EST: 01:30
		// happens twice (02:30 once).
		{"America/New_York", "30 1 * * *", "2026-11-01", "2026-11-01T05:30:00Z"},
		{"America/New_York", "30 2 * * *", "2026-11-01", "2026-11-01T07:30:00Z"},
	}
	for _, c := range cases {
		loc := mustZone(t, c.zone)
		tm := Timing{Cron: c.cron, Loc: loc}
		day, _ := time.ParseInLocation(time.DateOnly, c.day, loc)
		got := ticks(t, tm, day, day.AddDate(0, 0, 1))
		if len(got) != 1 || !got[0].Equal(utc(c.want)) {
			t.Errorf("%s %q on %s: fires %v, want once at %s", c.zone, c.cron, c.day, got, c.want)
		}
	}
}

// Every tick of a repeated or skipped hour fires at most once, and the
// ticks never go backwards.
func TestCronEveryFifteenMinutesAcrossDST(t *testing.T) {
	loc := mustZone(t, "Europe/Berlin")
	tm := Timing{Cron: "*/15 * * * *", Loc: loc}
	for _, day := range []string{"2026-03-29", "2026-10-25"} {
		d, _ := time.ParseInLocation(time.DateOnly, day, loc)
		got := ticks(t, tm, d, d.AddDate(0, 0, 1))
		seen := map[time.Time]bool{}
		for i, g := range got {
			if seen[g] || (i > 0 && !g.After(got[i-1])) {
				t.Fatalf("%s: tick %s twice or out of order in %v", day, g, got)
			}
			seen[g] = true
		}
		// Spring: 23 hours, the four skipped ticks folded into 03:00.
		// Autumn: 25 hours, the repeated hour's ticks fired once.
		want := map[string]int{"2026-03-29": 23 * 4, "2026-10-25": 24 * 4}[day]
		if len(got) != want {
			t.Errorf("%s: %d ticks, want %d", day, len(got), want)
		}
	}
}

// every: 1h is an hour of real time apart, across both transitions in
// both zones.
func TestEveryHourIsRealTime(t *testing.T) {
	tm := Timing{Every: time.Hour}
	for _, zone := range []string{"Europe/Berlin", "America/New_York"} {
		loc := mustZone(t, zone)
		for _, day := range []string{"2026-03-08", "2026-03-29", "2026-10-25", "2026-11-01"} {
			d, _ := time.ParseInLocation(time.DateOnly, day, loc)
			got := ticks(t, tm, d.Add(-2*time.Hour), d.Add(26*time.Hour))
			for i := 1; i < len(got); i++ {
				if gap := got[i].Sub(got[i-1]); gap != time.Hour {
					t.Fatalf("%s %s: ticks %s and %s are %s apart", zone, day, got[i-1], got[i], gap)
				}
			}
			if len(got) != 28 {
				t.Errorf("%s %s: %d ticks in 28h", zone, day, len(got))
			}
		}
	}
}

func TestCronWithSeconds(t *testing.T) {
	tm := Timing{Cron: "*/2 * * * * *"}
	got, err := tm.Next(utc("2026-01-01T00:00:00Z"))
	if err != nil || !got.Equal(utc("2026-01-01T00:00:02Z")) {
		t.Fatalf("Next = %s, %v", got, err)
	}
}

func TestCronMacro(t *testing.T) {
	tm := Timing{Cron: "@daily", Loc: mustZone(t, "America/New_York")}
	got, err := tm.Next(utc("2026-01-01T12:00:00Z"))
	if err != nil || !got.Equal(utc("2026-01-02T05:00:00Z")) {
		t.Fatalf("Next = %s, %v; want midnight in New York", got, err)
	}
}
