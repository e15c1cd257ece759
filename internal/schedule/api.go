package schedule

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/aura-dev/aura/internal/execmgr"
	"github.com/aura-dev/aura/internal/store"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// The ScheduleService's operations. Errors are execmgr's typed errors,
// which the gRPC layer maps to codes in its one place.

// List returns the schedules (of plan, or all), each with its next n fire
// times and its last fire with that task's status now.
func (r *Runner) List(ctx context.Context, planName string, n int) ([]*aurav1.Schedule, error) {
	n = min(max(n, 1), 10)
	r.mu.Lock()
	var out []*aurav1.Schedule
	var last []string
	for _, e := range r.book.Entries() {
		if planName != "" && e.Sched.Plan.Name != planName {
			continue
		}
		s := describe(e, n)
		out = append(out, s)
		last = append(last, e.LastTaskID)
	}
	r.mu.Unlock()
	for i, s := range out {
		if last[i] == "" {
			continue
		}
		if t, err := r.p.Tasks.Get(ctx, last[i]); err == nil {
			s.LastTaskStatus = t.Status
		}
	}
	return out, nil
}

func describe(e *Entry, n int) *aurav1.Schedule {
	sc := e.Sched
	s := &aurav1.Schedule{Name: sc.ID, Task: sc.Task, Cron: sc.Cron, Overlap: sc.Overlap,
		CatchUp: sc.CatchUp.String(), Paused: e.Paused(), LastTaskId: e.LastTaskID, Jitter: sc.Jitter.String()}
	if sc.Every > 0 {
		s.Every = sc.Every.String()
	}
	if sc.After != nil {
		s.AfterTask, s.AfterStatus = sc.After.Task, sc.After.Statuses
	} else if sc.Cron != "" {
		s.Timezone = e.Timing.Loc.String()
	}
	for _, t := range e.NextTicks(n) {
		s.NextFireTimes = append(s.NextFireTimes, timestamppb.New(t.Add(jitter(sc, t))))
	}
	if !e.LastFire.IsZero() {
		s.LastTick = timestamppb.New(e.LastFire)
	}
	return s
}

func notFound(id string) error {
	if !strings.Contains(id, "/") {
		return &execmgr.InvalidError{Field: "schedule", Msg: fmt.Sprintf("%q: name a schedule as <plan>/<name>", id)}
	}
	return &execmgr.NotFoundError{Field: "schedule", Msg: fmt.Sprintf("no schedule %q (auractl schedules list shows them)", id)}
}

// Pause stops a schedule firing (durably) until Resume.
func (r *Runner) Pause(ctx context.Context, id string) (*aurav1.Schedule, error) {
	return r.setPaused(ctx, id, true)
}

// Resume lets a paused schedule fire again from its next tick.
func (r *Runner) Resume(ctx context.Context, id string) (*aurav1.Schedule, error) {
	return r.setPaused(ctx, id, false)
}

func (r *Runner) setPaused(ctx context.Context, id string, paused bool) (*aurav1.Schedule, error) {
	r.fireMu.Lock()
	defer r.fireMu.Unlock()
	r.mu.Lock()
	e, ok := r.book.Entry(id)
	var before *bool
	var st store.ScheduleState
	if ok {
		before = e.PausedOverride
		r.book.SetPaused(id, paused, r.now())
		st = e.State()
	}
	r.mu.Unlock()
	if !ok {
		return nil, notFound(id)
	}
	if err := r.p.States.SaveScheduleStates(ctx, []store.ScheduleState{st}); err != nil {
		r.mu.Lock()
		r.book.SetPausedOverride(id, before, r.now())
		r.mu.Unlock()
		return nil, fmt.Errorf("saving the pause state of %s: %w", id, err)
	}
	r.log.Info("schedule paused state set", "schedule", id, "paused", paused)
	r.wake()
	r.mu.Lock()
	defer r.mu.Unlock()
	return describe(e, 1), nil
}

// Trigger fires a schedule now, under its overlap policy.
func (r *Runner) Trigger(ctx context.Context, id string) (*aurav1.TriggerScheduleResponse, error) {
	r.fireMu.Lock()
	defer r.fireMu.Unlock()
	r.mu.Lock()
	e, ok := r.book.Entry(id)
	if ok && e.Sched.After != nil {
		r.mu.Unlock()
		return nil, &execmgr.UnavailableError{Field: "schedule", Msg: fmt.Sprintf("%s is an after trigger: it fires when %s ends, not on demand", id, e.Sched.After.Task)}
	}
	var a Action
	var buffered bool
	if ok {
		a, buffered, _ = r.book.Trigger(id, r.now())
	}
	r.mu.Unlock()
	if !ok {
		return nil, notFound(id)
	}
	resp := &aurav1.TriggerScheduleResponse{Tick: timestamppb.New(a.Tick)}
	if buffered {
		resp.SkippedReason = "buffered: fires when the running task ends (overlap: buffer_one)"
		return resp, nil
	}
	f := r.carryOut(ctx, []Action{a}, "trigger")[0]
	resp.TaskId, resp.SkippedReason, resp.Deduplicated = f.TaskID, f.Reason, f.Dedup
	return resp, nil
}

// Backfill fires every tick of a schedule in [from, to), oldest first, as
// if each had come in its time: each with its own idempotency key (a tick
// fired before finds its task), beside whatever runs (backfilled ticks are
// history being filled in, so the overlap policy does not drop them).
func (r *Runner) Backfill(ctx context.Context, id string, from, to time.Time) (*aurav1.BackfillScheduleResponse, error) {
	if !from.Before(to) {
		return nil, &execmgr.InvalidError{Field: "to", Msg: "must be after from"}
	}
	r.fireMu.Lock()
	defer r.fireMu.Unlock()
	r.mu.Lock()
	e, ok := r.book.Entry(id)
	var ticks []time.Time
	var err error
	if ok && e.Sched.After == nil {
		ticks, err = e.Ticks(from, to, maxBackfill)
	}
	r.mu.Unlock()
	switch {
	case !ok:
		return nil, notFound(id)
	case e.Sched.After != nil:
		return nil, &execmgr.UnavailableError{Field: "schedule", Msg: fmt.Sprintf("%s is an after trigger: it has no ticks to backfill", id)}
	case err != nil:
		return nil, &execmgr.InvalidError{Field: "from", Msg: err.Error()}
	}
	actions := make([]Action, len(ticks))
	for i, t := range ticks {
		actions[i] = Action{Schedule: e.Sched, Tick: t, Fire: true}
	}
	out := &aurav1.BackfillScheduleResponse{}
	for i, f := range r.carryOut(ctx, actions, "backfill") {
		out.Fires = append(out.Fires, &aurav1.TriggerScheduleResponse{TaskId: f.TaskID, Tick: timestamppb.New(ticks[i]), SkippedReason: f.Reason, Deduplicated: f.Dedup})
	}
	return out, nil
}
