package e2e

import (
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/aura-dev/aura/client"
	"github.com/aura-dev/aura/internal/auth"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

var bothLanes = []aurav1.ExecutionMode{aurav1.ExecutionMode_EXECUTION_MODE_IO, aurav1.ExecutionMode_EXECUTION_MODE_CPU}

// gitStatus lists what git sees changed or added (ignored files included)
// under dir; the test is skipped outside a git checkout.
func gitStatus(t *testing.T, dir string) string {
	t.Helper()
	out, err := exec.Command("git", "-C", dir, "status", "--porcelain", "--ignored", "--untracked-files=all", "--", ".").CombinedOutput()
	if err != nil {
		t.Skipf("git status in %s: %v: %s", dir, err, out)
	}
	return string(out)
}

// Every example plan, run by the real daemon straight from examples/plans
// on both lanes, leaves the source tree as git has it: what the tasks write
// goes to <data>/work/<plan>.
func TestExamplesLeaveTheSourceTreeClean(t *testing.T) {
	examples, err := filepath.Abs("../examples/plans")
	if err != nil {
		t.Fatal(err)
	}
	// Edits to the examples are fine; files nobody committed are not, since
	// the daemon would load or read them.
	before := gitStatus(t, examples)
	for line := range strings.Lines(before) {
		if strings.HasPrefix(line, "??") || strings.HasPrefix(line, "!!") {
			t.Fatalf("examples/plans holds files git does not track; remove them (left by earlier runs?):\n%s", before)
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("hello aura"))
	}))
	defer srv.Close()
	// The web plan fetches the test server on loopback, which http.request
	// refuses unless the operator allows it.
	d := startDaemonIn(t, examples, t.TempDir(), "--http-allow-hosts", "127.0.0.1", "--resources", "../examples/resources.yaml")
	ctx := ctxT(t, 3*time.Minute)
	runs := []struct {
		task   string
		inputs map[string]any
		want   aurav1.TaskStatus
	}{
		{"demo/hello", nil, aurav1.TaskStatus_TASK_STATUS_SUCCEEDED},
		{"demo/count", nil, aurav1.TaskStatus_TASK_STATUS_SUCCEEDED},
		{"demo/fail", nil, aurav1.TaskStatus_TASK_STATUS_FAILED},
		{"demo/slow", map[string]any{"seconds": 0}, aurav1.TaskStatus_TASK_STATUS_SUCCEEDED},
		{"web/check", map[string]any{"url": srv.URL, "must_contain": "aura"}, aurav1.TaskStatus_TASK_STATUS_SUCCEEDED},
		{"web/check_many", map[string]any{"urls": []any{srv.URL, srv.URL + "/a"}}, aurav1.TaskStatus_TASK_STATUS_SUCCEEDED},
		{"files/cleanup", nil, aurav1.TaskStatus_TASK_STATUS_SUCCEEDED},
		{"files/write_and_hash", nil, aurav1.TaskStatus_TASK_STATUS_SUCCEEDED},
		{"files/batch", map[string]any{"count": 3}, aurav1.TaskStatus_TASK_STATUS_SUCCEEDED},
		{"stateful/play", map[string]any{"rounds": 2}, aurav1.TaskStatus_TASK_STATUS_SUCCEEDED},
		{"stateful/logout", nil, aurav1.TaskStatus_TASK_STATUS_SUCCEEDED},
		{"devicefarm/post_message", nil, aurav1.TaskStatus_TASK_STATUS_SUCCEEDED},
		{"devicefarm/post_message_on", map[string]any{"serial": "R58M123"}, aurav1.TaskStatus_TASK_STATUS_SUCCEEDED},
		{"devicefarm/lock", nil, aurav1.TaskStatus_TASK_STATUS_SUCCEEDED},
	}
	for _, mode := range bothLanes {
		for _, r := range runs {
			task := d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: r.task, Inputs: mustStruct(t, r.inputs), ExecutionMode: mode}))
			if task.Status != r.want {
				t.Errorf("%s on %s: %s %v, want %s", r.task, mode, task.Status, task.Error, r.want)
			}
			if r.task == "stateful/play" && !strings.Contains(task.Result.GetStructValue().AsMap()["log"].(string), "round 2\n") {
				t.Errorf("stateful/play on %s: log %v", mode, task.Result)
			}
		}
	}
	if after := gitStatus(t, examples); after != before {
		t.Errorf("running the examples changed examples/plans:\n%s", after)
	}
	for _, p := range []string{"stateful/state/rounds.log", "files/out/batch/part-2.txt", "files/out/batch", "devicefarm/devices/R58M123/messages.log"} {
		if _, err := os.Stat(filepath.Join(d.data, "work", p)); err != nil {
			t.Errorf("the examples' output is not in the data directory: %v", err)
		}
	}
}

