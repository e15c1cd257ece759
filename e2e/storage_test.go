package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// mountTmpfs mounts a tmpfs of the given size (mount -o size=...) on a new
// directory and unmounts it when the test is over (after the daemon that
// uses it has stopped: cleanups run last-registered first). It skips the
// test, saying why, where mounting is not permitted.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("skipping: cannot mount a %s tmpfs to fill (%v); this test needs root (or CAP_SYS_ADMIN)", size, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
	return dir
}

// fillDisk writes path until the filesystem has no room left.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatalf("filling %s: %v", path, err)
		}
	}
}

func holdRequest(ms int) *aurav1.SubmitRequest {
	in, _ := structpb.NewStruct(map[string]any{"ms": ms})
	return &aurav1.SubmitRequest{Task: "e2e/hold", Inputs: in}
}

// Attack: the filesystem holding the data directory fills up while tasks
// are submitted and running. Clients must hear "disk full"
// (RESOURCE_EXHAUSTED), the log must say so once (not once per failed
// transaction), /readyz must turn 503, and once space is freed every task
// that was acknowledged must reach its end, recorded in the store, with no
// restart and with each task's events in order.
func TestDiskFullSaysSoAndCarriesAcceptedTasksToTheirEnd(t *testing.T) {
	data := mountTmpfs(t, "4m")
	d := startDaemon(t, daemonOpts{data: data, args: []string{"--admin-listen", "127.0.0.1:0", "--max-concurrent", "4"}})
	base := adminAddr(t, d)
	ctx := ctxT(t, 3*time.Minute)

	var (
		mu       sync.Mutex
		accepted []string
		refusals []error
	)
	// More than run at once (4): when the disk fills, some are running
	// and the rest wait for admission, all with status writes to come.
	for range 40 {
		accepted = append(accepted, d.submit(ctx, holdRequest(200)))
	}
	filler := filepath.Join(data, "filler")
	fillDisk(t, filler)

	// Keep submitting until the daemon refuses: a few tasks may still fit
	// in space SQLite had already claimed.
	var wg sync.WaitGroup
	deadline := time.Now().Add(90 * time.Second)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				resp, err := d.client.Submit(ctx, holdRequest(20))
				mu.Lock()
				if err != nil {
					refusals = append(refusals, err)
					mu.Unlock()
					return
				}
				accepted = append(accepted, resp.TaskId)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(refusals) == 0 {
		t.Fatalf("the daemon accepted %d tasks on a full 4 MB disk and never refused one", len(accepted))
	}
	for _, err := range refusals {
		if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "disk full") {
			t.Fatalf("refusal on a full disk: %v; want RESOURCE_EXHAUSTED saying \"disk full\"", err)
		}
	}
	t.Logf("%d tasks accepted, then refused with: %v", len(accepted), refusals[0])

	code, body := httpGet(t, base+"/readyz")
	if code != 503 || !strings.Contains(body, "disk full") {
		t.Fatalf("/readyz on a full disk: %d %q; want 503 saying disk full", code, body)
	}
	if _, err := d.client.Submit(ctx, holdRequest(1)); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a submission while the disk is still full: %v; want RESOURCE_EXHAUSTED", err)
	}
	// The episode caught accepted tasks mid-way: their next status write
	// cannot be recorded while the disk is full.
	unfinished := 0
	for _, id := range accepted {
		if task, err := d.client.Get(ctx, id); err == nil && task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
			unfinished++
		}
	}
	if unfinished == 0 {
		t.Fatal("every accepted task had finished before the disk filled: the attack tested nothing")
	}
	t.Logf("%d accepted tasks unfinished while the disk is full", unfinished)

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "/readyz to recover once space is freed", 30*time.Second, func() bool {
		code, _ := httpGet(t, base+"/readyz")
		return code == 200
	})
	for _, id := range accepted {
		waitFor(t, "task "+id+" to finish", 60*time.Second, func() bool {
			task, err := d.client.Get(ctx, id)
			return err == nil && task.Status == aurav1.TaskStatus_TASK_STATUS_SUCCEEDED
		})
	}
	// What the store holds, not what the daemon remembers: no accepted
	// task may be left QUEUED or RUNNING there.
	for _, st := range []aurav1.TaskStatus{aurav1.TaskStatus_TASK_STATUS_QUEUED, aurav1.TaskStatus_TASK_STATUS_RUNNING} {
		resp, err := d.client.Exec.ListTasks(ctx, &aurav1.ListTasksRequest{Status: st, PageSize: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Tasks) > 0 {
			t.Fatalf("%d tasks still %s in the store after space returned", len(resp.Tasks), st)
		}
	}
	for _, id := range accepted {
		checkEventOrder(ctx, t, d, id)
	}
	if task := d.wait(ctx, d.submit(ctx, holdRequest(1))); task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("a task submitted after the episode ended %s", task.Status)
	}

	logs := d.logs()
	if n := strings.Count(logs, "level=ERROR"); n > 2 {
		t.Fatalf("%d ERROR lines for one disk-full episode; want it said once:\n%s", n, logs)
	}
	if !strings.Contains(logs, "disk full") || strings.Contains(logs, "rollback failed") {
		t.Fatalf("the log should say \"disk full\" once and never \"rollback failed\":\n%s", logs)
	}
}

