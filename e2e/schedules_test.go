package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// scheduled lists the tasks a schedule fired, newest first.
func scheduled(t *testing.T, ctx context.Context, d *daemon, schedule string) []*aurav1.Task {
	t.Helper()
	resp, err := d.client.Exec.ListTasks(ctx, &aurav1.ListTasksRequest{LabelSelector: "schedule=" + schedule, PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Tasks
}

var tickKey = regexp.MustCompile(`^schedule:sched/every_second@\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)

// Schedules against the real daemon: an every-second schedule fires tasks
// carrying its key and label; auractl pauses, resumes, triggers and
// backfills; an after trigger whose task ends during a restart's drain
// fires once, on the next start.
func TestSchedulesAgainstTheDaemon(t *testing.T) {
	ctx := ctxT(t, 90*time.Second)
	d := startDaemon(t, daemonOpts{plans: []string{"testdata/plans/sched"}, args: []string{"--admin-listen", "127.0.0.1:0"}})
	admin := adminAddr(t, d)

	waitFor(t, "two fires of every_second", 20*time.Second, func() bool { return len(scheduled(t, ctx, d, "sched/every_second")) >= 2 })
	for _, task := range scheduled(t, ctx, d, "sched/every_second") {
		if !tickKey.MatchString(task.IdempotencyKey) || task.Labels["schedule"] != "sched/every_second" {
			t.Fatalf("fired task %s: key %q, labels %v", task.Id, task.IdempotencyKey, task.Labels)
		}
	}

	// The fires are in the event log, which Stream follows.
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	stream, err := d.client.Exec.Stream(sctx, &aurav1.StreamRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("Stream ended before a schedule.fired event: %v", err)
		}
		if ev.Type == "schedule.fired" && strings.HasPrefix(ev.Message, "sched/every_second ") && ev.TaskId != "" {
			break
		}
	}
	cancel()

	out, code := auractl(t, d, "schedules", "list")
	if code != 0 || !strings.Contains(out, "sched/every_second") || !strings.Contains(out, "cron 0 0 1 1 * Europe/Berlin") ||
		!strings.Contains(out, "after sched/first succeeded") {
		t.Fatalf("schedules list: exit %d\n%s", code, out)
	}

	// Paused: no next fire, and no new task while it stays paused.
	if out, code := auractl(t, d, "schedules", "pause", "sched/every_second"); code != 0 || !strings.Contains(out, "paused") {
		t.Fatalf("pause: exit %d\n%s", code, out)
	}
	before := len(scheduled(t, ctx, d, "sched/every_second"))
	list := listSchedules(t, ctx, d)
	if s := list["sched/every_second"]; !s.Paused || len(s.NextFireTimes) != 0 {
		t.Fatalf("paused schedule listed as %v", s)
	}
	time.Sleep(2500 * time.Millisecond) // two ticks that must not fire
	if after := len(scheduled(t, ctx, d, "sched/every_second")); after > before+1 {
		// One fire may have been under way when the pause came.
		t.Fatalf("%d tasks before the pause settled, %d after 2.5s paused", before, after)
	}
	if out, code := auractl(t, d, "schedules", "resume", "sched/every_second"); code != 0 || !strings.Contains(out, "resumed") {
		t.Fatalf("resume: exit %d\n%s", code, out)
	}
	paused := len(scheduled(t, ctx, d, "sched/every_second"))
	waitFor(t, "a fire after resume", 20*time.Second, func() bool { return len(scheduled(t, ctx, d, "sched/every_second")) > paused })

	// Trigger now: the yearly schedule fires at once.
	out, code = auractl(t, d, "schedules", "trigger", "sched/yearly")
	if code != 0 {
		t.Fatalf("trigger: exit %d\n%s", code, out)
	}
	if got := scheduled(t, ctx, d, "sched/yearly"); len(got) != 1 || got[0].Inputs.AsMap()["who"] != "yearly" {
		t.Fatalf("after trigger: yearly fired %v", got)
	}

	// Backfill three hours: three ticks, each its own key; again: nothing new.
	for range 2 {
		out, code = auractl(t, d, "schedules", "backfill", "sched/hourly", "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T03:00:00Z")
		if code != 0 {
			t.Fatalf("backfill: exit %d\n%s", code, out)
		}
	}
	var keys []string
	for _, task := range scheduled(t, ctx, d, "sched/hourly") {
		keys = append(keys, task.IdempotencyKey)
	}
	if want := "schedule:sched/hourly@2026-01-01T02:00:00Z schedule:sched/hourly@2026-01-01T01:00:00Z schedule:sched/hourly@2026-01-01T00:00:00Z"; strings.Join(keys, " ") != want {
		t.Fatalf("backfilled keys %q, want %q", keys, want)
	}

	// Metrics: fires by kind (the second backfill fired nothing new),
	// lateness of the timed fires.
	_, metrics := httpGet(t, admin+"/metrics")
	for _, c := range []struct {
		name   string
		labels []string
		ok     func(float64) bool
	}{
		{"aura_schedule_fires_total", []string{`kind="tick"`, `plan="sched"`}, func(v float64) bool { return v >= 2 }},
		{"aura_schedule_fires_total", []string{`kind="backfill"`}, func(v float64) bool { return v == 3 }},
		{"aura_schedule_fires_total", []string{`kind="trigger"`}, func(v float64) bool { return v == 1 }},
		{"aura_schedule_lateness_seconds_count", nil, func(v float64) bool { return v >= 3 }},
	} {
		if v, ok := metricValue(metrics, c.name, c.labels...); !ok || !c.ok(v) {
			t.Errorf("%s%v = %v (found %v)", c.name, c.labels, v, ok)
		}
	}
	// Bad requests: a clear code, naming what is wrong.
	sc := aurav1.NewScheduleServiceClient(d.client.Conn())
	for _, c := range []struct {
		call func() error
		code codes.Code
		msg  string
	}{
		{func() error {
			_, err := sc.TriggerSchedule(ctx, &aurav1.TriggerScheduleRequest{Schedule: "sched/nope"})
			return err
		}, codes.NotFound, `no schedule "sched/nope"`},
		{func() error {
			_, err := sc.TriggerSchedule(ctx, &aurav1.TriggerScheduleRequest{Schedule: "sched/then"})
			return err
		}, codes.FailedPrecondition, "after trigger"},
		{func() error {
			_, err := sc.BackfillSchedule(ctx, &aurav1.BackfillScheduleRequest{Schedule: "sched/hourly",
				From: timestamppb.New(time.Now()), To: timestamppb.New(time.Now().Add(-time.Hour))})
			return err
		}, codes.InvalidArgument, "to: must be after from"},
		{func() error {
			_, err := sc.BackfillSchedule(ctx, &aurav1.BackfillScheduleRequest{Schedule: "sched/every_second",
				From: timestamppb.New(time.Now().Add(-time.Hour)), To: timestamppb.New(time.Now())})
			return err
		}, codes.InvalidArgument, "more than 1000 ticks"},
	} {
		if err := c.call(); status.Code(err) != c.code || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("got %v, want %s naming %q", err, c.code, c.msg)
		}
	}
	if out, code := auractl(t, d, "schedules", "trigger", "sched/nope"); code == 0 || !strings.Contains(out, "sched/nope") {
		t.Fatalf("triggering an unknown schedule: exit %d\n%s", code, out)
	}

	// A reload that changes a schedule takes effect at once.
	yaml := filepath.Join(d.plans, "sched", "schedules.yaml")
	b, err := os.ReadFile(yaml)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(yaml, []byte(strings.Replace(string(b), "every: 1h", "every: 2h", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := d.client.Exec.ReloadPlans(ctx, &aurav1.ReloadPlansRequest{}); err != nil {
		t.Fatal(err)
	}
	if s := listSchedules(t, ctx, d)["sched/hourly"]; s.Every != "2h0m0s" {
		t.Fatalf("after the reload: hourly is every %q", s.Every)
	}

	// The followed task ends while aurad drains (the scheduler has
	// stopped by then): the next start reads its end from the log.
	first := d.submit(ctx, &aurav1.SubmitRequest{Task: "sched/first"})
	waitFor(t, "sched/first running", 20*time.Second, func() bool {
		task, err := d.client.Get(ctx, first)
		return err == nil && task.Status == aurav1.TaskStatus_TASK_STATUS_RUNNING
	})
	d.stop()
	d = startDaemonIn(t, d.plans, d.data)
	if task, err := d.client.Get(ctx, first); err != nil || task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("sched/first after the restart: %v, %v", task, err)
	}
	waitFor(t, "the after trigger to fire", 20*time.Second, func() bool { return len(scheduled(t, ctx, d, "sched/then")) >= 1 })
	d.stop()
	d = startDaemonIn(t, d.plans, d.data)
	fires := len(scheduled(t, ctx, d, "sched/every_second"))
	waitFor(t, "the scheduler to run after the second restart", 20*time.Second, func() bool {
		return len(scheduled(t, ctx, d, "sched/every_second")) > fires+1
	})
	got := scheduled(t, ctx, d, "sched/then")
	if len(got) != 1 || got[0].IdempotencyKey != "schedule:sched/then@"+first || got[0].Inputs.AsMap()["who"] != "done first" {
		t.Fatalf("the after trigger fired %d tasks (%v), want one keyed by %s with who=done first", len(got), got, first)
	}
}

func listSchedules(t *testing.T, ctx context.Context, d *daemon) map[string]*aurav1.Schedule {
	t.Helper()
	return listSchedulesAs(t, ctx, d.client)
}