// treeOf maps every path under dir to its content ("" for directories).
func treeOf(t *testing.T, dir string) map[string]string {
	t.Helper()
	tree := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if e.IsDir() {
			tree[rel+"/"] = ""
			return nil
		}
		b, err := os.ReadFile(p)
		tree[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// A submitter allowed only to run one plan's tasks tries to become able to
// run any command: a task that writes where its caller says is pointed at
// the plan's own tasks/ and plan.yaml, then the plans are reloaded. The
// writes land in the plan's workspace, the plan's source is unchanged, no
// new task appears, and reloads and a fresh start still work.
func TestSecurityTaskCannotRewriteItsPlan(t *testing.T) {
	tokens := writeTokens(t, fmt.Sprintf("  - {name: sandbox-submitter, sha256: %s, roles: [submit, read], plans: [sandbox]}\n", auth.HashToken("sandbox-submitter")))
	d := startDaemon(t, daemonOpts{plans: []string{"testdata/plans/sandbox"}, args: []string{"--auth-tokens", tokens}})
	ctx := ctxT(t, 2*time.Minute)
	source := filepath.Join(d.plans, "sandbox")
	before := treeOf(t, source)
	attacker := dialAs(t, d.addr, client.WithToken("sandbox-submitter"))
	ops := dialAs(t, d.addr, client.WithToken("ops"))
	marker := filepath.Join(t.TempDir(), "pwned")
	evil := fmt.Sprintf("steps:\n  - action: exec\n    params: {argv: [sh, -c, 'id > %s']}\n", marker)
	for _, mode := range bothLanes {
		lane := strings.ToLower(strings.TrimPrefix(mode.String(), "EXECUTION_MODE_"))
		for path, content := range map[string]string{
			"tasks/evil_" + lane + ".yaml": evil,
			"tasks/../tasks/write.yaml":    evil,
			"plan.yaml":                    "title: [this is not\n  valid: yaml\n",
		} {
			resp, err := attacker.Submit(ctx, &aurav1.SubmitRequest{Task: "sandbox/write_any", ExecutionMode: mode,
				Inputs: mustStruct(t, map[string]any{"path": path, "content": content})})
			if err != nil {
				t.Fatalf("Submit write_any %s: %v", path, err)
			}
			task, err := attacker.Wait(ctx, resp.TaskId)
			if err != nil {
				t.Fatal(err)
			}
			// Writing is allowed; it goes to the workspace.
			if task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
				t.Fatalf("write_any %s on %s: %s %v", path, mode, task.Status, task.Error)
			}
		}
	}
	if after := treeOf(t, source); !reflect.DeepEqual(after, before) {
		t.Fatalf("a task changed the plan's source:\nbefore %q\nafter  %q", before, after)
	}
	if b, err := os.ReadFile(filepath.Join(d.data, "work", "sandbox", "tasks", "evil_cpu.yaml")); err != nil || string(b) != evil {
		t.Errorf("the write did not land in the workspace: %q, %v", b, err)
	}
	// Both ways of reloading work and load nothing the task wrote.
	if _, err := ops.Exec.ReloadPlans(ctx, &aurav1.ReloadPlansRequest{}); err != nil {
		t.Fatalf("ReloadPlans after the writes: %v", err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the SIGHUP reload", 20*time.Second, func() bool {
		return strings.Count(d.logs(), "plans reloaded") >= 2
	})
	if strings.Contains(d.logs(), "plan reload failed") {
		t.Fatalf("a reload failed:\n%s", d.logs())
	}
	plans, err := ops.Exec.ListPlans(ctx, &aurav1.ListPlansRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range plans.Plans {
		for _, task := range p.Tasks {
			if strings.Contains(task.Id, "evil") {
				t.Errorf("the written task %s was loaded", task.Id)
			}
		}
	}
	for _, lane := range []string{"io", "cpu"} {
		_, err := attacker.Submit(ctx, &aurav1.SubmitRequest{Task: "sandbox/evil_" + lane})
		if code := status.Code(err); code != codes.NotFound && code != codes.InvalidArgument {
			t.Errorf("Submit sandbox/evil_%s: %v, want NotFound", lane, err)
		}
	}
	resp, err := attacker.Submit(ctx, &aurav1.SubmitRequest{Task: "sandbox/write", Inputs: mustStruct(t, map[string]any{"path": "ok.txt"})})
	if err != nil {
		t.Fatal(err)
	}
	if task, err := attacker.Wait(ctx, resp.TaskId); err != nil || task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Errorf("sandbox/write after the reloads ran the written definition: %s %v %v", task.GetStatus(), task.GetError(), err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the written task ran a command")
	}
	// A fresh aurad on the same plans and data starts.
	d.stop()
	startDaemonIn(t, d.plans, d.data, "--auth-tokens", tokens)
}

// exec's dir is opened once and the command started from that descriptor:
// a directory in the workspace swapped for a symlink to /etc over and over
// never becomes a command's working directory, on either lane.
func TestSecurityExecDirSwapRace(t *testing.T) {
	d := startDaemon(t, daemonOpts{plans: []string{"testdata/plans/sandbox"}})
	ctx := ctxT(t, 3*time.Minute)
	// Write once so the workspace exists, then race on a directory in it.
	d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: "sandbox/write", Inputs: mustStruct(t, map[string]any{"path": "d/keep"})}))
	workspace := filepath.Join(d.data, "work", "sandbox")
	dir := filepath.Join(workspace, "d")
	swapCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// The symlink is held briefly, the directory longer, so commands
		// start in the directory often and the swap happens under them.
		for swapCtx.Err() == nil {
			os.RemoveAll(dir)
			os.Symlink("/etc", dir)
			time.Sleep(100 * time.Microsecond)
			os.Remove(dir)
			os.Mkdir(dir, 0o755)
			time.Sleep(time.Millisecond)
		}
	}()
	const want, maxRuns = 15, 1500 // per lane
	for _, mode := range bothLanes {
		inside, inEtc, runs := 0, 0, 0
		for ; runs < maxRuns && inside < want; runs++ {
			task := d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: "sandbox/cwd", ExecutionMode: mode,
				Inputs: mustStruct(t, map[string]any{"dir": "d"})}))
			if task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
				continue // refused: the symlink, or no directory at that moment
			}
			switch cwd := task.Result.GetStringValue(); {
			case strings.HasPrefix(cwd, "/etc"):
				inEtc++
			case strings.HasPrefix(cwd, workspace+"/"):
				inside++
			default:
				t.Errorf("cwd %q: neither the workspace nor /etc", cwd)
			}
		}
		t.Logf("%s: %d tasks, %d ran in the workspace's directory, %d in /etc", mode, runs, inside, inEtc)
		if inEtc > 0 {
			t.Errorf("%s: %d of %d tasks ran with cwd /etc", mode, inEtc, runs)
		}
		if inside < want {
			t.Errorf("%s: only %d of %d tasks ran in the directory: the race was not exercised", mode, inside, runs)
		}
	}
	stop()
	wg.Wait()
}