// A daemon told to stop while the disk is full does not wait for space for
// ever: writes held for it fail when the shutdown grace ends, and the next
// start (with space again) recovers every accepted task from the store.
func TestDiskFullShutdownEndsWithinGraceAndRestartRecovers(t *testing.T) {
	data := mountTmpfs(t, "4m")
	d := startDaemon(t, daemonOpts{data: data, args: []string{"--admin-listen", "127.0.0.1:0", "--max-concurrent", "2", "--shutdown-grace", "2s"}})
	base := adminAddr(t, d)
	ctx := ctxT(t, 3*time.Minute)
	var accepted []string
	for range 10 {
		accepted = append(accepted, d.submit(ctx, holdRequest(200)))
	}
	filler := filepath.Join(data, "filler")
	fillDisk(t, filler)
	waitFor(t, "/readyz to report the full disk", 30*time.Second, func() bool {
		code, body := httpGet(t, base+"/readyz")
		return code == 503 && strings.Contains(body, "disk full")
	})
	d.stop() // fails the test if aurad is still up 30s after SIGTERM
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	d2 := startDaemonIn(t, d.plans, d.data)
	for _, id := range accepted {
		task := d2.wait(ctx, id)
		switch task.Status {
		case aurav1.TaskStatus_TASK_STATUS_SUCCEEDED, aurav1.TaskStatus_TASK_STATUS_INTERRUPTED:
		default:
			t.Fatalf("task %s after the restart: %s; want it run (SUCCEEDED) or interrupted by the stop", id, task.Status)
		}
	}
}

// checkEventOrder reads a task's stored events: they start with task.queued,
// end with task.finished and their sequences strictly increase.
func checkEventOrder(ctx context.Context, t *testing.T, d *daemon, id string) {
	t.Helper()
	stream, err := d.client.Exec.Stream(ctx, &aurav1.StreamRequest{TaskId: id})
	if err != nil {
		t.Fatal(err)
	}
	var evs []*aurav1.TaskEvent
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("events of %s: %v", id, err)
		}
		evs = append(evs, ev)
		if ev.Type == "task.finished" {
			break
		}
	}
	if len(evs) < 2 || evs[0].Type != "task.queued" || evs[len(evs)-1].Type != "task.finished" {
		t.Fatalf("events of %s: %v; want task.queued first and task.finished last", id, evs)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].Sequence <= evs[i-1].Sequence {
			t.Fatalf("events of %s out of order: %d after %d", id, evs[i].Sequence, evs[i-1].Sequence)
		}
	}
}

