package e2e

import (
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"testing"
	"time"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// The Overview's "last hour" is read from the store: tasks that finished
// before aurad restarted still count after it.
func TestUIOverviewLastHourSurvivesRestart(t *testing.T) {
	ctx := ctxT(t, 60*time.Second)
	d, _ := startUIDaemon(t, nil)
	const n = 3
	for range n {
		id := d.submit(ctx, &aurav1.SubmitRequest{Task: "demo/hello"})
		if got := d.wait(ctx, id); got.GetStatus() != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
			t.Fatalf("demo/hello ended %v: %s", got.GetStatus(), got.GetError())
		}
	}
	d.stop()

	d2 := startDaemon(t, daemonOpts{data: d.data, plans: []string{"../examples/plans/demo", "../examples/plans/stateful", "testdata/plans/ui"},
		args: []string{"--ui-listen", "127.0.0.1:0"}})
	m := uiListenRE.FindStringSubmatch(d2.logs())
	if m == nil {
		t.Fatalf("aurad did not log the web UI's address:\n%s", d2.logs())
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	// The first GET starts the anonymous session; /api/overview needs one.
	if resp, err := c.Get("http://" + m[1] + "/"); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	resp, err := c.Get("http://" + m[1] + "/api/overview")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Rate struct {
			Finished int
			Window   string
			P50      string
		} `json:"rate"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatalf("GET /api/overview: %d, %v", resp.StatusCode, err)
	}
	if got.Rate.Finished != n || got.Rate.Window != "the last hour" || got.Rate.P50 == "" {
		t.Errorf("after a restart the overview says %+v; want the %d tasks finished before it, over the last hour, with a median latency", got.Rate, n)
	}
}