// A command run in the workspace links the plan's own source files into
// it, then file.write and file.delete are pointed at the links. Symbolic
// links lead out of the workspace and are refused; a hard link is the
// source file itself under a workspace name, which os.Root cannot see, so
// file.write refuses a file with other hard links. The plan's source stays
// as it was, on both lanes.
func TestSecurityLinksInTheWorkspaceCannotChangeThePlanSource(t *testing.T) {
	d := startDaemon(t, daemonOpts{plans: []string{"testdata/plans/sandbox"}})
	ctx := ctxT(t, 2*time.Minute)
	source := filepath.Join(d.plans, "sandbox")
	before := treeOf(t, source)
	run := func(mode aurav1.ExecutionMode, task string, in map[string]any) *aurav1.Task {
		t.Helper()
		return d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: task, Inputs: mustStruct(t, in), ExecutionMode: mode}))
	}
	const evil = "steps:\n  - action: exec\n    params: {argv: [id]}\n"
	for i, mode := range bothLanes {
		for j, c := range []struct{ task, target, want string }{
			{"sandbox/link", filepath.Join(source, "tasks", "write.yaml"), "escapes"},
			{"sandbox/link", "../../../" + filepath.Base(d.plans) + "/sandbox/plan.yaml", "escapes"},
			{"sandbox/link", filepath.Join(source, "tasks"), "escapes"},
			{"sandbox/hardlink", filepath.Join(source, "tasks", "write.yaml"), "hard links"},
			{"sandbox/hardlink", filepath.Join(source, "plan.yaml"), "hard links"},
		} {
			name := fmt.Sprintf("link%d%d", i, j)
			if task := run(mode, c.task, map[string]any{"target": c.target, "name": name}); task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
				t.Fatalf("%s %s -> %s: %s %v", c.task, name, c.target, task.Status, task.GetError())
			}
			task := run(mode, "sandbox/write_any", map[string]any{"path": name, "content": evil})
			if task.Status != aurav1.TaskStatus_TASK_STATUS_FAILED || !strings.Contains(task.GetError().GetMessage(), c.want) {
				t.Errorf("%s: file.write through %s (%s to %s): %s %q; want FAILED saying %q",
					mode, name, c.task, c.target, task.Status, task.GetError().GetMessage(), c.want)
			}
			if c.target == filepath.Join(source, "tasks") {
				// Through a symbolic link to the source's tasks/: a new task
				// file, and the removal of an existing one.
				if task := run(mode, "sandbox/write_any", map[string]any{"path": name + "/evil.yaml", "content": evil}); task.Status != aurav1.TaskStatus_TASK_STATUS_FAILED {
					t.Errorf("%s: file.write %s/evil.yaml through a link to tasks/: %s", mode, name, task.Status)
				}
				run(mode, "sandbox/delete", map[string]any{"path": name + "/write.yaml"})
			}
			// Deleting the link removes the link, never what it names.
			if task := run(mode, "sandbox/delete", map[string]any{"path": name}); task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
				t.Errorf("%s: file.delete %s: %s %v", mode, name, task.Status, task.GetError())
			}
		}
	}
	if after := treeOf(t, source); !reflect.DeepEqual(after, before) {
		t.Fatalf("a task changed the plan's source through a link:\nbefore %q\nafter  %q", before, after)
	}
	// A file written normally, and rewritten, still works.
	for range 2 {
		if task := run(aurav1.ExecutionMode_EXECUTION_MODE_IO, "sandbox/write_any", map[string]any{"path": "plain.txt", "content": "x"}); task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
			t.Fatalf("an ordinary file.write: %s %v", task.Status, task.GetError())
		}
	}
}
