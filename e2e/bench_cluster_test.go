package e2e

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aura-dev/aura/client"
	"github.com/aura-dev/aura/internal/cluster/etcdtest"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// BenchmarkClusterEndToEnd/three-vs-one runs b.N no-op tasks end to end
// (submitted and run to completion) on one aurad node of a cluster, then
// on three nodes with the submissions spread over them, then on the one
// node again, all on a three-member etcd and on this machine, and reports
// the tasks/s of three nodes (three-tasks/s), of one node (one-tasks/s:
// the mean of the two runs around the three-node one, so that drift in
// the machine's load hits both sides) and their ratio. One node is node a
// before b and c join and after they left. The etcd members and node a
// live for the whole benchmark, outside the measured sub-benchmark: a
// member's shutdown logs to the test's output, which must not break into
// the sub-benchmark's result line.
func BenchmarkClusterEndToEnd(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	etcd := etcdtest.Start(b, 3)
	start := func(b *testing.B, name string) *daemon {
		return startDaemonB(b, "--max-concurrent", "64", "--sync", "always",
			"--cluster-etcd", strings.Join(etcd.Endpoints(), ","), "--node", name, "--advertise", "127.0.0.1:0")
	}
	a := start(b, "a")
	waitNodesB(b, ctx, 1, a)
	b.Run("three-vs-one", func(b *testing.B) {
		one1 := clusterEndToEnd(b, ctx, b.N, a)

		b.StopTimer()
		// Nodes of their own name and data on each run: the ones before
		// left cleanly, so their names are free.
		bn, c := start(b, "b"), start(b, "c")
		waitNodesB(b, ctx, 3, a, bn, c)
		b.StartTimer()
		three := clusterEndToEnd(b, ctx, b.N, a, bn, c)

		b.StopTimer()
		bn.stop()
		c.stop()
		waitNodesB(b, ctx, 1, a)
		b.StartTimer()
		one2 := clusterEndToEnd(b, ctx, b.N, a)
		b.StopTimer()

		one := (one1 + one2) / 2
		b.ReportMetric(one, "one-tasks/s")
		b.ReportMetric(three, "three-tasks/s")
		b.ReportMetric(three/one, "three/one")
	})
}

// waitNodesB waits until each of nodes lists n live nodes.
func waitNodesB(b *testing.B, ctx context.Context, n int, nodes ...*daemon) {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for _, d := range nodes {
		for {
			resp, err := aurav1.NewClusterServiceClient(d.client.Conn()).ListNodes(ctx, &aurav1.ListNodesRequest{})
			if err != nil {
				b.Fatalf("ListNodes on %s: %v", d.addr, err)
			}
			if len(resp.Nodes) == n {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%s lists %d nodes after a minute, want %d", d.addr, len(resp.Nodes), n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// clusterEndToEnd submits n no-op tasks over nine SubmitStreams spread
// evenly over nodes and returns the tasks/s from the first submission to
// the last task's end, counted from each node's own after_task_run events
// after the sequence it had reached (a task runs where its submission was
// placed, normally the node it was sent to).
func clusterEndToEnd(b *testing.B, ctx context.Context, n int, nodes ...*daemon) float64 {
	b.Helper()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var finished atomic.Int64
	all := make(chan struct{})
	var closeAll sync.Once
	errs := make(chan error, len(nodes))
	var subs sync.WaitGroup
	for _, d := range nodes {
		st, err := d.client.Exec.GetStats(ctx, &aurav1.GetStatsRequest{})
		if err != nil {
			b.Fatal(err)
		}
		after := st.LastSequence
		subs.Go(func() {
			err := d.client.Subscribe(ctx, client.SubscribeOptions{After: &after, Hooks: []string{"after_task_run"}}, func(*aurav1.HookEvent) error {
				if finished.Add(1) >= int64(n) {
					closeAll.Do(func() { close(all) })
				}
				return nil
			})
			if err != nil && ctx.Err() == nil {
				errs <- err
			}
		})
	}
	begin := time.Now()
	const streams = 9
	var wg sync.WaitGroup
	for i := range streams {
		per := n / streams
		if i < n%streams {
			per++
		}
		if per == 0 {
			continue
		}
		wg.Go(func() {
			if err := submitStream(ctx, nodes[i%len(nodes)], &aurav1.SubmitRequest{Task: "e2e/quick"}, per); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	select {
	case <-all:
	case err := <-errs:
		b.Fatalf("following after_task_run: %v", err)
	case <-time.After(10 * time.Minute):
		b.Fatalf("%d of %d tasks finished after 10 minutes", finished.Load(), n)
	}
	el := time.Since(begin)
	cancel()
	subs.Wait()
	if got := finished.Load(); got != int64(n) {
		b.Fatalf("%d tasks finished, %d were submitted", got, n)
	}
	return float64(n) / el.Seconds()
}
