package e2e

// The web UI, driven in a real headless Chromium through the DevTools
// protocol (github.com/chromedp/chromedp, a test-only dependency: it is how
// a Go test runs a real browser) against a real aurad.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/aura-dev/aura/client"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

var uiListenRE = regexp.MustCompile(`msg="web UI serving" listen=(\S+)`)

// startUIDaemon starts aurad with its web UI on a free loopback port and
// returns the UI's base URL.
func startUIDaemon(t *testing.T, extraPlans []string, args ...string) (*daemon, string) {
	t.Helper()
	d := startDaemon(t, daemonOpts{
		plans: append([]string{"../examples/plans/demo", "../examples/plans/stateful", "testdata/plans/ui"}, extraPlans...),
		args:  append([]string{"--ui-listen", "127.0.0.1:0"}, args...),
	})
	// aurad logs the UI's address before it logs that it serves gRPC.
	m := uiListenRE.FindStringSubmatch(d.logs())
	if m == nil {
		t.Fatalf("aurad did not log the web UI's address:\n%s", d.logs())
	}
	return d, "http://" + m[1]
}

// chromiumPath finds Debian's chromium. Without it the browser tests
// skip, or fail where AURA_REQUIRE_CHROMIUM=1 (CI) says they must run.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const how = "no chromium on PATH: install it (Debian: apt-get install -y chromium) to run the web UI browser tests"
	if os.Getenv("AURA_REQUIRE_CHROMIUM") == "1" {
		t.Fatal(how + " (AURA_REQUIRE_CHROMIUM=1 makes this a failure)")
	}
	t.Skip(how)
	return ""
}

// browser is one headless Chromium tab that records what the page's
// console reports as an error: uncaught exceptions, console.error, and
// the browser's own errors (a blocked script, a failed load, a
// Content-Security-Policy violation).
type browser struct {
	t   *testing.T
	ctx context.Context

	mu   sync.Mutex // guards errs
	errs []string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox, // CI runs as root, where Chromium's sandbox cannot start
		chromedp.Flag("disable-gpu", true),
		chromedp.WindowSize(1280, 860),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b := &browser{t: t, ctx: ctx}
	b.listen()
	return b
}

// newTab opens another tab of the same browser, with its own record of
// console errors, closed when the test ends.
func (b *browser) newTab(t *testing.T) *browser {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	t.Cleanup(cancel)
	tab := &browser{t: t, ctx: ctx}
	tab.listen()
	return tab
}

// listen records what the tab's console reports as an error.
func (b *browser) listen() {
	err := chromedp.Listen(b.ctx, func(ev any) {
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			msg := e.ExceptionDetails.Text
			if ex := e.ExceptionDetails.Exception; ex != nil {
				msg += " " + ex.Description
			}
			b.record("exception: " + msg)
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				var parts []string
				for _, a := range e.Args {
					parts = append(parts, string(a.Value))
				}
				b.record("console.error: " + strings.Join(parts, " "))
			}
		case *cdplog.EventEntryAdded:
			if e.Entry.Level == cdplog.EntryLevelError {
				b.record(fmt.Sprintf("%s: %s (%s)", e.Entry.Source, e.Entry.Text, e.Entry.URL))
			}
		}
	})
	if err != nil {
		b.t.Fatalf("starting chromium: %v", err)
	}
}

// waitClass waits until the class attribute of sel is want.
func (b *browser) waitClass(sel, want string) {
	b.t.Helper()
	var got string
	waitFor(b.t, sel+" to have class "+want, 30*time.Second, func() bool {
		got = evalT[string](b, `(document.querySelector(`+strconv.Quote(sel)+`) || {}).className || ''`)
		return got == want
	})
}

// count is how many elements match sel now.
func (b *browser) count(sel string) int {
	b.t.Helper()
	return evalT[int](b, `document.querySelectorAll(`+strconv.Quote(sel)+`).length`)
}

func (b *browser) record(msg string) {
	b.mu.Lock()
	b.errs = append(b.errs, msg)
	b.mu.Unlock()
}

// consoleErrors returns and forgets the errors recorded so far.
func (b *browser) consoleErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.errs
	b.errs = nil
	return out
}

// run runs actions within a deadline, failing the test with what.
func (b *browser) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		loc, _ := chromedp.Run(b.ctx, chromedp.Location())
		b.t.Fatalf("%s: %v (page %s)", what, err, loc)
	}
}

