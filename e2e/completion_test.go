//go:build linux

package e2e

// auractl's interactive side: shell completion fed by a real daemon, and the
// live progress line `submit --follow` draws on a real terminal. Linux only:
// the terminal is a pseudo-terminal opened with Linux ioctls.

import (
	"bytes"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aura-dev/aura/internal/testbin"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

func TestCompletionScriptsGenerate(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		t.Run(sh, func(t *testing.T) {
			out, err := exec.Command(bin.auractl, "completion", sh).Output()
			if err != nil {
				t.Fatalf("auractl completion %s: %v", sh, err)
			}
			// Every cobra script asks the binary itself for candidates.
			if !bytes.Contains(out, []byte("__complete")) || !bytes.Contains(out, []byte("auractl")) {
				t.Fatalf("completion %s does not look like a completion script:\n%.400s", sh, out)
			}
			// The shell itself must accept the script, when it is installed.
			shell, err := exec.LookPath(sh)
			if err != nil {
				t.Logf("%s not installed: syntax not checked", sh)
				return
			}
			check := exec.Command(shell, "-n")
			check.Stdin = bytes.NewReader(out)
			if msg, err := check.CombinedOutput(); err != nil {
				t.Fatalf("%s -n rejects the script: %v\n%s", sh, err, msg)
			}
		})
	}
	if out, err := exec.Command(bin.auractl, "completion", "tcsh").CombinedOutput(); err == nil {
		t.Fatalf("completion tcsh succeeded:\n%s", out)
	}
}

// complete runs `auractl __complete ARGS...` (what the shell scripts run on
// <TAB>) and returns the candidates, without descriptions, and the directive.
func complete(t *testing.T, d *daemon, args ...string) (map[string]string, string) {
	t.Helper()
	out, code := auractl(t, d, append([]string{"__complete"}, args...)...)
	if code != 0 {
		t.Fatalf("__complete %v: exit %d\n%s", args, code, out)
	}
	cands := map[string]string{}
	directive := ""
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		switch {
		case strings.HasPrefix(l, ":"):
			directive = l
		case strings.HasPrefix(l, "Completion ended"):
		default:
			name, desc, _ := strings.Cut(l, "\t")
			cands[name] = desc
		}
	}
	return cands, directive
}

func TestCompletionOfTaskNamesAndIDs(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	ctx := ctxT(t, 60*time.Second)

	names, directive := complete(t, d, "submit", "")
	if names["demo/hello"] != "Say hello" || names["e2e/quick"] != "A no-op" {
		t.Fatalf("submit completion lacks the daemon's tasks: %v", names)
	}
	if directive != ":4" { // no file names either
		t.Fatalf("directive %q, want :4 (no file completion)", directive)
	}
	names, _ = complete(t, d, "submit", "e2e/q")
	if len(names) != 1 || names["e2e/quick"] == "" {
		t.Fatalf("submit e2e/q completes to %v, want only e2e/quick", names)
	}

	done := d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"})
	d.wait(ctx, done)
	held := d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/hold", Inputs: mustStruct(t, map[string]any{"ms": 60000})})
	waitFor(t, "the held task to run", 30*time.Second, func() bool {
		task, err := d.client.Get(ctx, held)
		return err == nil && task.Status == aurav1.TaskStatus_TASK_STATUS_RUNNING
	})
	ids, _ := complete(t, d, "get", "")
	if ids[done] != "e2e/quick SUCCEEDED" || ids[held] != "e2e/hold RUNNING" {
		t.Fatalf("get completion: %v, want %s and %s", ids, done, held)
	}
	if ids, _ := complete(t, d, "logs", ""); ids[done] == "" {
		t.Fatalf("logs completion: %v, want %s", ids, done)
	}
	ids, _ = complete(t, d, "cancel", "")
	if _, ok := ids[done]; ok || ids[held] == "" {
		t.Fatalf("cancel completion: %v, want the running %s and not the finished %s", ids, held, done)
	}
	if _, err := d.client.Cancel(ctx, held, "test over"); err != nil {
		t.Fatal(err)
	}

	// No daemon: no candidates, no error, no hang.
	out, code := auractl(t, &daemon{addr: "127.0.0.1:1"}, "__complete", "submit", "")
	if code != 0 || strings.Contains(out, "demo/hello") || !strings.Contains(out, ":4") {
		t.Fatalf("completion without a daemon: exit %d\n%s", code, out)
	}
}

func TestFollowShowsProgressOnATerminal(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	master, slave := testbin.OpenPTY(t)
	defer master.Close()
	cmd := exec.Command(bin.auractl, "--addr", d.addr, "submit", "demo/slow", "--input", "seconds=1", "--follow")
	cmd.Stdout, cmd.Stderr = slave, slave
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	read := make(chan string, 1)
	go func() {
		var b bytes.Buffer
		_, _ = io.Copy(&b, master) // ends with EIO once the slave side is closed
		read <- b.String()
	}()
	err := cmd.Wait()
	slave.Close()
	out := <-read
	if err != nil {
		t.Fatalf("submit --follow on a terminal: %v\n%q", err, out)
	}
	// The total shows as ? until the daemon lists pending steps in the
	// task.running snapshot; either is right.
	for _, want := range []string{
		`step\.started  nap`,                          // the event lines are kept
		`\x1b\[2KRUNNING  step nap  0/(\?|2) steps`,   // the status line, redrawn in place
		`\x1b\[2KRUNNING  step sleep  1/(\?|2) steps`, // the next step, one step done
		`SUCCEEDED  2/2 steps`,                        // the final summary
		`Status:    SUCCEEDED`,                        // then the task as before
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("terminal output lacks %s:\n%q", want, out)
		}
	}
}