// Attack: the data directory is deleted under a running daemon. The next
// submission must be refused (it would be lost at the next start), the log
// must say what happened, and /readyz must turn 503 saying why.
func TestDataDirDeletedRefusesWritesAndTurnsNotReady(t *testing.T) {
	d := startDaemon(t, daemonOpts{args: []string{"--admin-listen", "127.0.0.1:0", "--max-concurrent", "2"}})
	base := adminAddr(t, d)
	ctx := ctxT(t, time.Minute)
	// Tasks waiting for admission when the directory goes: none can record
	// its start any more, so none runs, and each ends unrecorded.
	const waiting = 50
	for range waiting {
		d.submit(ctx, holdRequest(20))
	}
	if err := os.RemoveAll(d.data); err != nil {
		t.Fatal(err)
	}
	acknowledged := 0
	var refusal error
	for range 50 {
		if _, err := d.client.Submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"}); err != nil {
			refusal = err
			break
		}
		acknowledged++
	}
	if acknowledged > 0 || refusal == nil {
		t.Fatalf("%d submissions acknowledged after the data directory was deleted (then: %v); want every one refused", acknowledged, refusal)
	}
	db := filepath.Join(d.data, "aura.db")
	if status.Code(refusal) != codes.Unavailable || !strings.Contains(refusal.Error(), db) {
		t.Fatalf("refusal: %v; want UNAVAILABLE naming %s", refusal, db)
	}
	code, body := httpGet(t, base+"/readyz")
	if code != 503 || !strings.Contains(body, "deleted") {
		t.Fatalf("/readyz after the data directory was deleted: %d %q; want 503 saying it was deleted", code, body)
	}
	if !strings.Contains(d.logs(), "the database file is gone") {
		t.Fatalf("the log does not say the database file is gone:\n%s", d.logs())
	}
	// Said once, not once for every task that can no longer be recorded.
	waitFor(t, "every waiting task to end", 30*time.Second, func() bool {
		st, err := d.client.Exec.GetStats(ctx, &aurav1.GetStatsRequest{})
		if err != nil {
			return false
		}
		c := st.CountsByStatus
		return c["TASK_STATUS_QUEUED"]+c["TASK_STATUS_RUNNING"] == 0 &&
			c["TASK_STATUS_SUCCEEDED"]+c["TASK_STATUS_FAILED"] == waiting
	})
	if n := strings.Count(d.logs(), "level=ERROR"); n > 2 {
		t.Fatalf("%d ERROR lines after the data directory was deleted; want it said once:\n%s", n, d.logs())
	}
}

// Attack: the data directory of an idle daemon is deleted; /readyz notices
// without any write.
func TestDataDirDeletedIdleTurnsNotReady(t *testing.T) {
	d := startDaemon(t, daemonOpts{args: []string{"--admin-listen", "127.0.0.1:0"}})
	base := adminAddr(t, d)
	if code, _ := httpGet(t, base+"/readyz"); code != 200 {
		t.Fatalf("/readyz before: %d", code)
	}
	if err := os.RemoveAll(d.data); err != nil {
		t.Fatal(err)
	}
	if code, body := httpGet(t, base+"/readyz"); code != 503 || !strings.Contains(body, "aura.db was deleted") {
		t.Fatalf("/readyz after rm -rf of the data directory: %d %q; want 503 saying aura.db was deleted", code, body)
	}
}

// startFailing runs aurad serve on data, expecting it to refuse to start;
// it returns its output.
func startFailing(t *testing.T, data string) string {
	t.Helper()
	plans := t.TempDir()
	copyDir(t, "testdata/plans/e2e", filepath.Join(plans, "e2e"))
	cmd := exec.Command(bin.aurad, "serve", "--plans", plans, "--data", data, "--listen", "127.0.0.1:0", "--cpu-workers", "1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if listenRE.MatchString(sc.Text()) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("aurad started serving on a damaged database:\n%s", out.String())
		}
	}
	if err := cmd.Wait(); err == nil {
		t.Fatalf("aurad exited 0 on a damaged database:\n%s", out.String())
	}
	return out.String()
}

// storeWithTasks runs a daemon that records n tasks, then stops it cleanly
// (which moves everything into aura.db), and returns the data directory.
func storeWithTasks(t *testing.T, n int) string {
	t.Helper()
	data := t.TempDir()
	d := startDaemon(t, daemonOpts{data: data})
	ctx := ctxT(t, time.Minute)
	for range n {
		in, _ := structpb.NewStruct(map[string]any{"n": 1, "word": strings.Repeat("w", 200)})
		d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/echo", Inputs: in})
	}
	d.stop()
	return data
}

// Attack: random bytes written into the middle of aura.db. aurad must
// refuse to start, naming the file and the next step, instead of starting
// and failing later with "database disk image is malformed".
func TestCorruptDatabaseIsRefusedAtStart(t *testing.T) {
	data := storeWithTasks(t, 300)
	db := filepath.Join(data, "aura.db")
	fi, err := os.Stat(db)
	if err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, 4096)
	if _, err := rand.Read(junk); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(db, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(junk, fi.Size()/2/4096*4096); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	out := startFailing(t, data)
	if !strings.Contains(out, db) || !strings.Contains(out, "integrity check") || !strings.Contains(out, "backup") {
		t.Fatalf("aurad's refusal does not name %s, the failed integrity check and the next step:\n%s", db, out)
	}
}

