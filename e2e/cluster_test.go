package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aura-dev/aura/internal/cluster"
	"github.com/aura-dev/aura/internal/cluster/etcdtest"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// clusterNode is how one node of a test cluster is started.
type clusterNode struct {
	name  string
	pool  []string // instances of its "phone" pool; none: no pool
	plans []string // as daemonOpts.plans
	data  string   // reuse a data dir (restart); "" makes a new one
}

// startNode starts an aurad node of the cluster on etcd with a 2s TTL.
func startNode(t *testing.T, etcd *etcdtest.Cluster, n clusterNode, extra ...string) *daemon {
	t.Helper()
	args := []string{"--cluster-etcd", strings.Join(etcd.Endpoints(), ","), "--node", n.name,
		"--advertise", "127.0.0.1:0", "--cluster-ttl", "2s"}
	if len(n.pool) > 0 {
		file := filepath.Join(t.TempDir(), "resources.yaml")
		quoted, _ := json.Marshal(n.pool)
		if err := os.WriteFile(file, []byte("resources:\n  phone:\n    instances: "+string(quoted)+"\n    limit: 1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--resources", file)
	}
	return startDaemon(t, daemonOpts{plans: n.plans, data: n.data, args: append(args, extra...)})
}

func listNodes(t *testing.T, ctx context.Context, d *daemon) *aurav1.ListNodesResponse {
	t.Helper()
	resp, err := aurav1.NewClusterServiceClient(d.client.Conn()).ListNodes(ctx, &aurav1.ListNodesRequest{})
	if err != nil {
		t.Fatalf("ListNodes on %s: %v", d.addr, err)
	}
	return resp
}

func nodeNames(resp *aurav1.ListNodesResponse) []string {
	var out []string
	for _, n := range resp.Nodes {
		out = append(out, n.Name)
	}
	return out
}

// Three nodes with different pools see each other, with their pools,
// addresses and load; auractl nodes shows them; one killed with SIGKILL
// is gone after its TTL; its tasks' ids name it.
func TestClusterNodesSeeEachOther(t *testing.T) {
	ctx := ctxT(t, 2*time.Minute)
	etcd := etcdtest.Start(t, 3)
	nodes := []*daemon{
		startNode(t, etcd, clusterNode{name: "a", pool: []string{"pa1", "pa2"}}, "--admin-listen", "127.0.0.1:0"),
		startNode(t, etcd, clusterNode{name: "b", pool: []string{"pb1"}}),
		startNode(t, etcd, clusterNode{name: "c"}, "--ui-listen", "127.0.0.1:0"),
	}
	for _, d := range nodes {
		waitFor(t, "every node and its capacity seen from "+d.addr, 20*time.Second, func() bool {
			resp := listNodes(t, ctx, d)
			for _, n := range resp.Nodes {
				if n.Capacity != 32 {
					return false
				}
			}
			return slices.Equal(nodeNames(resp), []string{"a", "b", "c"})
		})
	}
	resp := listNodes(t, ctx, nodes[1])
	if !resp.Clustered || resp.Self != "b" {
		t.Fatalf("b answers clustered=%v self=%q", resp.Clustered, resp.Self)
	}
	for i, n := range resp.Nodes {
		if n.Address != nodes[i].addr || n.Version == "" || n.Started == nil || n.LastSeen == nil {
			t.Errorf("node %s listed as %v; want address %s", n.Name, n, nodes[i].addr)
		}
	}
	if p := resp.Nodes[0].Pools; len(p) != 1 || p[0].Name != "phone" || !slices.Equal(p[0].Instances, []string{"pa1", "pa2"}) || len(p[0].Free) != 2 {
		t.Errorf("a's pools listed as %v", p)
	}
	if p := resp.Nodes[2].Pools; len(p) != 0 {
		t.Errorf("c has no pool, listed with %v", p)
	}
	waitFor(t, "a leader", 10*time.Second, func() bool { return listNodes(t, ctx, nodes[0]).Leader != "" })

	code, metrics := httpGet(t, adminAddr(t, nodes[0])+"/metrics")
	if code != 200 || !strings.Contains(metrics, "aura_cluster_nodes 3") || !strings.Contains(metrics, "aura_cluster_session_up 1") ||
		!strings.Contains(metrics, "aura_cluster_leader ") {
		t.Fatalf("/metrics: %d\n%s", code, metrics)
	}

	out, code := auractl(t, nodes[0], "nodes")
	if code != 0 || !strings.Contains(out, "phone(2/2)") || !strings.Contains(out, nodes[2].addr) || !strings.Contains(out, " *") {
		t.Fatalf("auractl nodes: exit %d\n%s", code, out)
	}
	out, code = auractl(t, nodes[0], "nodes", "-o", "json")
	// protojson varies its spacing on purpose: read the JSON, not its text.
	var listed struct {
		Nodes []struct {
			Name string `json:"name"`
		} `json:"nodes"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &listed) != nil || !slices.ContainsFunc(listed.Nodes, func(n struct {
		Name string `json:"name"`
	}) bool {
		return n.Name == "c"
	}) {
		t.Fatalf("auractl nodes -o json: exit %d, want node c listed\n%s", code, out)
	}

	// A task's id names the node it was submitted to, and every task id
	// is accepted by the API.
	id := nodes[2].submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"})
	if node, ok := cluster.NodeOf(id); !ok || node != "c" {
		t.Fatalf("task id %q on node c names %q", id, node)
	}
	if task := nodes[2].wait(ctx, id); task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("task %s: %s", id, task.Status)
	}
	if out, code := auractl(t, nodes[2], "get", id); code != 0 || !strings.Contains(out, "SUCCEEDED") {
		t.Fatalf("auractl get %s: exit %d\n%s", id, code, out)
	}
	// The web UI's task page takes it too.
	ui := uiListenRE.FindStringSubmatch(nodes[2].logs())
	if ui == nil {
		t.Fatalf("node c did not log its web UI's address")
	}
	got, err := uiClient(t).Get("http://" + ui[1] + "/tasks/" + id)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(got.Body)
	got.Body.Close()
	if got.StatusCode != http.StatusOK || !strings.Contains(string(page), id) {
		t.Fatalf("GET /tasks/%s: %d\n%.2000s", id, got.StatusCode, page)
	}

	// SIGKILL: no goodbye; the node is gone once its lease lapses.
	nodes[2].kill()
	killed := time.Now()
	waitFor(t, "c gone from a's list", 15*time.Second, func() bool {
		return slices.Equal(nodeNames(listNodes(t, ctx, nodes[0])), []string{"a", "b"})
	})
	if took := time.Since(killed); took > 2*time.Second+5*time.Second {
		t.Errorf("a node killed with a 2s TTL stayed listed for %s", took)
	}
}

// A second node under a name a live node has is refused at start, and a
// node outside a cluster lists itself alone.
func TestClusterRefusesADuplicateNodeName(t *testing.T) {
	ctx := ctxT(t, time.Minute)
	etcd := etcdtest.Start(t, 1)
	startNode(t, etcd, clusterNode{name: "a"})
	out, err := runAurad(t, "serve", "--plans", t.TempDir(), "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--ui-listen", "",
		"--cpu-workers", "-1", "--cluster-etcd", etcd.Endpoint(0), "--node", "a", "--advertise", "127.0.0.1:1", "--cluster-ttl", "1s")
	if err == nil || !strings.Contains(out, `another live node is registered as "a"`) {
		t.Fatalf("a second node a: %v\n%s", err, out)
	}
	out, err = runAurad(t, "serve", "--plans", t.TempDir(), "--cluster-etcd", etcd.Endpoint(0), "--advertise", "127.0.0.1:1")
	if err == nil || !strings.Contains(out, "--node: required with --cluster-etcd") {
		t.Fatalf("no --node: %v\n%s", err, out)
	}
	out, err = runAurad(t, "serve", "--plans", t.TempDir(), "--cluster-etcd", etcd.Endpoint(0), "--node", "B_1", "--advertise", "127.0.0.1:1")
	if err == nil || !strings.Contains(out, `--node: node name "B_1"`) {
		t.Fatalf("--node B_1: %v\n%s", err, out)
	}

	alone := startDaemon(t, daemonOpts{})
	resp := listNodes(t, ctx, alone)
	if resp.Clustered || len(resp.Nodes) != 1 || resp.Nodes[0].Capacity != 32 {
		t.Fatalf("a daemon alone lists %v", resp)
	}
}

// runAurad runs aurad to its exit (one that must refuse to start) and
// returns what it printed.
func runAurad(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(bin.aurad, args...)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill() // it started after all: the output says so
		}
	}()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// fireKeys returns the idempotency keys of the every_second fires node
// name ran, asked through d. ListTasks answers for the whole cluster, so
// the node is told by the task ids.
func fireKeys(t *testing.T, ctx context.Context, d *daemon, name string) []string {
	t.Helper()
	var keys []string
	for _, task := range scheduled(t, ctx, d, "sched/every_second") {
		if node, _ := cluster.NodeOf(task.Id); node == name {
			keys = append(keys, task.IdempotencyKey)
		}
	}
	return keys
}

// leaderOf waits until the nodes agree on a leader and returns its index.
func leaderOf(t *testing.T, ctx context.Context, nodes []*daemon, names []string) int {
	t.Helper()
	at := -1
	waitFor(t, "a leader", 20*time.Second, func() bool {
		for _, d := range nodes {
			if d == nil {
				continue
			}
			i := slices.Index(names, listNodes(t, ctx, d).Leader)
			if i < 0 || nodes[i] == nil {
				return false
			}
			at = i
		}
		return true
	})
	return at
}

// An every-second schedule on three nodes fires each tick once, on the
// leader; when the leader is killed another node takes over and fires on
// without firing any tick a second time.
func TestClusterSchedulesFireOncePerTick(t *testing.T) {
	ctx := ctxT(t, 2*time.Minute)
	etcd := etcdtest.Start(t, 3)
	names := []string{"a", "b", "c"}
	nodes := make([]*daemon, 3)
	datas := make([]string, 3)
	for i, name := range names {
		datas[i] = t.TempDir()
		nodes[i] = startNode(t, etcd, clusterNode{name: name, plans: []string{"testdata/plans/sched"}, data: datas[i]})
	}
	first := leaderOf(t, ctx, nodes, names)
	waitFor(t, "three fires on the leader", 20*time.Second, func() bool { return len(fireKeys(t, ctx, nodes[first], names[first])) >= 3 })
	for i, d := range nodes {
		// A node that never led fires nothing. (On a loaded machine a
		// lease may be given up and leadership move: such a node says so.)
		if i != first && !strings.Contains(d.logs(), "cluster: this node leads the cluster") && len(fireKeys(t, ctx, d, names[i])) != 0 {
			t.Fatalf("node %s, which never led, fired %v", names[i], fireKeys(t, ctx, d, names[i]))
		}
	}

	nodes[first].kill()
	nodes[first] = nil
	next := leaderOf(t, ctx, nodes, names)
	waitFor(t, "three fires on the new leader", 30*time.Second, func() bool { return len(fireKeys(t, ctx, nodes[next], names[next])) >= 3 })

	// A pause sent to a node that does not lead stops the leader's fires.
	follower := nodes[(next+1)%3]
	if follower == nil {
		follower = nodes[(next+2)%3]
	}
	if out, code := auractl(t, follower, "schedules", "pause", "sched/every_second"); code != 0 {
		t.Fatalf("pause through a follower: exit %d\n%s", code, out)
	}
	waitFor(t, "the leader sees the pause", 10*time.Second, func() bool {
		return listSchedules(t, ctx, nodes[next])["sched/every_second"].GetPaused()
	})
	before := len(fireKeys(t, ctx, nodes[next], names[next]))
	time.Sleep(2500 * time.Millisecond) // two ticks that must not fire
	if after := len(fireKeys(t, ctx, nodes[next], names[next])); after > before+1 {
		t.Fatalf("the leader fired %d ticks while paused", after-before)
	}

	// The killed node's store, read after a restart, holds its fires.
	nodes[first] = startNode(t, etcd, clusterNode{name: names[first], plans: []string{"testdata/plans/sched"}, data: datas[first]})
	seen := map[string]string{}
	for i, d := range nodes {
		for _, k := range fireKeys(t, ctx, d, names[i]) {
			if other, dup := seen[k]; dup {
				t.Fatalf("tick %s fired on %s and on %s", k, other, names[i])
			}
			seen[k] = names[i]
		}
	}
	if len(seen) < 6 {
		t.Fatalf("only %d fires in all: %v", len(seen), seen)
	}
}
