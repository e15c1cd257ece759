package e2e

// The web UI's polling, where a page cannot hold an event stream open,
// run as subtests of TestUIBrowser against its daemon.

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// testUIPollsWithoutEventSource opens the task list and the Hooks page in
// a tab whose pages have no EventSource: a task submitted through gRPC
// still appears in the list and finishes there, and a Subscribe stream
// shows on the Hooks page, without a reload, by polling.
func testUIPollsWithoutEventSource(t *testing.T, ctx context.Context, b *browser, d *daemon, base string) {
	tab := b.newTab(t)
	tab.run("removing EventSource from every page of the tab", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: `delete window.EventSource;`})
		return err
	}))
	tab.run("opening /tasks", chromedp.Navigate(base+"/tasks"), chromedp.WaitVisible(chromedp.CSS("#task-list")))
	if has := evalT[bool](tab, `'EventSource' in window`); has {
		t.Fatal("the page still has EventSource")
	}
	evalT[bool](tab, `window.__notReloaded = true`)
	tab.waitClass("#live", "live polling")
	id := d.submit(ctx, &aurav1.SubmitRequest{Task: "demo/hello"})
	tab.run("waiting for the new row", chromedp.WaitVisible(chromedp.CSS(`tr[data-id="`+id+`"]`)))
	d.wait(ctx, id)
	tab.waitText(`tr[data-id="`+id+`"] .badge`, "SUCCEEDED")
	if !evalT[bool](tab, `window.__notReloaded === true`) {
		t.Error("the task list reloaded instead of updating in place")
	}

	tab.run("opening /hooks", chromedp.Navigate(base+"/hooks"), chromedp.WaitVisible(chromedp.CSS("#followers")))
	evalT[bool](tab, `window.__notReloaded = true`)
	tab.waitClass("#live", "live polling")
	sctx, unsubscribe := context.WithCancel(ctx)
	defer unsubscribe()
	if _, err := d.client.Hooks.Subscribe(sctx, &aurav1.SubscribeRequest{Plan: "demo"}); err != nil {
		t.Fatal(err)
	}
	const sub = `tr.follower[data-kind="subscribe"]`
	tab.run("waiting for the Subscribe stream to show", chromedp.WaitVisible(chromedp.CSS(sub)))
	unsubscribe()
	waitFor(t, "the Subscribe stream to leave the page", 30*time.Second, func() bool { return tab.count(sub) == 0 })
	if !evalT[bool](tab, `window.__notReloaded === true`) {
		t.Error("the Hooks page reloaded instead of updating in place")
	}
	if errs := tab.consoleErrors(); len(errs) > 0 {
		t.Errorf("console errors: %v", errs)
	}
}

// blockedStreamTab opens a tab of b in which every request for the event
// stream fails, as behind a proxy that refuses it.
func blockedStreamTab(t *testing.T, b *browser, base string) *browser {
	tab := b.newTab(t)
	tab.run("blocking the event stream", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, tg, network.SetBlockedURLs, network.SetBlockedURLsParams{
			URLPatterns: []*network.BlockPattern{{URLPattern: base + "/events*", Block: true}}})
		return err
	}))
	return tab
}

// testUIPollsWhenTheStreamIsBlocked opens a task page in a tab where every
// request for the event stream fails (as behind a proxy that refuses it):
// the page polls instead, and follows the task to its end without a
// reload.
func testUIPollsWhenTheStreamIsBlocked(t *testing.T, ctx context.Context, b *browser, d *daemon, base, work string) {
	tab := blockedStreamTab(t, b, base)
	release := filepath.Join(work, "release-polled")
	id := d.submit(ctx, gateRequest("polled, not pushed", release))
	tab.run("opening the task", chromedp.Navigate(base+"/tasks/"+id), chromedp.WaitVisible(chromedp.CSS("#task-status")))
	tab.waitText("#task-status", "RUNNING")
	tab.waitText("#logs", "polled, not pushed")
	tab.waitClass("#live", "live polling")
	evalT[bool](tab, `window.__notReloaded = true`)
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tab.waitText("#task-status", "SUCCEEDED")
	tab.waitText("#timeline", "task.finished")
	tab.waitText("#task-result", "polled, not pushed")
	if !evalT[bool](tab, `window.__notReloaded === true`) {
		t.Error("the task page reloaded instead of updating in place")
	}
	// The blocked stream is the browser's own error; nothing else may be.
	for _, e := range tab.consoleErrors() {
		if !strings.Contains(e, "/events?task=") && !strings.Contains(e, "ERR_BLOCKED_BY_CLIENT") {
			t.Errorf("console error: %s", e)
		}
	}
}
