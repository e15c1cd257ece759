package e2e

import (
	"bufio"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aura-dev/aura/client"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"

	"github.com/aura-dev/aura/internal/testbin"
)

var bin struct {
	aurad, auractl string
}

func TestMain(m *testing.M) {
	if spec := os.Getenv(idleAttackerEnv); spec != "" {
		os.Exit(idleAttacker(spec)) // a child process of the idle-connection tests
	}
	testbin.Main(m, map[string]*string{"../cmd/aurad": &bin.aurad, "../cmd/auractl": &bin.auractl})
}

// daemon is one aurad child process.
type daemon struct {
	t       testing.TB
	cmd     *exec.Cmd
	addr    string
	plans   string
	data    string
	client  *client.Client
	exited  chan struct{}
	exitErr error
	logMu   sync.Mutex
	log     strings.Builder
}

type daemonOpts struct {
	plans []string // directories under testdata/plans or examples/plans to copy in
	data  string   // reuse a data dir (restart); "" makes a new one
	args  []string
}

var listenRE = regexp.MustCompile(`msg="aurad serving" listen=(\S+)`)

// startDaemon copies the plans into a temp dir and starts aurad on a free
// loopback port, returning once it serves.
func startDaemon(t *testing.T, o daemonOpts) *daemon {
	t.Helper()
	plans := t.TempDir()
	if len(o.plans) == 0 {
		o.plans = []string{"../examples/plans/demo", "testdata/plans/e2e"}
	}
	for _, src := range o.plans {
		copyDir(t, src, filepath.Join(plans, filepath.Base(src)))
	}
	data := o.data
	if data == "" {
		data = t.TempDir()
	}
	return startDaemonIn(t, plans, data, o.args...)
}

func startDaemonIn(t testing.TB, plans, data string, args ...string) *daemon {
	t.Helper()
	d := &daemon{t: t, plans: plans, data: data, exited: make(chan struct{})}
	argv := append([]string{"serve", "--plans", plans, "--data", data, "--listen", "127.0.0.1:0",
		"--cpu-workers", "1", "--kill-grace", "2s", "--shutdown-grace", "5s", "--ui-listen", ""}, args...)
	d.cmd = exec.Command(bin.aurad, argv...)
	d.cmd.Env = append(os.Environ(), "AURA_E2E_SECRET=do-not-leak", "GORACE=atexit_sleep_ms=0")
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			d.logMu.Lock()
			d.log.WriteString(line + "\n")
			d.logMu.Unlock()
			if m := listenRE.FindStringSubmatch(line); m != nil && !sent {
				addr <- m[1]
				sent = true
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	go func() {
		d.exitErr = d.cmd.Wait()
		close(d.exited)
	}()
	select {
	case d.addr = <-addr:
	case <-d.exited:
		t.Fatalf("aurad exited before serving: %v\n%s", d.exitErr, d.logs())
	case <-time.After(60 * time.Second):
		d.kill()
		t.Fatalf("aurad did not start serving within 60s:\n%s", d.logs())
	}
	c, err := client.Dial(d.addr)
	if err != nil {
		t.Fatal(err)
	}
	d.client = c
	t.Cleanup(func() {
		c.Close()
		d.stop()
		if t.Failed() {
			t.Logf("aurad log:\n%s", d.logs())
		}
	})
	return d
}

func (d *daemon) logs() string {
	d.logMu.Lock()
	defer d.logMu.Unlock()
	return d.log.String()
}

// stop sends SIGTERM and waits for a clean exit.
func (d *daemon) stop() {
	select {
	case <-d.exited:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		d.t.Errorf("aurad did not stop within 30s of SIGTERM")
		d.kill()
	}
}

// kill sends SIGKILL: the crash case.
func (d *daemon) kill() {
	_ = d.cmd.Process.Kill()
	<-d.exited
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func (d *daemon) submit(ctx context.Context, req *aurav1.SubmitRequest) string {
	d.t.Helper()
	resp, err := d.client.Submit(ctx, req)
	if err != nil {
		d.t.Fatalf("Submit(%s): %v", req.Task, err)
	}
	return resp.TaskId
}

func (d *daemon) wait(ctx context.Context, id string) *aurav1.Task {
	d.t.Helper()
	task, err := d.client.Wait(ctx, id)
	if err != nil {
		d.t.Fatalf("Wait(%s): %v", id, err)
	}
	return task
}

// waitFor polls cond until it holds or the deadline passes: the tree's one
// wait helper, under the short name the e2e tests use.
var waitFor = testbin.WaitFor

func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if de.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// processGone reports whether pid no longer exists: killed and reaped.
func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// startDaemonB starts a daemon for a benchmark on the standard test plans.
func startDaemonB(b *testing.B, args ...string) *daemon {
	b.Helper()
	plans := b.TempDir()
	for _, src := range []string{"../examples/plans/demo", "testdata/plans/e2e"} {
		copyDir(b, src, filepath.Join(plans, filepath.Base(src)))
	}
	return startDaemonIn(b, plans, b.TempDir(), args...)
}