// Attack: aura.db truncated to zero bytes. aurad must refuse to start
// rather than start with an empty store as if nothing had been recorded.
func TestEmptiedDatabaseIsRefusedAtStart(t *testing.T) {
	data := storeWithTasks(t, 5)
	db := filepath.Join(data, "aura.db")
	if err := os.Truncate(db, 0); err != nil {
		t.Fatal(err)
	}
	out := startFailing(t, data)
	if !strings.Contains(out, db) || !strings.Contains(out, "empty") || !strings.Contains(out, "backup") {
		t.Fatalf("aurad's refusal does not name %s as empty with the next step:\n%s", db, out)
	}
}

// grpcHealth is what grpc.health.v1 says of every name it answers for (the
// server as a whole and each Aura service), or the error asking it.
func grpcHealth(ctx context.Context, d *daemon) (map[string]healthpb.HealthCheckResponse_ServingStatus, error) {
	out := map[string]healthpb.HealthCheckResponse_ServingStatus{}
	hc := healthpb.NewHealthClient(d.client.Conn())
	for _, svc := range []string{"", "aura.v1.ExecutionService", "aura.v1.HookService"} {
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			return nil, err
		}
		out[svc] = resp.Status
	}
	return out, nil
}

// allHealth reports whether every name gRPC health answers for says want.
func allHealth(ctx context.Context, d *daemon, want healthpb.HealthCheckResponse_ServingStatus) bool {
	st, err := grpcHealth(ctx, d)
	if err != nil {
		return false
	}
	for _, s := range st {
		if s != want {
			return false
		}
	}
	return true
}

// Attack: the disk fills under a daemon that load balancers and the
// Kubernetes probes in deploy/ judge by gRPC health. While the store
// refuses new tasks, gRPC health must say NOT_SERVING (as /readyz says
// 503), so traffic goes elsewhere; once space returns, SERVING again.
func TestDiskFullTurnsGRPCHealthNotServingUntilSpaceReturns(t *testing.T) {
	data := mountTmpfs(t, "4m")
	d := startDaemon(t, daemonOpts{data: data, args: []string{"--admin-listen", "127.0.0.1:0"}})
	base := adminAddr(t, d)
	ctx := ctxT(t, 2*time.Minute)
	if st, err := grpcHealth(ctx, d); err != nil || !allHealth(ctx, d, healthpb.HealthCheckResponse_SERVING) {
		t.Fatalf("gRPC health before: %v %v; want SERVING", st, err)
	}
	filler := filepath.Join(data, "filler")
	fillDisk(t, filler)
	// The store learns the disk is full from a write that fails.
	waitFor(t, "a submission to be refused for disk full", 60*time.Second, func() bool {
		_, err := d.client.Submit(ctx, holdRequest(1))
		return status.Code(err) == codes.ResourceExhausted
	})
	if code, body := httpGet(t, base+"/readyz"); code != 503 {
		t.Fatalf("/readyz on a full disk: %d %q; want 503", code, body)
	}
	waitFor(t, "gRPC health to say NOT_SERVING on a full disk", 30*time.Second, func() bool {
		return allHealth(ctx, d, healthpb.HealthCheckResponse_NOT_SERVING)
	})
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "gRPC health to say SERVING once space is freed", 30*time.Second, func() bool {
		return allHealth(ctx, d, healthpb.HealthCheckResponse_SERVING)
	})
	if task := d.wait(ctx, d.submit(ctx, holdRequest(1))); task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("a task submitted once health says SERVING again: %s", task.Status)
	}
	if !strings.Contains(d.logs(), "NOT_SERVING while the store refuses writes") {
		t.Fatalf("the log does not say why gRPC health went NOT_SERVING:\n%s", d.logs())
	}
}

// Attack: the data directory of an idle daemon is deleted. Every write
// would be refused from then on, so gRPC health must say NOT_SERVING
// without waiting for one.
func TestDataDirDeletedTurnsGRPCHealthNotServing(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	ctx := ctxT(t, time.Minute)
	if st, err := grpcHealth(ctx, d); err != nil || !allHealth(ctx, d, healthpb.HealthCheckResponse_SERVING) {
		t.Fatalf("gRPC health before: %v %v; want SERVING", st, err)
	}
	if err := os.RemoveAll(d.data); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "gRPC health to say NOT_SERVING after rm -rf of the data directory", 30*time.Second, func() bool {
		return allHealth(ctx, d, healthpb.HealthCheckResponse_NOT_SERVING)
	})
}
