package e2e

// The web UI's Schedules, Hooks and Resources (pool) pages in the browser,
// run as subtests of TestUIBrowser against its daemon.

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/aura-dev/aura/client"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// uiSchedulePlan writes plan uisched: a daily `every` schedule (it does not
// fire by itself while a test runs, short of midnight UTC, and nothing
// below depends on that), a cron schedule in Berlin time, and an after
// trigger, which cannot be triggered by hand.
func uiSchedulePlan(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "uisched")
	files := map[string]string{
		"plan.yaml":        "title: Schedules for the web UI tests\n",
		"tasks/note.yaml":  "steps:\n  - action: noop\nreturns: noted\n",
		"tasks/other.yaml": "steps:\n  - action: noop\n",
		"schedules.yaml": `schedules:
  daily:
    task: uisched/note
    every: 24h
  morning:
    task: uisched/note
    cron: "0 8 * * 1-5"
    timezone: Europe/Berlin
    overlap: allow
    jitter: 30s
  after_other:
    task: uisched/note
    after: {task: uisched/other, status: succeeded}
`,
	}
	for name, body := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// uiPoolResources declares pool phone with two instances.
func uiPoolResources(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "resources.yaml")
	if err := os.WriteFile(path, []byte("resources:\n  phone:\n    instances: [phone-a, phone-b]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// testUISchedules pauses, resumes and triggers a schedule from the
// Schedules page; the page shows each new state, and the fired task as a
// link to its page.
func testUISchedules(t *testing.T, ctx context.Context, b *browser, d *daemon, base string) {
	const row = `tr[data-schedule="uisched/daily"]`
	b.run("opening /schedules", chromedp.Navigate(base+"/schedules"), chromedp.WaitVisible(chromedp.CSS(row)))
	if got := b.text(`tr[data-schedule="uisched/morning"]`); !strings.Contains(got, "0 8 * * 1-5") || !strings.Contains(got, "Europe/Berlin") ||
		!strings.Contains(got, "allow") || !strings.Contains(got, "CE") {
		t.Errorf("the cron schedule's row shows %q, want its spec, zone, overlap and next fires in Berlin time", got)
	}
	if got := b.text(`tr[data-schedule="uisched/after_other"]`); !strings.Contains(got, "after") || !strings.Contains(got, "uisched/other succeeded") {
		t.Errorf("the after trigger's row shows %q", got)
	}
	if got := b.text(row + " .next"); !strings.Contains(got, "UTC") {
		t.Errorf("the every schedule's next fires: %q", got)
	}

	b.run("pressing Pause", chromedp.Click(chromedp.CSS(row+" button.pause")))
	b.waitText("#schedule-done", "Paused uisched/daily")
	b.waitText(row+" .state", "paused")
	b.waitText(row+" .next", "none while paused")
	if !listSchedules(t, ctx, d)["uisched/daily"].Paused {
		t.Fatal("after Pause the API says the schedule is not paused")
	}
	b.run("pressing Resume", chromedp.Click(chromedp.CSS(row+" button.resume")))
	b.waitText("#schedule-done", "Resumed uisched/daily")
	b.waitText(row+" .state", "active")
	if s := listSchedules(t, ctx, d)["uisched/daily"]; s.Paused || len(s.NextFireTimes) == 0 {
		t.Fatalf("after Resume the API lists %v", s)
	}

	b.run("pressing Trigger now", chromedp.Click(chromedp.CSS(row+" button.trigger")))
	b.waitText("#schedule-done", "Fired uisched/daily")
	fired := b.text("#fired-task")
	tk, err := d.client.Get(ctx, fired)
	if err != nil || tk.Task != "uisched/note" || tk.Labels["schedule"] != "uisched/daily" {
		t.Fatalf("the page names %q as fired: %v (%v)", fired, tk, err)
	}
	if got := b.text(row + " .last-task"); got != fired {
		t.Errorf("the row's last task is %q, want %s", got, fired)
	}
	b.screenshot("schedules")
	b.run("following the fired task's link", chromedp.Click(chromedp.CSS("#fired-task")), chromedp.WaitVisible(chromedp.CSS("#task-id")))
	if got := b.text("#task-id"); got != fired {
		t.Errorf("the link opened %q, want %s", got, fired)
	}
	b.waitText("#task-status", "SUCCEEDED")

	// An after trigger fires when its task ends, not on demand: posting
	// Trigger now for it anyway shows the server's refusal.
	b.run("opening /schedules", chromedp.Navigate(base+"/schedules"), chromedp.WaitVisible(chromedp.CSS(row)))
	if errs := b.consoleErrors(); len(errs) > 0 {
		t.Errorf("console errors:\n%s", strings.Join(errs, "\n"))
	}
	if n := len(get(b, "looking for its Trigger button", chromedp.Nodes(chromedp.CSS(`tr[data-schedule="uisched/after_other"] button.trigger`), chromedp.AtLeast(0)))); n != 0 {
		t.Error("an after trigger is offered Trigger now")
	}
	refusal := get(b, "posting Trigger now for the after trigger", chromedp.Evaluate[string](`(async () => {
		const body = new URLSearchParams({csrf: document.querySelector('meta[name=csrf-token]').content, schedule: 'uisched/after_other'});
		const r = await fetch('/schedules/trigger', {method: 'POST', body});
		const doc = new DOMParser().parseFromString(await r.text(), 'text/html');
		return r.status + ' ' + doc.querySelector('#schedule-error').textContent;
	})()`, chromedp.EvalAwaitPromise))
	if !strings.HasPrefix(refusal, "400 uisched/after_other: ") || !strings.Contains(refusal, "after trigger") {
		t.Errorf("triggering an after trigger: %q, want 400 with the server's message", refusal)
	}
	b.consoleErrors() // the browser reports the 400 it was asked to provoke

	// A fire from elsewhere (the API) shows in the open page's row, its
	// task's status following it, without a reload.
	b.run("opening /schedules", chromedp.Navigate(base+"/schedules"), chromedp.WaitVisible(chromedp.CSS(row)))
	evalT[bool](b, `window.notReloaded = true`)
	resp, err := aurav1.NewScheduleServiceClient(d.client.Conn()).TriggerSchedule(ctx, &aurav1.TriggerScheduleRequest{Schedule: "uisched/daily"})
	if err != nil || resp.GetTaskId() == "" || resp.GetTaskId() == fired {
		t.Fatalf("TriggerSchedule through gRPC: %v, %v", resp, err)
	}
	b.waitText(row+" .last-task", resp.GetTaskId())
	b.waitText(row+" .last .badge", "SUCCEEDED")
	if tick := b.text(row + " .tick"); tick == "" {
		t.Error("the row shows no last fire after the trigger")
	}
	if !evalT[bool](b, `window.notReloaded === true`) {
		t.Error("the page reloaded to show the fire")
	}
	if errs := b.consoleErrors(); len(errs) > 0 {
		t.Errorf("console errors:\n%s", strings.Join(errs, "\n"))
	}
}

// testUIHooks keeps the Hooks page open while a Subscribe stream connects
// and an interceptor registers, is asked and denies, and the stream
// leaves: each shows on the page as it happens, without a reload (the
// page's own event stream pushes the change).
func testUIHooks(t *testing.T, ctx context.Context, b *browser, d *daemon, base string) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b.run("opening /hooks", chromedp.Navigate(base+"/hooks"), chromedp.WaitVisible(chromedp.CSS("#followers")))
	evalT[bool](b, `window.__notReloaded = true`)
	const sub = `tr.follower[data-kind="subscribe"]`
	if n := b.count(sub); n != 0 {
		t.Fatalf("%d Subscribe streams listed before one connects", n)
	}
	subCtx, unsubscribe := context.WithCancel(ctx)
	defer unsubscribe()
	if _, err := d.client.Hooks.Subscribe(subCtx, &aurav1.SubscribeRequest{Hooks: []string{"after_task_run"}, Plan: "ui"}); err != nil {
		t.Fatal(err)
	}
	b.run("waiting for the Subscribe stream to show", chromedp.WaitVisible(chromedp.CSS(sub)))
	if got := b.text(sub + " .plan"); got != "ui" {
		t.Errorf("the subscriber's plan filter shows %q, want ui", got)
	}
	if got := b.text(sub + " .hook-points"); !strings.Contains(got, "after_task_run") {
		t.Errorf("the subscriber's hooks show %q, want after_task_run", got)
	}
	if got := b.text(sub); !strings.Contains(got, "127.0.0.1:") {
		t.Errorf("the subscriber's row %q names no peer address", got)
	}

	// An interceptor of plan uisched that denies the one task it is asked
	// about: its row counts the call and the denial.
	ic, err := d.client.Hooks.Intercept(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ic.Send(&aurav1.InterceptReply{Msg: &aurav1.InterceptReply_Register{Register: &aurav1.InterceptRegistration{
		Name: "ui-policy", Plan: "uisched", Timeout: durationpb.New(20 * time.Second)}}}); err != nil {
		t.Fatal(err)
	}
	const row = `tr.interceptor`
	b.run("waiting for the interceptor to show", chromedp.WaitVisible(chromedp.CSS(row)))
	id := d.submit(ctx, &aurav1.SubmitRequest{Task: "uisched/other"})
	call, err := ic.Recv()
	if err != nil || call.Task.GetId() != id {
		t.Fatalf("the interceptor was asked %v (%v), want task %s", call, err, id)
	}
	if err := ic.Send(&aurav1.InterceptReply{Msg: &aurav1.InterceptReply_Decision{Decision: &aurav1.InterceptDecision{CallId: call.CallId, Reason: "not now"}}}); err != nil {
		t.Fatal(err)
	}
	if tk := d.wait(ctx, id); tk.Status != aurav1.TaskStatus_TASK_STATUS_FAILED {
		t.Fatalf("the denied task ended %v", tk.Status)
	}
	const want = "ui-policy|before_task_run|uisched|20s|the task is denied (fail closed)|1|1"
	var got string
	waitFor(t, "the interceptor's row to count the call and the denial", 30*time.Second, func() bool {
		got = evalT[string](b, `[...document.querySelector('tr.interceptor').cells].map(c => c.textContent).join('|')`)
		return got == want
	})
	if got != want {
		t.Errorf("the interceptor's row: %q, want %q", got, want)
	}
	b.screenshot("hooks")

	unsubscribe()
	waitFor(t, "the Subscribe stream to leave the page", 30*time.Second, func() bool { return b.count(sub) == 0 })
	if !evalT[bool](b, `window.__notReloaded === true`) {
		t.Error("the Hooks page reloaded instead of updating in place")
	}
	if live := evalT[string](b, `document.getElementById('live').className`); live != "live on" {
		t.Errorf("the live dot is %q, want connected (live on)", live)
	}
}

// testUIPool runs a task asking for any instance of pool phone: the
// Resources page names it on the row of the instance it holds, and its task
// page shows that instance as bound.
func testUIPool(t *testing.T, ctx context.Context, b *browser, d *daemon, base, never string) {
	req := gateRequest("on a phone", never)
	req.ResourceTags = []string{"phone:*"}
	id := d.submit(ctx, req)
	var inst string
	waitFor(t, "the phone task to run", 30*time.Second, func() bool {
		tk, err := d.client.Get(ctx, id)
		inst = tk.GetResources()["phone"]
		return err == nil && tk.Status == aurav1.TaskStatus_TASK_STATUS_RUNNING
	})
	if inst != "phone-a" && inst != "phone-b" {
		t.Fatalf("the task is bound to %q, want phone-a or phone-b", inst)
	}
	b.run("opening /resources", chromedp.Navigate(base+"/resources"), chromedp.WaitVisible(chromedp.CSS("#resources")))
	holders := evalT[string](b, `[...document.querySelectorAll('#resources tr')].filter(r => r.cells[1] && r.cells[1].textContent === 'phone' && !r.cells[0].textContent.endsWith('*')).
		map(r => r.cells[0].textContent + '=' + [...r.querySelectorAll('a.holder')].map(a => a.getAttribute('href')).join(',')).sort().join(' ')`)
	want := map[string]string{"phone-a": "phone:phone-a=/tasks/" + id + " phone:phone-b=", "phone-b": "phone:phone-a= phone:phone-b=/tasks/" + id}[inst]
	if holders != want {
		t.Errorf("the phone instances' rows: %q, want %q", holders, want)
	}
	b.screenshot("resources")
	b.run("opening the task", chromedp.Navigate(base+"/tasks/"+id), chromedp.WaitVisible(chromedp.CSS("#bound")))
	if got := b.text("#bound"); strings.TrimSpace(got) != "phone: "+inst {
		t.Errorf("the task page's bound resources: %q, want phone: %s", got, inst)
	}
	if href := evalT[string](b, `document.querySelector('#bound a').getAttribute('href')`); href != "/resources#r-phone:"+inst {
		t.Errorf("the bound instance links to %q", href)
	}
}

func listSchedulesAs(t *testing.T, ctx context.Context, c *client.Client) map[string]*aurav1.Schedule {
	t.Helper()
	resp, err := aurav1.NewScheduleServiceClient(c.Conn()).ListSchedules(ctx, &aurav1.ListSchedulesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*aurav1.Schedule{}
	for _, s := range resp.Schedules {
		out[s.Name] = s
	}
	return out
}

// scheduleCallAs makes the ScheduleService call behind a Schedules page
// button as token, for the error it returns.
func scheduleCallAs(ctx context.Context, t *testing.T, addr, token, action, name string) error {
	t.Helper()
	s := aurav1.NewScheduleServiceClient(dialAs(t, addr, client.WithToken(token)).Conn())
	var err error
	switch action {
	case "pause":
		_, err = s.PauseSchedule(ctx, &aurav1.PauseScheduleRequest{Schedule: name})
	case "resume":
		_, err = s.ResumeSchedule(ctx, &aurav1.ResumeScheduleRequest{Schedule: name})
	case "trigger":
		_, err = s.TriggerSchedule(ctx, &aurav1.TriggerScheduleRequest{Schedule: name})
	}
	return err
}

// testUILiveRegions keeps the Resources page and then the Overview open
// while a task starts and ends: the task shows as the holder of its
// resource and among what runs, and goes, without a reload.
func testUILiveRegions(t *testing.T, ctx context.Context, b *browser, d *daemon, base, work string) {
	for _, p := range []struct{ path, holder string }{
		{"/resources", `#resources a.holder[href="/tasks/%s"]`},
		{"/", `#overview-live a[href="/tasks/%s"]`},
	} {
		b.run("opening "+p.path, chromedp.Navigate(base+p.path), chromedp.WaitVisible(chromedp.CSS("h1")))
		evalT[bool](b, `window.__notReloaded = true`)
		release := filepath.Join(work, "release-live-"+strings.Trim(p.path, "/"))
		req := gateRequest("live regions", release)
		req.ResourceTags = []string{"device:ui-live"}
		id := d.submit(ctx, req)
		sel := strings.ReplaceAll(p.holder, "%s", id)
		b.run(p.path+": waiting for the running task to show", chromedp.WaitVisible(chromedp.CSS(sel)))
		if err := os.WriteFile(release, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		d.wait(ctx, id)
		waitFor(t, p.path+": the finished task to leave the page", 30*time.Second, func() bool { return b.count(sel) == 0 })
		if !evalT[bool](b, `window.__notReloaded === true`) {
			t.Errorf("%s reloaded instead of updating in place", p.path)
		}
	}
}
