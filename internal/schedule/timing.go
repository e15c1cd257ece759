package schedule

import (
	"errors"
	"fmt"
	"time"

	"github.com/adhocore/gronx"
)

// Timing is when a timed schedule ticks: a cron expression read in a
// time zone, or a fixed interval of real time.
//
// Cron expressions are matched by gronx in a zone without DST (the
// local wall clock written as if it were UTC), and Timing maps each
// matching wall-clock time to an instant by its own rules, so DST
// behaves the same whatever the parser does near a transition:
//   - a wall-clock time that does not exist (skipped by a spring-forward
//     transition) fires once, at the next valid instant: the transition;
//   - a wall-clock time that happens twice (a fall-back transition) fires
//     once, at its first occurrence.
//
// Interval ticks are multiples of Every since the Unix epoch: the same
// instants on every start (so a tick's idempotency key is stable), and
// exactly Every of real time apart across any DST transition.
type Timing struct {
	Cron  string
	Every time.Duration
	Loc   *time.Location // for Cron; nil is UTC
}

// maxCronSteps bounds the wall-clock matches Next looks through for one
// instant after the one it is given: only a fall-back hour can hold
// matches that are not after it (sixty for a per-minute cron, 3600 for
// per-second).
const maxCronSteps = 4000

// Next returns the first tick strictly after t.
func (tm Timing) Next(t time.Time) (time.Time, error) {
	if tm.Every > 0 {
		step := int64(tm.Every)
		n := t.UnixNano()
		next := (n/step + 1) * step
		if n < 0 && n%step != 0 {
			next -= step
		}
		return time.Unix(0, next).UTC(), nil
	}
	if tm.Cron == "" {
		return time.Time{}, errors.New("schedule has neither cron nor every")
	}
	loc := tm.Loc
	if loc == nil {
		loc = time.UTC
	}
	wall := naive(t.In(loc))
	for range maxCronSteps {
		nw, err := gronx.NextTickAfter(tm.Cron, wall, false)
		if err != nil {
			return time.Time{}, fmt.Errorf("cron %q: %w", tm.Cron, err)
		}
		if !nw.After(wall) {
			return time.Time{}, fmt.Errorf("cron %q: no tick after %s", tm.Cron, wall.Format(time.DateTime))
		}
		if at := Instant(nw, loc); at.After(t) {
			return at, nil
		}
		wall = nw
	}
	return time.Time{}, fmt.Errorf("cron %q: no tick after %s", tm.Cron, t.Format(time.RFC3339))
}

// naive is t's wall clock as a UTC time.
func naive(t time.Time) time.Time {
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	return time.Date(y, mo, d, h, mi, s, 0, time.UTC)
}

// Instant maps a wall-clock time (written as a UTC time) to the instant it
// names in loc: its first occurrence when it happens twice, the end of the
// gap when a transition skips it.
func Instant(wall time.Time, loc *time.Location) time.Time {
	u := wall.Unix()
	// Transitions are far more than two days apart, so the offsets in
	// force a day either side are the only candidates.
	offBefore := offsetAt(u-86400, loc)
	offAfter := offsetAt(u+86400, loc)
	var best time.Time
	for _, off := range []int64{offBefore, offAfter} {
		c := time.Unix(u-off, 0)
		if naive(c.In(loc)).Equal(wall) && (best.IsZero() || c.Before(best)) {
			best = c
		}
	}
	if !best.IsZero() {
		return best.UTC()
	}
	// In a gap: the instant the wall clock would show, read with the
	// offset before, lies past the transition; its zone began there.
	start, _ := time.Unix(u-offBefore, 0).In(loc).ZoneBounds()
	return start.UTC()
}

func offsetAt(u int64, loc *time.Location) int64 {
	_, off := time.Unix(u, 0).In(loc).Zone()
	return int64(off)
}
