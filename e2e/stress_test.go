package e2e

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// The stress tests run the memory attacks at full size and report aurad's
// peak RSS. They take minutes and gigabytes without the limits, so they
// run only under `make stress` (AURA_STRESS=1); the normal suite runs the
// same attacks scaled down (limits_test.go).
func stressOnly(t *testing.T) {
	t.Helper()
	if os.Getenv("AURA_STRESS") == "" {
		t.Skip("full-size attack: run with `make stress` (AURA_STRESS=1)")
	}
}

// jsonServer serves, on 127.0.0.2 (the address plan limits allows), a JSON
// array of small objects of about size bytes at /big.json (five values
// per 22 bytes), and as many bytes of text at /big.txt.
func jsonServer(t *testing.T, size int) string {
	t.Helper()
	var b bytes.Buffer
	b.WriteByte('[')
	for i := 0; b.Len() < size-64; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"i":%d,"s":"abc"}`, i)
	}
	b.WriteByte(']')
	body := b.Bytes()
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.2: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big.txt" {
			w.Header().Set("Content-Type", "text/plain")
			w.Write(bytes.Repeat([]byte("x"), len(body)))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String() + "/big.json"
}

// runAttack submits n copies of task at once, waits for them all and
// reports aurad's RSS before and its peak (VmHWM) after.
func runAttack(t *testing.T, d *daemon, n int, task string, inputs map[string]any) (tasks []*aurav1.Task, growthMiB int) {
	t.Helper()
	ctx := ctxT(t, 10*time.Minute)
	d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"})) // warm up
	pid := d.cmd.Process.Pid
	before := procKiB(t, pid, "VmRSS")
	in, err := structpb.NewStruct(inputs)
	if err != nil {
		t.Fatal(err)
	}
	tasks = make([]*aurav1.Task, n)
	var wg sync.WaitGroup
	for i := range n {
		id := d.submit(ctx, &aurav1.SubmitRequest{Task: task, Inputs: in})
		wg.Go(func() { tasks[i] = d.wait(ctx, id) })
	}
	wg.Wait()
	peak := procKiB(t, pid, "VmHWM")
	t.Logf("%d x %s: aurad RSS %d MiB before, peak %d MiB (+%d MiB); first ended %s %s",
		n, task, before>>10, peak>>10, (peak-before)>>10, tasks[0].Status, tasks[0].GetError().GetMessage())
	return tasks, (peak - before) >> 10
}

// wantAll fails the test unless every task ended with status.
func wantAll(t *testing.T, tasks []*aurav1.Task, status aurav1.TaskStatus) {
	t.Helper()
	for _, task := range tasks {
		if task.Status != status {
			t.Fatalf("%s ended %s (%v), want %s", task.Task, task.Status, task.GetError(), status)
		}
	}
}

// TestStressHTTPJSONResponseMemory: 10 MiB JSON responses (1.4 million
// values each) are refused while they arrive, so even eight at once leave
// aurad's memory nearly flat. What the limits still let through (JSON just
// under the value limit, a text body at the body limit) is reported.
func TestStressHTTPJSONResponseMemory(t *testing.T) {
	stressOnly(t)
	cases := []struct {
		name      string
		n, size   int
		path      string
		want      aurav1.TaskStatus
		maxGrowth int // MiB; 0 = only reported
	}{
		{"1x10MiB-json", 1, 10 << 20, "/big.json", aurav1.TaskStatus_TASK_STATUS_FAILED, 64},
		{"8x10MiB-json", 8, 10 << 20, "/big.json", aurav1.TaskStatus_TASK_STATUS_FAILED, 64},
		{"8x380KiB-json-under-the-limit", 8, 380 << 10, "/big.json", aurav1.TaskStatus_TASK_STATUS_SUCCEEDED, 0},
		{"8x10MiB-text", 8, 10 << 20, "/big.txt", aurav1.TaskStatus_TASK_STATUS_SUCCEEDED, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			url := strings.TrimSuffix(jsonServer(t, tc.size), "/big.json") + tc.path
			d := startDaemon(t, daemonOpts{plans: limitsPlans, args: []string{"--io-workers", "8"}})
			tasks, growth := runAttack(t, d, tc.n, "limits/fetch", map[string]any{"url": url})
			wantAll(t, tasks, tc.want)
			if tc.maxGrowth > 0 && growth > tc.maxGrowth {
				t.Errorf("aurad grew %d MiB, want at most %d", growth, tc.maxGrowth)
			}
		})
	}
}

// TestStressLoopMemory: a loop of a million iterations is refused before it
// builds anything.
func TestStressLoopMemory(t *testing.T) {
	stressOnly(t)
	d := startDaemon(t, daemonOpts{plans: limitsPlans})
	tasks, growth := runAttack(t, d, 1, "limits/loop", map[string]any{"times": 1_000_000})
	wantAll(t, tasks, aurav1.TaskStatus_TASK_STATUS_FAILED)
	if growth > 64 {
		t.Errorf("aurad grew %d MiB, want at most 64", growth)
	}
}

// TestStressRunTaskFanIn is the reported deadlock at full size: sixteen
// tasks each waiting on a one-second run_task child, with eight io workers,
// and another plan's task behind them; before run_task stopped holding an
// io worker, twelve timed out and the other task waited 40 s.
func TestStressRunTaskFanIn(t *testing.T) {
	stressOnly(t)
	d := startDaemon(t, daemonOpts{plans: limitsPlans, args: []string{"--io-workers", "8"}})
	ctx := ctxT(t, 5*time.Minute)
	in, _ := structpb.NewStruct(map[string]any{"for": "1s"})
	var ids []string
	for range 16 {
		ids = append(ids, d.submit(ctx, &aurav1.SubmitRequest{Task: "limits/parent", Inputs: in}))
	}
	ids = append(ids, d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"}))
	var tasks []*aurav1.Task
	for _, id := range ids {
		tasks = append(tasks, d.wait(ctx, id))
	}
	wantAll(t, tasks, aurav1.TaskStatus_TASK_STATUS_SUCCEEDED)
	other := tasks[len(tasks)-1]
	t.Logf("16 parents and e2e/quick done; e2e/quick took %s from submit to finish",
		other.FinishedAt.AsTime().Sub(other.CreatedAt.AsTime()).Round(time.Millisecond))
}

// TestStressTaskOutputMemory: a loop over 64 URLs of 10 MiB each, every
// response within its own limit, stops at --max-task-output (64 MiB)
// instead of keeping 640 MiB of bodies.
func TestStressTaskOutputMemory(t *testing.T) {
	stressOnly(t)
	base := strings.TrimSuffix(jsonServer(t, 10<<20), "/big.json")
	d := startDaemon(t, daemonOpts{plans: limitsPlans})
	urls := make([]any, 64)
	for i := range urls {
		urls[i] = base + "/big.txt"
	}
	tasks, growth := runAttack(t, d, 1, "limits/fetch_many", map[string]any{"urls": urls})
	wantAll(t, tasks, aurav1.TaskStatus_TASK_STATUS_FAILED)
	if growth > 256 {
		t.Errorf("aurad grew %d MiB, want at most 256", growth)
	}
}