// get runs one action that returns a value, within a deadline.
func get[T any](b *browser, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	return v
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	return get(b, "reading "+sel, chromedp.TextContent(chromedp.CSS(sel)))
}

func evalT[T any](b *browser, js string) T {
	b.t.Helper()
	return get(b, "evaluating "+js, chromedp.Evaluate[T](js))
}

// waitText waits until the text of sel holds want.
func (b *browser) waitText(sel, want string) {
	b.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
		cancel()
		if err == nil && strings.Contains(s, want) {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s never showed %q (last %q, err %v)", sel, want, s, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// screenshot saves the viewport as docs/ui/NAME.png when
// AURA_UI_SCREENSHOTS names a directory (make screenshots).
func (b *browser) screenshot(name string) {
	dir := os.Getenv("AURA_UI_SCREENSHOTS")
	if dir == "" {
		return
	}
	png := get(b, "screenshot "+name, chromedp.CaptureScreenshot())
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

func gateRequest(text, release string) *aurav1.SubmitRequest {
	return &aurav1.SubmitRequest{Task: "ui/gate", Inputs: &structpb.Struct{Fields: map[string]*structpb.Value{
		"text": structpb.NewStringValue(text), "release": structpb.NewStringValue(release),
	}}}
}

// releaseAtEnd returns a release file for gate tasks that the test
// creates when it ends, before aurad stops, so that the daemon's drain does
// not wait its grace out on them.
func releaseAtEnd(t *testing.T, dir string) string {
	path := filepath.Join(dir, "release-at-end")
	t.Cleanup(func() { _ = os.WriteFile(path, nil, 0o644) })
	return path
}

// TestUIBrowser drives every page in Chromium: each renders without a
// console error; the task list and a task page update live; cancel, the
// submit form and its server-side validation work; markup in inputs,
// labels and logs stays text.
func TestUIBrowser(t *testing.T) {
	// A plan with a mistake, for the Plans page to show where it is.
	broken := filepath.Join(t.TempDir(), "broken")
	if err := os.MkdirAll(filepath.Join(broken, "tasks"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(broken, "plan.yaml"), []byte("title: Broken on purpose\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(broken, "tasks", "bad.yaml"), []byte("steps:\n  - action: no.such.action\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	childPlan, childGates := uiChildPlan(t)
	d, base := startUIDaemon(t, []string{broken, uiSchedulePlan(t), childPlan}, "--max-concurrent", "8", "--skip-broken-plans",
		"--resources", uiPoolResources(t))
	ctx := ctxT(t, 3*time.Minute)
	b := newBrowser(t)
	work := t.TempDir()
	released := filepath.Join(work, "released")
	if err := os.WriteFile(released, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	never := releaseAtEnd(t, work)

	hello := d.submit(ctx, &aurav1.SubmitRequest{Task: "demo/hello"})
	d.wait(ctx, hello)
	// A task holding a resource for the Resources page.
	holdReq := gateRequest("holding", never)
	holdReq.ResourceTags = []string{"device:ui-1"}
	holding := d.submit(ctx, holdReq)
	waitFor(t, "the holding task to run", 30*time.Second, func() bool {
		tk, err := d.client.Get(ctx, holding)
		return err == nil && tk.Status == aurav1.TaskStatus_TASK_STATUS_RUNNING
	})

	t.Run("every page renders without console errors", func(t *testing.T) {
		b.t = t
		pages := []struct{ path, h1, shot string }{
			{"/", "Overview", "overview"},
			{"/tasks", "Tasks", "tasks"},
			{"/tasks/" + hello, "demo/hello", "task"},
			{"/plans", "Plans", ""},
			{"/plans/stateful", "Plan stateful", "plan"},
			{"/plans/ui", "Plan ui", ""},
			{"/resources", "Resources", ""},
			{"/hooks", "Hooks", ""},
			{"/schedules", "Schedules", ""},
		}
		for _, p := range pages {
			b.run("opening "+p.path, chromedp.Navigate(base+p.path), chromedp.WaitVisible(chromedp.CSS("h1")))
			if h1 := b.text("h1"); !strings.Contains(h1, p.h1) {
				t.Errorf("%s: heading %q, want %q", p.path, h1, p.h1)
			}
			if p.path == "/tasks/"+hello {
				b.waitText("#timeline", "task.finished")
			}
			if p.shot != "" {
				b.screenshot(p.shot)
			}
			if errs := b.consoleErrors(); len(errs) > 0 {
				t.Errorf("%s: console errors:\n%s", p.path, strings.Join(errs, "\n"))
			}
		}
		// The check above is only worth something if an error is seen.
		evalT[bool](b, `console.error("the listener hears this"), true`)
		waitFor(t, "the console listener to report console.error", 10*time.Second, func() bool {
			b.mu.Lock()
			defer b.mu.Unlock()
			return len(b.errs) > 0
		})
		b.consoleErrors()
	})

	t.Run("resources page shows the task holding a resource", func(t *testing.T) {
		b.t = t
		b.run("opening /resources", chromedp.Navigate(base+"/resources"),
			chromedp.WaitVisible(chromedp.CSS(`#resources a.holder[href="/tasks/`+holding+`"]`)))
		key := evalT[string](b, `document.querySelector('#resources a.holder[href="/tasks/`+holding+`"]').closest('tr').cells[0].textContent`)
		if key != "global" && key != "device:ui-1" {
			t.Errorf("holder shown in row %q", key)
		}
		rows := evalT[int](b, `[...document.querySelectorAll('#resources tr')].filter(r => r.cells[0].textContent === 'device:ui-1' && r.querySelector('a.holder[href="/tasks/`+holding+`"]')).length`)
		if rows != 1 {
			t.Errorf("the device:ui-1 row does not name its holder %s", holding)
		}
	})

	t.Run("the schedules page pauses, resumes and triggers a schedule", func(t *testing.T) {
		b.t = t
		testUISchedules(t, ctx, b, d, base)
	})

	t.Run("the hooks page lists a connected Subscribe stream", func(t *testing.T) {
		b.t = t
		testUIHooks(t, ctx, b, d, base)
	})

	t.Run("the resources page and the overview follow a task without a reload", func(t *testing.T) {
		b.t = t
		testUILiveRegions(t, ctx, b, d, base, work)
	})

	t.Run("without EventSource the task list and Hooks page poll", func(t *testing.T) {
		testUIPollsWithoutEventSource(t, ctx, b, d, base)
	})

	t.Run("a task page whose event stream is blocked polls", func(t *testing.T) {
		testUIPollsWhenTheStreamIsBlocked(t, ctx, b, d, base, work)
	})

	t.Run("the resources page names the holder of a pool instance, the task page its binding", func(t *testing.T) {
		b.t = t
		testUIPool(t, ctx, b, d, base, never)
	})

	t.Run("the plans page shows a broken plan's problems with file:line", func(t *testing.T) {
		b.t = t
		b.run("opening /plans/broken", chromedp.Navigate(base+"/plans/broken"), chromedp.WaitVisible(chromedp.CSS("#problems")))
		if got := b.text("#problems"); !regexp.MustCompile(`tasks/bad\.yaml:2:\d+: .*no\.such\.action`).MatchString(got) {
			t.Errorf("problems shown: %q, want tasks/bad.yaml:2:col naming the unknown action", got)
		}
	})

	t.Run("a task submitted through gRPC appears in the open task list", func(t *testing.T) {
		b.t = t
		b.run("opening /tasks", chromedp.Navigate(base+"/tasks"), chromedp.WaitVisible(chromedp.CSS("#task-list")))
		evalT[bool](b, `window.__notReloaded = true`)
		id := d.submit(ctx, &aurav1.SubmitRequest{Task: "demo/hello"})
		b.run("waiting for the new row", chromedp.WaitVisible(chromedp.CSS(`tr[data-id="`+id+`"]`)))
		d.wait(ctx, id)
		b.waitText(`tr[data-id="`+id+`"] .badge`, "SUCCEEDED")
		same := evalT[bool](b, `window.__notReloaded === true`)
		if !same {
			t.Error("the task list reloaded instead of updating in place")
		}
	})

	t.Run("the open task page follows the task's status, timeline and logs", func(t *testing.T) {
		b.t = t
		release := filepath.Join(work, "release-live")
		id := d.submit(ctx, gateRequest("hello from the gate", release))
		b.run("opening the task", chromedp.Navigate(base+"/tasks/"+id), chromedp.WaitVisible(chromedp.CSS("#task-status")))
		b.waitText("#task-status", "RUNNING")
		b.waitText("#logs", "hello from the gate")
		evalT[bool](b, `window.__notReloaded = true`)
		if err := os.WriteFile(release, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		b.waitText("#task-status", "SUCCEEDED")
		b.waitText("#timeline", "task.finished")
		b.waitText("#task-result", "hello from the gate")
		b.waitText(`[data-step="after"] .step-status`, "SUCCEEDED")
		same := evalT[bool](b, `window.__notReloaded === true`)
		if !same {
			t.Error("the task page reloaded instead of updating in place")
		}
		if errs := b.consoleErrors(); len(errs) > 0 {
			t.Errorf("console errors:\n%s", strings.Join(errs, "\n"))
		}
	})

	t.Run("the open task page lists a child task as it starts and ends", func(t *testing.T) {
		b.t = t
		testUIChildTasks(t, ctx, b, d, base, childGates, false)
	})

	t.Run("a task page whose event stream is blocked lists a child task by polling", func(t *testing.T) {
		testUIChildTasks(t, ctx, b, d, base, childGates, true)
	})

	t.Run("cancel from the task page cancels the task", func(t *testing.T) {
		b.t = t
		id := d.submit(ctx, gateRequest("cancel me", never))
		b.run("opening the task", chromedp.Navigate(base+"/tasks/"+id), chromedp.WaitVisible(chromedp.CSS("#cancel")))
		b.waitText("#task-status", "RUNNING")
		b.run("pressing Cancel", chromedp.Click(chromedp.CSS("#cancel")))
		b.waitText("#task-status", "CANCELLED")
		tk, err := d.client.Get(ctx, id)
		if err != nil || tk.Status != aurav1.TaskStatus_TASK_STATUS_CANCELLED {
			t.Fatalf("after Cancel the API says %v, %v; want CANCELLED", tk.GetStatus(), err)
		}
		if cmd := b.text("#cmd-auractl"); !strings.HasPrefix(cmd, "auractl ") || !strings.Contains(cmd, "submit ui/gate --inputs-json") {
			t.Errorf("copy as auractl: %q", cmd)
		}

		// Run again: a new task of the same task and inputs.
		b.run("pressing Run again", chromedp.Click(chromedp.CSS("#rerun")))
		waitFor(t, "the new task's page", 30*time.Second, func() bool {
			ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
			defer cancel()
			got, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS("#task-id")))
			return err == nil && got != id
		})
		again, err := d.client.Get(ctx, b.text("#task-id"))
		if err != nil || again.Task != "ui/gate" || again.Inputs.Fields["text"].GetStringValue() != "cancel me" || again.Inputs.Fields["release"].GetStringValue() != never {
			t.Errorf("Run again submitted %v %v (%v), want ui/gate with the same inputs", again.GetTask(), again.GetInputs(), err)
		}
	})

	t.Run("the submit form shows the server's refusal and submits a right value", func(t *testing.T) {
		b.t = t
		_, err := d.client.Submit(ctx, &aurav1.SubmitRequest{Task: "ui/count", Inputs: &structpb.Struct{Fields: map[string]*structpb.Value{"n": structpb.NewStringValue("abc")}}})
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("the API accepted n=\"abc\" for an int input: %v", err)
		}
		want := status.Convert(err).Message()
		form := `form[data-task="ui/count"]`
		// The value is set and the form submitted in one script: a node
		// looked up by chromedp may be replaced by a live update of the page
		// between two protocol calls ("No node with given id found").
		submitN := func(v string) {
			t.Helper()
			js := fmt.Sprintf(`(() => {
				const i = document.querySelector(%q);
				if (!i) return false;
				i.value = %q;
				i.form.requestSubmit();
				return true;
			})()`, form+` input[name="input.n"]`, v)
			if !evalT[bool](b, js) {
				t.Fatalf("the form's input n is not on the page")
			}
		}
		b.run("opening the plan", chromedp.Navigate(base+"/plans/ui"), chromedp.WaitVisible(chromedp.CSS(form+` input[name="input.n"]`)))
		submitN("abc")
		b.run("waiting for the refusal", chromedp.WaitVisible(chromedp.CSS(form+` .submit-error`)))
		if got := b.text(form + ` .submit-error`); got != want {
			t.Errorf("the form shows %q, want the server's message %q", got, want)
		}
		b.screenshot("submit-refused")
		submitN("42")
		b.run("waiting for the task page", chromedp.WaitVisible(chromedp.CSS("#task-id")))
		id := b.text("#task-id")
		tk := d.wait(ctx, id)
		if tk.Task != "ui/count" || tk.Inputs.Fields["n"].GetNumberValue() != 42 || tk.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
			t.Errorf("the form submitted %s %v, ended %v; want ui/count n=42 SUCCEEDED", tk.Task, tk.Inputs, tk.Status)
		}
	})

	t.Run("markup in inputs, labels and logs is shown as text", func(t *testing.T) {
		b.t = t
		const script = `<script>window.__xss = 1</script>`
		const img = `"><img src=x onerror="window.__xss = 2">`
		req := gateRequest(script+img, released)
		req.Labels = map[string]string{"note": img}
		id := d.submit(ctx, req)
		d.wait(ctx, id)
		b.run("opening the task", chromedp.Navigate(base+"/tasks/"+id), chromedp.WaitVisible(chromedp.CSS("#inputs")))
		b.waitText("#logs", script+img)
		b.waitText("#task-result", script+img)
		if got := b.text("#inputs"); !strings.Contains(got, script+img) {
			t.Errorf("inputs show %q, want the markup as text", got)
		}
		if got := b.text("#labels"); !strings.Contains(got, "note="+img) {
			t.Errorf("labels show %q, want the markup as text", got)
		}
		b.run("opening the task list", chromedp.Navigate(base+"/tasks"), chromedp.WaitVisible(chromedp.CSS(`tr[data-id="`+id+`"]`)))
		if got := b.text(`tr[data-id="` + id + `"]`); !strings.Contains(got, "note="+img) {
			t.Errorf("the task list row shows %q, want the label as text", got)
		}
		for _, page := range []string{"/tasks/" + id, "/tasks"} {
			b.run("opening "+page, chromedp.Navigate(base+page), chromedp.WaitVisible(chromedp.CSS("h1")))
			if page != "/tasks" {
				b.waitText("#logs", script)
			}
			injected := evalT[int](b, `document.querySelectorAll('main script, main img').length + (window.__xss === undefined ? 0 : 100)`)
			if injected != 0 {
				t.Errorf("%s: markup from the task became elements or ran (%d)", page, injected)
			}
		}
	})
}

// uiClient is a browser-like HTTP client with its own cookie jar that
// does not follow redirects, so a test sees them.
func uiClient(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var csrfRE = regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`)

// signIn signs c in with token and returns the session's CSRF token.
func signIn(t *testing.T, c *http.Client, base, token string) string {
	t.Helper()
	resp, err := c.PostForm(base+"/signin", url.Values{"token": {token}, "next": {"/tasks"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in with a good token: %s", resp.Status)
	}
	resp, err = c.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// A token without the read role sees no overview (403), but its
	// session has a CSRF token all the same.
	m := csrfRE.FindSubmatch(body)
	if (resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusForbidden) || m == nil {
		t.Fatalf("after sign-in the overview is %s and holds no CSRF token", resp.Status)
	}
	return string(m[1])
}

// TestUIAuth: with --auth-tokens every page sends the browser to sign-in
// and the event stream answers 401; a change without the session's CSRF
// token is refused and changes nothing; a read-only token cannot cancel.
func TestUIAuth(t *testing.T) {
	d, base := startUIDaemon(t, []string{uiSchedulePlan(t)}, "--auth-tokens", writeTokens(t, ""))
	ctx := ctxT(t, 2*time.Minute)
	ops := dialAs(t, d.addr, client.WithToken("ops"))
	never := releaseAtEnd(t, t.TempDir())
	submitGate := func() string {
		resp, err := ops.Submit(ctx, gateRequest("auth", never))
		if err != nil {
			t.Fatal(err)
		}
		return resp.TaskId
	}
	running := func(id string) bool {
		tk, err := ops.Get(ctx, id)
		return err == nil && tk.Status == aurav1.TaskStatus_TASK_STATUS_RUNNING
	}
	id := submitGate()
	waitFor(t, "the task to run", 30*time.Second, func() bool { return running(id) })

	t.Run("without a session pages redirect to sign-in and the stream is 401", func(t *testing.T) {
		c := uiClient(t)
		for _, p := range []string{"/", "/tasks", "/tasks/" + id, "/plans", "/plans/ui", "/resources", "/hooks", "/schedules"} {
			resp, err := c.Get(base + p)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/signin") {
				t.Errorf("GET %s without a session: %s to %q, want 303 to /signin", p, resp.Status, loc)
			}
		}
		for _, p := range []string{"/events", "/events?task=" + id, "/api/overview", "/events/hooks", "/api/hooks", "/api/events?after=0",
			"/api/events?after=0&task=" + id} {
			resp, err := c.Get(base + p)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("GET %s without a session: %s, want 401", p, resp.Status)
			}
		}
		resp, err := c.PostForm(base+"/signin", url.Values{"token": {"not-a-token"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
			t.Errorf("sign-in with an unknown token: %s with %d cookies, want 401 and none", resp.Status, len(resp.Cookies()))
		}
	})

	t.Run("a token limited to some plans follows only their tasks", func(t *testing.T) {
		c := uiClient(t)
		signIn(t, c, base, "demo-only")
		demo, err := ops.Submit(ctx, &aurav1.SubmitRequest{Task: "demo/hello"})
		if err != nil {
			t.Fatal(err)
		}
		for p, want := range map[string]int{
			"/events": http.StatusForbidden, "/events?task=" + id: http.StatusForbidden, "/events?task=" + demo.TaskId: http.StatusOK,
			// Polling asks what the stream asks.
			"/api/events?after=0": http.StatusForbidden, "/api/events?after=0&task=" + id: http.StatusForbidden,
			"/api/events?after=0&task=" + demo.TaskId: http.StatusOK,
		} {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+p, nil)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close() // ends the stream
			if resp.StatusCode != want {
				t.Errorf("GET %s as demo-only: %s, want %d", p, resp.Status, want)
			}
		}
	})

	t.Run("only admin reloads plans", func(t *testing.T) {
		for token, want := range map[string]int{"tok-read": http.StatusForbidden, "tok-admin": http.StatusSeeOther} {
			c := uiClient(t)
			csrf := signIn(t, c, base, token)
			resp, err := c.PostForm(base+"/plans/reload", url.Values{"csrf": {csrf}})
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("reload as %s: %s, want %d", token, resp.Status, want)
			}
		}
	})

	t.Run("only an admin of every plan sees who follows the log", func(t *testing.T) {
		for token, sees := range map[string]bool{"ops": true, "tok-no-admin": false, "demo-only": false} {
			c := uiClient(t)
			signIn(t, c, base, token)
			resp, err := c.Get(base + "/hooks")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /hooks as %s: %s", token, resp.Status)
			}
			shown, hidden := strings.Contains(string(body), `id="followers"`), strings.Contains(string(body), `id="hooks-hidden"`)
			if shown != sees || hidden == sees {
				t.Errorf("GET /hooks as %s: followers listed %v, hidden note %v; want listed %v", token, shown, hidden, sees)
			}
			// What the page's stream and polling carry is hidden alike.
			resp, err = c.Get(base + "/api/hooks")
			if err != nil {
				t.Fatal(err)
			}
			var figures struct {
				Hidden    bool
				Followers []json.RawMessage
			}
			err = json.NewDecoder(resp.Body).Decode(&figures)
			resp.Body.Close()
			if err != nil || figures.Hidden == sees || (!sees && len(figures.Followers) > 0) {
				t.Errorf("GET /api/hooks as %s: hidden %v with %d followers (%v); want followers shown %v", token, figures.Hidden, len(figures.Followers), err, sees)
			}
		}
	})

	t.Run("schedule actions follow the roles: admin pauses and resumes, submit triggers", func(t *testing.T) {
		for _, c := range []struct {
			token, action string
			want          int
		}{
			{"tok-read", "pause", http.StatusForbidden},
			{"tok-read", "trigger", http.StatusForbidden},
			{"tok-submit", "pause", http.StatusForbidden},
			{"tok-admin", "trigger", http.StatusForbidden},
			{"tok-admin", "pause", http.StatusSeeOther},
			{"tok-admin", "resume", http.StatusSeeOther},
			{"tok-submit", "trigger", http.StatusSeeOther},
		} {
			c2 := uiClient(t)
			csrf := signIn(t, c2, base, c.token)
			resp, err := c2.PostForm(base+"/schedules/"+c.action, url.Values{"csrf": {csrf}, "schedule": {"uisched/morning"}})
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Errorf("%s as %s: %s, want %d", c.action, c.token, resp.Status, c.want)
			}
			// A refusal shows the server's own words.
			if c.want == http.StatusForbidden {
				want := "uisched/morning: " + status.Convert(scheduleCallAs(ctx, t, d.addr, c.token, c.action, "uisched/morning")).Message()
				if m := regexp.MustCompile(`id="schedule-error">([^<]*)<`).FindSubmatch(body); m == nil || string(m[1]) != want {
					t.Errorf("%s as %s: the page shows %q, want the server's refusal %q", c.action, c.token, m, want)
				}
			}
			if c.action == "pause" {
				paused := listSchedulesAs(t, ctx, ops)["uisched/morning"].GetPaused()
				if paused != (c.want == http.StatusSeeOther) {
					t.Errorf("after pause as %s the schedule is paused=%v", c.token, paused)
				}
			}
		}
		// A token limited to plan demo lists its plans' schedules only.
		limited := uiClient(t)
		signIn(t, limited, base, "demo-only")
		resp, err := limited.Get(base + "/schedules")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || strings.Contains(string(body), "uisched/") || !strings.Contains(string(body), "Only the schedules of the plans") {
			t.Errorf("/schedules as demo-only: %s, lists another plan's schedules or does not say why some are missing", resp.Status)
		}
		// The buttons a session's roles do not allow are not shown.
		for token, want := range map[string][]string{
			"tok-read": nil, "tok-no-admin": {`class="trigger"`}, "tok-no-submit": {`class="pause"`}, "ops": {`class="pause"`, `class="trigger"`},
		} {
			c2 := uiClient(t)
			signIn(t, c2, base, token)
			resp, err := c2.Get(base + "/schedules")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "uisched/morning") {
				t.Fatalf("/schedules as %s: %s", token, resp.Status)
			}
			for _, button := range []string{`class="pause"`, `class="resume"`, `class="trigger"`} {
				if strings.Contains(string(body), button) != slices.Contains(want, button) {
					t.Errorf("/schedules as %s: button %s shown=%v", token, button, !slices.Contains(want, button))
				}
			}
		}
	})

	t.Run("every answer forbids framing and inline script", func(t *testing.T) {
		for _, p := range []string{"/signin", "/tasks", "/static/app.js"} {
			resp, err := uiClient(t).Get(base + p)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			csp := resp.Header.Get("Content-Security-Policy")
			if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") ||
				!strings.Contains(csp, "frame-ancestors 'none'") || resp.Header.Get("X-Frame-Options") != "DENY" {
				t.Errorf("GET %s: Content-Security-Policy %q, X-Frame-Options %q", p, csp, resp.Header.Get("X-Frame-Options"))
			}
		}
	})

	t.Run("the session cookie is HttpOnly and SameSite=Strict", func(t *testing.T) {
		resp, err := uiClient(t).PostForm(base+"/signin", url.Values{"token": {"ops"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		cookies := resp.Cookies()
		if len(cookies) != 1 || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode {
			t.Fatalf("cookies %+v, want one HttpOnly SameSite=Strict session cookie", cookies)
		}
	})

	t.Run("a POST without the CSRF token is refused and changes nothing", func(t *testing.T) {
		c := uiClient(t)
		csrf := signIn(t, c, base, "ops")
		for _, form := range []url.Values{{}, {"csrf": {"wrong"}}} {
			resp, err := c.PostForm(base+"/tasks/"+id+"/cancel", form)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("cancel with csrf %q: %s, want 403", form.Get("csrf"), resp.Status)
			}
		}
		resp, err := c.PostForm(base+"/submit", url.Values{"task": {"ui/count"}, "input.n": {"1"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("submit without csrf: %s, want 403", resp.Status)
		}
		if !running(id) {
			t.Fatal("a refused cancel changed the task")
		}
		list, err := ops.Exec.ListTasks(ctx, &aurav1.ListTasksRequest{Plan: "ui"})
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range list.Tasks {
			if tk.Task == "ui/count" {
				t.Errorf("a refused submit created %s", tk.Id)
			}
		}
		// The same session with its token does cancel: the refusal was
		// the missing token's doing.
		other := submitGate()
		waitFor(t, "the second task to run", 30*time.Second, func() bool { return running(other) })
		resp, err = c.PostForm(base+"/tasks/"+other+"/cancel", url.Values{"csrf": {csrf}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther {
			t.Errorf("cancel with the CSRF token: %s, want 303", resp.Status)
		}
		if tk, _ := ops.Get(ctx, other); tk.GetStatus() != aurav1.TaskStatus_TASK_STATUS_CANCELLED {
			t.Errorf("cancel with the CSRF token left the task %v", tk.GetStatus())
		}
	})

	t.Run("a read token signs in, sees, and cannot cancel", func(t *testing.T) {
		b := newBrowser(t)
		b.run("opening /tasks", chromedp.Navigate(base+"/tasks"), chromedp.WaitVisible(chromedp.CSS("#token")))
		loc := get(b, "reading the location", chromedp.Location())
		if !strings.Contains(loc, "/signin") {
			t.Fatalf("without a session /tasks went to %s, want /signin", loc)
		}
		b.screenshot("signin")
		b.run("signing in", chromedp.SetValue(chromedp.CSS("#token"), "tok-read"),
			chromedp.Submit(chromedp.CSS("#token")), chromedp.WaitVisible(chromedp.CSS("#task-list")))
		b.run("opening the task", chromedp.Navigate(base+"/tasks/"+id), chromedp.WaitVisible(chromedp.CSS("#task-status")))
		buttons := get(b, "looking for Cancel", chromedp.Nodes(chromedp.CSS("#cancel"), chromedp.AtLeast(0)))
		if len(buttons) != 0 {
			t.Error("a read-only session is offered Cancel")
		}
		// Post the form anyway, with the session's own CSRF token: the
		// API refuses the read role.
		code := get(b, "posting cancel", chromedp.Evaluate[int](`fetch('/tasks/`+id+`/cancel', {method: 'POST',
			headers: {'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content}}).then(r => r.status)`, chromedp.EvalAwaitPromise))
		if code != http.StatusForbidden {
			t.Errorf("cancel by a read token: HTTP %d, want 403", code)
		}
		if !running(id) {
			t.Error("a read token's cancel changed the task")
		}
	})
}

// TestUIRefusesPlaintextRemote: the UI, like gRPC, will not serve
// plaintext on an address other machines can reach.
func TestUIRefusesPlaintextRemote(t *testing.T) {
	plans := t.TempDir()
	copyDir(t, "../examples/plans/demo", filepath.Join(plans, "demo"))
	out, err := exec.Command(bin.aurad, "serve", "--plans", plans, "--data", t.TempDir(), "--listen", "127.0.0.1:0",
		"--cpu-workers", "-1", "--ui-listen", "0.0.0.0:0").CombinedOutput()
	if err == nil {
		t.Fatalf("aurad served the UI in plaintext on 0.0.0.0:\n%s", out)
	}
	if !strings.Contains(string(out), "--ui-listen") || !strings.Contains(string(out), "plaintext is only allowed on loopback") {
		t.Errorf("aurad's refusal does not say what to do:\n%s", out)
	}
}

// TestUIDefaultAddressTaken: a second aurad on one machine finds the
// UI's default address taken; it starts without a UI and says why, where
// an address given with --ui-listen must work.
func TestUIDefaultAddressTaken(t *testing.T) {
	// Hold the default address, unless another process holds it already:
	// either way it is taken.
	if lis, err := net.Listen("tcp", "127.0.0.1:7071"); err == nil {
		defer lis.Close()
	}
	plans := t.TempDir()
	copyDir(t, "../examples/plans/demo", filepath.Join(plans, "demo"))
	cmd := exec.Command(bin.aurad, "serve", "--plans", plans, "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--cpu-workers", "-1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	var log strings.Builder
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), `msg="aurad serving"`) {
			break
		}
	}
	if !strings.Contains(log.String(), `msg="aurad serving"`) {
		t.Fatalf("aurad did not start with the UI's default address taken:\n%s", log.String())
	}
	if !strings.Contains(log.String(), "web UI not served: its default address is in use") {
		t.Errorf("aurad did not say why it serves no UI:\n%s", log.String())
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
}
