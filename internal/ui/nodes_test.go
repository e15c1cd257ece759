package ui

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/aura-dev/aura/internal/cluster"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// nodes is a cluster.Directory of fixed nodes.
type nodes struct {
	self string
	all  []cluster.Node
}

func (d nodes) Self() string          { return d.self }
func (d nodes) Nodes() []cluster.Node { return d.all }
func (d nodes) Lookup(name string) (cluster.Node, bool) {
	i := slices.IndexFunc(d.all, func(n cluster.Node) bool { return n.Name == name })
	if i < 0 {
		return cluster.Node{}, false
	}
	return d.all[i], true
}

// clusterCore is storeCore with the Overview's calls.
type clusterCore struct{ storeCore }

func (c *clusterCore) GetStats(context.Context) (*aurav1.Stats, error) {
	return &aurav1.Stats{CountsByStatus: map[string]int64{"TASK_STATUS_SUCCEEDED": int64(len(c.tasks))}}, nil
}

func nodeTestServer(t *testing.T, dir cluster.Directory) (get func(path string) (int, string)) {
	t.Helper()
	core := &clusterCore{}
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	// Ids as a cluster's ListTasks answers them: every node's, newest
	// first, each named by its node.
	for i := range 90 {
		node := []string{"n1", "n2", "n10"}[i%3]
		core.tasks = append(core.tasks, &aurav1.Task{Id: cluster.TaskID(node, fmt.Sprintf("task-%04d", i)), Task: "demo/hello",
			Status: aurav1.TaskStatus_TASK_STATUS_SUCCEEDED, CreatedAt: timestamppb.New(start.Add(-time.Duration(i) * time.Minute))})
	}
	o := Options{Core: core, Events: noEvents{}, Authenticate: func(string) (Identity, bool) { return Identity{Name: "anonymous"}, true }}
	if dir != nil {
		o.Directory = dir
	}
	s, err := NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	return func(path string) (int, string) {
		resp, err := client.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
}

var rowID = regexp.MustCompile(`<tr data-id="([^"]+)"`)

func TestNodeFilterKeepsTheNodesTasks(t *testing.T) {
	started := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	dir := nodes{self: "n1", all: []cluster.Node{
		{Name: "n1", Address: "10.0.0.1:7070", Version: "v1", Capacity: 32, Running: 3, Queued: 1, Started: started,
			Pools: map[string][]string{"phone": {"p1", "p2"}}, Free: map[string][]string{"phone": {"p2"}}},
		{Name: "n2", Address: "10.0.0.2:7070", Version: "v1", Capacity: 16, Started: started},
	}}
	get := nodeTestServer(t, dir)

	code, page := get("/tasks?node=n2")
	if code != http.StatusOK {
		t.Fatalf("GET /tasks?node=n2: %d\n%s", code, page)
	}
	ids := rowID.FindAllStringSubmatch(page, -1)
	if len(ids) != 30 {
		t.Fatalf("node n2: %d rows, want its 30 tasks\n%s", len(ids), page)
	}
	for _, m := range ids {
		if !strings.HasPrefix(m[1], "n2.") {
			t.Errorf("node n2's list shows %s", m[1])
		}
	}
	// Live nodes to choose from, the chosen one selected; a node that
	// has left stays choosable for its tasks.
	if !strings.Contains(page, `<option value="n1">n1</option><option value="n2" selected>n2</option>`) {
		t.Errorf("the node filter does not offer the live nodes with n2 chosen:\n%s", page)
	}
	_, page = get("/tasks?node=n10")
	if n := len(rowID.FindAllString(page, -1)); n != 30 || strings.Contains(page, `data-id="n1.`) {
		t.Errorf("node n10 (not live): %d rows, want its 30 and none of n1's", n)
	}
	if !strings.Contains(page, `<option value="n10" selected>n10 (not live)</option>`) {
		t.Errorf("the filter does not keep the chosen node that left:\n%s", page)
	}

	code, page = get("/")
	if code != http.StatusOK {
		t.Fatalf("GET /: %d\n%s", code, page)
	}
	for _, want := range []string{`<tr data-node="n1"><td><a href="/tasks?node=n1">n1</a> (this node)</td><td>10.0.0.1:7070</td>`,
		`<td>3 of 32</td><td>1</td><td><span class="tag">phone: 1 of 2</span>`, `<tr data-node="n2"><td><a href="/tasks?node=n2">n2</a></td>`} {
		if !strings.Contains(page, want) {
			t.Errorf("the Overview's node list lacks %s:\n%s", want, page)
		}
	}
}

func TestOutsideAClusterThereIsNoNodeFilterOrList(t *testing.T) {
	get := nodeTestServer(t, nil)
	_, page := get("/tasks")
	if strings.Contains(page, `name="node"`) {
		t.Errorf("outside a cluster the task list offers a node filter:\n%s", page)
	}
	_, page = get("/")
	if strings.Contains(page, `id="nodes"`) {
		t.Errorf("outside a cluster the Overview lists nodes:\n%s", page)
	}
	code, page := get("/tasks?node=n1")
	if code != http.StatusBadRequest || !strings.Contains(page, "not a node of a cluster") || rowID.MatchString(page) {
		t.Errorf("GET /tasks?node=n1 outside a cluster: %d, want 400 saying why and no rows\n%s", code, page)
	}
}
