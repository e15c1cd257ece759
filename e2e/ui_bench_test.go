package e2e

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// uiBaseB is the web UI's base URL of a daemon started with --ui-listen.
func uiBaseB(b *testing.B, d *daemon) string {
	b.Helper()
	m := uiListenRE.FindStringSubmatch(d.logs())
	if m == nil {
		b.Fatalf("aurad did not log the web UI's address:\n%s", d.logs())
	}
	return "http://" + m[1]
}

// uiBenchTasks is how many tasks the task-list benchmark stores first:
// 100,000, or AURA_UI_BENCH_TASKS for a quicker look.
func uiBenchTasks(b *testing.B) int {
	if s := os.Getenv("AURA_UI_BENCH_TASKS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("AURA_UI_BENCH_TASKS=%q: want a positive count", s)
		}
		return n
	}
	return 100_000
}

// BenchmarkUITaskList stores 100,000 finished tasks, then renders the web
// UI's task list (its newest page of 50, as a browser asks for it) and,
// alternately, asks gRPC's ListTasks for the same page: pages/s beside
// listtasks/s, and their ratio.
func BenchmarkUITaskList(b *testing.B) {
	d := startDaemonB(b, "--ui-listen", "127.0.0.1:0", "--sync", "batch", "--max-concurrent", "64")
	base := uiBaseB(b, d)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	n := uiBenchTasks(b)
	const streams = 4
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for i := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- submitStream(ctx, d, &aurav1.SubmitRequest{Task: "e2e/quick"}, n/streams+min(1, max(0, n%streams-i)))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	// On a shared machine 100,000 tasks take minutes to run.
	waitForB(b, 15*time.Minute, "every stored task to finish", func() bool {
		st, err := d.client.Exec.GetStats(ctx, &aurav1.GetStatsRequest{})
		return err == nil && st.CountsByStatus["TASK_STATUS_SUCCEEDED"] >= int64(n)
	})
	// A browser keeps its session cookie: without one every page would
	// also start a session.
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Timeout: time.Minute, Jar: jar}
	get := func() {
		resp, err := hc.Get(base + "/tasks")
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || strings.Count(string(body), "<tr data-id=") != 50 {
			b.Fatalf("GET /tasks: %s with %d rows, want 200 with 50", resp.Status, strings.Count(string(body), "<tr data-id="))
		}
	}
	list := func() {
		resp, err := d.client.Exec.ListTasks(ctx, &aurav1.ListTasksRequest{PageSize: 50})
		if err != nil || len(resp.Tasks) != 50 {
			b.Fatalf("ListTasks: %d tasks, %v", len(resp.GetTasks()), err)
		}
	}
	get() // warm both paths up
	list()
	var uiTime, grpcTime time.Duration
	pages := 0
	for b.Loop() {
		t0 := time.Now()
		get()
		t1 := time.Now()
		list()
		uiTime += t1.Sub(t0)
		grpcTime += time.Since(t1)
		pages++
	}
	b.ReportMetric(float64(pages)/uiTime.Seconds(), "pages/s")
	b.ReportMetric(float64(pages)/grpcTime.Seconds(), "listtasks/s")
	b.ReportMetric(float64(n), "tasks-stored")
}

// sseClient follows the UI's event stream and records the sequence of
// every event it gets.
type sseClient struct {
	mu       sync.Mutex // guards seqs and finished
	seqs     []uint64
	finished int         // task.finished events seen
	last     chan uint64 // each sequence, as it arrives
}

func (c *sseClient) follow(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &httpStatusError{resp.Status}
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok && strings.Contains(data, `"type":"task.finished"`) {
			c.mu.Lock()
			c.finished++
			c.mu.Unlock()
		}
		if id, ok := strings.CutPrefix(sc.Text(), "id: "); ok {
			seq, err := strconv.ParseUint(id, 10, 64)
			if err != nil {
				return err
			}
			c.mu.Lock()
			c.seqs = append(c.seqs, seq)
			c.mu.Unlock()
			select {
			case c.last <- seq:
			default:
			}
		}
	}
	return sc.Err()
}

type httpStatusError struct{ status string }

func (e *httpStatusError) Error() string { return "HTTP " + e.status }

// BenchmarkUIEventStream opens 50 browsers' worth of the UI's event stream
// (/events, every task's events), runs b.N no-op tasks, and reports the
// events delivered per second to all 50 together (events/s) while every
// stream gets the identical sequence of events, none missing.
func BenchmarkUIEventStream(b *testing.B) {
	const clients = 50
	d := startDaemonB(b, "--ui-listen", "127.0.0.1:0", "--sync", "batch", "--max-concurrent", "64")
	base := uiBaseB(b, d)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	st, err := d.client.Exec.GetStats(ctx, &aurav1.GetStatsRequest{})
	if err != nil {
		b.Fatal(err)
	}
	from := st.LastSequence
	cs := make([]*sseClient, clients)
	var wg sync.WaitGroup
	streamCtx, stop := context.WithCancel(ctx)
	failed := make(chan error, clients)
	for i := range cs {
		cs[i] = &sseClient{last: make(chan uint64, 1)}
		wg.Add(1)
		go func(c *sseClient) {
			defer wg.Done()
			if err := c.follow(streamCtx, base+"/events?after="+strconv.FormatUint(from, 10)); err != nil && streamCtx.Err() == nil {
				failed <- err
			}
		}(cs[i])
	}
	defer func() { stop(); wg.Wait() }()
	// Every stream is open once the hub counts them (and the UI's own
	// throughput follower).
	waitForB(b, time.Minute, "50 event streams to open", func() bool {
		st, err := d.client.Exec.GetStats(ctx, &aurav1.GetStatsRequest{})
		return err == nil && st.HookSubscribers >= clients+1
	})
	start := time.Now()
	b.ResetTimer()
	if err := submitStream(ctx, d, &aurav1.SubmitRequest{Task: "e2e/quick"}, b.N); err != nil {
		b.Fatal(err)
	}
	tasks := b.N
	waitIdleB(b, ctx, d, int64(tasks))
	for i, c := range cs {
		for done := false; !done; {
			c.mu.Lock()
			done = c.finished >= tasks
			c.mu.Unlock()
			if done {
				break
			}
			select {
			case err := <-failed:
				b.Fatalf("stream %d: %v", i, err)
			case <-c.last:
			case <-time.After(time.Minute):
				b.Fatalf("stream %d stopped before the last task.finished event", i)
			}
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	want := cs[0].seqs
	for i, c := range cs {
		if len(c.seqs) != len(want) {
			b.Fatalf("stream %d got %d events, stream 0 got %d", i, len(c.seqs), len(want))
		}
		for j := range want {
			if c.seqs[j] != want[j] {
				b.Fatalf("stream %d's event %d is sequence %d, stream 0's is %d", i, j, c.seqs[j], want[j])
			}
		}
	}
	b.ReportMetric(float64(len(want)*clients)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(len(want))/float64(tasks), "events/task")
}

// waitForB polls cond until it holds, for at most timeout.
func waitForB(b *testing.B, timeout time.Duration, what string, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
