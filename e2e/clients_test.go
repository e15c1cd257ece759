package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aura-dev/aura/internal/testbin"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// TestGoClientExample builds examples/clients/go, a module of its own that
// imports Aura's client through a replace directive, as a user's program
// would, and runs it against a real daemon.
func TestGoClientExample(t *testing.T) {
	prog, err := testbin.BuildModule(t.TempDir(), "../examples/clients/go")
	if err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, daemonOpts{})
	cmd := exec.Command(prog, "--addr", d.addr, "--name", "gopher")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the Go client example failed: %v\n%s", err, out)
	}
	id := exampleTaskID(t, string(out))
	expectLines(t, string(out),
		"submitted "+id,
		"event task.queued",
		"event step.succeeded echo",
		"event task.finished",
		"status TASK_STATUS_SUCCEEDED",
		`result {"greeting":"hello, gopher"}`,
		"hook after_task_run "+id+" TASK_STATUS_SUCCEEDED",
	)
	// What it printed is what the daemon recorded.
	task, err := d.client.Get(ctxT(t, 30*time.Second), id)
	if err != nil || task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Errorf("GetTask(%s) = %v, %v; want SUCCEEDED", id, task.GetStatus(), err)
	}
}

// debianPython is the interpreter Debian's python3-grpcio and
// python3-grpc-tools install into; a python3 earlier on PATH (pyenv, a
// virtualenv) may lack them.
const debianPython = "/usr/bin/python3"

// TestPythonClientExample generates Python stubs from proto/ with `make
// python-stubs` into a temporary directory (nothing generated is committed)
// and runs examples/clients/python against a real daemon: submit, follow,
// wait, and a hook subscription that disconnects and resumes.
//
// It needs Debian's python3-grpcio and python3-grpc-tools (.ci/run installs
// them); without them it is skipped, unless AURA_REQUIRE_PYTHON is set, as
// in CI, where it must run.
func TestPythonClientExample(t *testing.T) {
	if out, err := exec.Command(debianPython, "-c", "import grpc, grpc_tools.protoc").CombinedOutput(); err != nil {
		msg := "needs " + debianPython + " with Debian's python3-grpcio and python3-grpc-tools (apt-get install python3-grpcio python3-grpc-tools): " +
			strings.TrimSpace(lastLine(string(out)))
		if os.Getenv("AURA_REQUIRE_PYTHON") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	gen := t.TempDir()
	stubsCmd := exec.Command("make", "--no-print-directory", "python-stubs", "BIN="+gen, "PYTHON="+debianPython)
	stubsCmd.Dir = ".."
	// Under `make test` the outer make's flags (a jobserver, -k, -n) are
	// in the environment; this make is a separate run.
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "MAKEFLAGS" && k != "MFLAGS" && k != "MAKELEVEL" {
			stubsCmd.Env = append(stubsCmd.Env, kv)
		}
	}
	if out, err := stubsCmd.CombinedOutput(); err != nil {
		t.Fatalf("make python-stubs: %v\n%s", err, out)
	}
	stubs := filepath.Join(gen, "python")

	d := startDaemon(t, daemonOpts{})
	cmd := exec.Command(debianPython, "../examples/clients/python/aura_example.py",
		"--addr", d.addr, "--stubs", stubs, "--name", "pythonista")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the Python client example failed: %v\n%s", err, out)
	}
	text := string(out)
	id := exampleTaskID(t, text)
	m := regexp.MustCompile(`(?m)^waited (\S+) FAILED \(failed in step explode: .*this task fails on purpose\)$`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no line saying demo/fail ended FAILED in step explode:\n%s", text)
	}
	failID := m[1]
	expectLines(t, text,
		"submitted "+id,
		"event task.queued",
		"event step.succeeded echo",
		"event task.finished",
		"status SUCCEEDED",
		`result {"greeting": "hello, pythonista"}`,
		"hook after_task_run "+id+" SUCCEEDED",
	)
	// The resumed subscription starts right after the sequence of the
	// first hook event: the failed task's after_task_run, nothing twice.
	resumed := regexp.MustCompile(`(?m)^resumed after (\d+): hook after_task_run (\S+) FAILED$`).FindStringSubmatch(text)
	if resumed == nil || resumed[2] != failID {
		t.Errorf("no resumed hook event for the failed task %s:\n%s", failID, text)
	}
	for _, tid := range []string{id, failID} {
		task, err := d.client.Get(ctxT(t, 30*time.Second), tid)
		if err != nil {
			t.Fatalf("GetTask(%s): %v", tid, err)
		}
		want := aurav1.TaskStatus_TASK_STATUS_SUCCEEDED
		if tid == failID {
			want = aurav1.TaskStatus_TASK_STATUS_FAILED
		}
		if task.Status != want {
			t.Errorf("GetTask(%s) = %s, want %s", tid, task.Status, want)
		}
	}
}

// exampleTaskID returns the id an example printed as "submitted ID".
func exampleTaskID(t *testing.T, out string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^submitted (\S+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no \"submitted ID\" line:\n%s", out)
	}
	return m[1]
}

// expectLines checks that out has each line, in this order.
func expectLines(t *testing.T, out string, want ...string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	i := 0
	for _, w := range want {
		for i < len(lines) && lines[i] != w {
			i++
		}
		if i == len(lines) {
			t.Fatalf("missing line %q (in this order: %q):\n%s", w, want, out)
		}
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndexByte(s, '\n')+1:]
}
