package e2e

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aura-dev/aura/internal/cluster/etcdtest"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// Two nodes of a cluster on a real etcd: node a's web UI lists both nodes
// on its Overview (a marked as this node) and offers both in the task
// list's node filter, which keeps the tasks whose id names the node
// chosen; once node b is killed and its lease lapses, the Overview no
// longer lists it.
func TestUIClusterNodes(t *testing.T) {
	ctx := ctxT(t, 2*time.Minute)
	etcd := etcdtest.Start(t, 1)
	a := startNode(t, etcd, clusterNode{name: "a", pool: []string{"phone-1"}}, "--ui-listen", "127.0.0.1:0")
	b := startNode(t, etcd, clusterNode{name: "b"})
	m := uiListenRE.FindStringSubmatch(a.logs())
	if m == nil {
		t.Fatalf("node a did not log its web UI's address:\n%s", a.logs())
	}
	base := "http://" + m[1]
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	get := func(path string) string {
		t.Helper()
		resp, err := c.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s\n%s", path, resp.Status, body)
		}
		return string(body)
	}

	onA := a.submit(ctx, &aurav1.SubmitRequest{Task: "demo/hello"})
	a.wait(ctx, onA)
	onB := b.submit(ctx, &aurav1.SubmitRequest{Task: "demo/hello"})
	if !strings.HasPrefix(onA, "a.") || !strings.HasPrefix(onB, "b.") {
		t.Fatalf("task ids %s and %s do not name their nodes", onA, onB)
	}

	var page string
	waitFor(t, "node a's Overview to list both nodes", 30*time.Second, func() bool {
		page = get("/")
		return strings.Contains(page, `<tr data-node="a">`) && strings.Contains(page, `<tr data-node="b">`)
	})
	if !regexp.MustCompile(`<tr data-node="a"><td><a href="/tasks\?node=a">a</a> \(this node\)</td><td>127\.0\.0\.1:\d+</td>`).MatchString(page) {
		t.Errorf("node a's row does not mark it as this node with its address:\n%s", page)
	}
	if !strings.Contains(page, `<span class="tag">phone: 1 of 1</span>`) {
		t.Errorf("node a's row does not show its free phone:\n%s", page)
	}

	page = get("/tasks?node=a")
	if !strings.Contains(page, `<option value="a" selected>a</option><option value="b">b</option>`) {
		t.Errorf("the node filter does not offer a (chosen) and b:\n%s", page)
	}
	rows := regexp.MustCompile(`<tr data-id="([^"]+)"`).FindAllStringSubmatch(page, -1)
	found := false
	for _, r := range rows {
		found = found || r[1] == onA
		if !strings.HasPrefix(r[1], "a.") {
			t.Errorf("node a's tasks list %s", r[1])
		}
	}
	if !found {
		t.Errorf("node a's tasks do not list %s:\n%s", onA, page)
	}
	if page = get("/tasks?node=b"); strings.Contains(page, `data-id="`+onA+`"`) {
		t.Errorf("node b's tasks list node a's task %s", onA)
	}

	if err := b.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node b to leave node a's Overview", 30*time.Second, func() bool {
		return !strings.Contains(get("/"), `<tr data-node="b">`)
	})
}
