package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/aura-dev/aura/client"
	"github.com/aura-dev/aura/internal/auth"
	"github.com/aura-dev/aura/internal/testbin"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// A plugin that registers as an interceptor and then never reads: its
// HTTP/2 window fills after a few calls and aurad's sends to it block. Each
// task must still be decided within the interceptor's timeout (here: fail
// open, so it runs), and another interceptor and a hook subscriber must go
// on as if the stalled one were not there.
func TestAttackInterceptorThatNeverReads(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	ctx := ctxT(t, 2*time.Minute)

	// The smallest stream window gRPC allows (64 KiB), fixed (no BDP
	// growth), so a few large calls fill it.
	conn, err := grpc.NewClient("passthrough:///"+d.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stalled, err := aurav1.NewHookServiceClient(conn).Intercept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stalled.Send(&aurav1.InterceptReply{Msg: &aurav1.InterceptReply_Register{Register: &aurav1.InterceptRegistration{
		Name: "stalled", Timeout: durationpb.New(300 * time.Millisecond), FailOpen: true,
	}}}); err != nil {
		t.Fatal(err)
	}
	// From here on the stalled plugin never calls Recv.
	waitFor(t, "the stalled interceptor to register", 10*time.Second, func() bool {
		s, err := d.client.Exec.GetStats(ctx, &aurav1.GetStatsRequest{})
		return err == nil && s.Interceptors == 1
	})

	var (
		mu    sync.Mutex
		asked = map[string]bool{}
	)
	_, stop := interceptor(t, d, &aurav1.InterceptRegistration{Name: "policy", Timeout: durationpb.New(time.Minute)},
		func(c *aurav1.InterceptCall) *aurav1.InterceptDecision {
			mu.Lock()
			asked[c.Task.GetId()] = true
			mu.Unlock()
			return &aurav1.InterceptDecision{CallId: c.CallId, Allow: true}
		})
	defer stop()
	waitFor(t, "both interceptors to register", 10*time.Second, func() bool {
		s, err := d.client.Exec.GetStats(ctx, &aurav1.GetStatsRequest{})
		return err == nil && s.Interceptors == 2
	})

	sub, err := d.client.Hooks.Subscribe(ctx, &aurav1.SubscribeRequest{Hooks: []string{"after_task_run"}})
	if err != nil {
		t.Fatal(err)
	}
	// Subscribe is live from when aurad starts following, after the call
	// returns here: wait for that, then a first task's event proves it.
	waitFor(t, "the subscriber to be followed", 10*time.Second, func() bool {
		s, err := d.client.Exec.GetStats(ctx, &aurav1.GetStatsRequest{})
		return err == nil && s.HookSubscribers >= 1
	})
	first := d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"})
	if ev, err := sub.Recv(); err != nil || ev.Task.GetId() != first {
		t.Fatalf("subscriber: %v %v, want after_task_run of %s", ev, err, first)
	}

	// 24 calls of ~20 KiB each are several times the stalled plugin's
	// window: without a bound, later ones queue behind a Send that never
	// returns, and their tasks hang far past their own timeout.
	word := strings.Repeat("x", 20<<10)
	const n = 24
	ids := make([]string, n)
	for i := range ids {
		ids[i] = d.submit(ctx, &aurav1.SubmitRequest{
			Task: "e2e/echo", Inputs: mustStruct(t, map[string]any{"n": i, "word": word}), Timeout: durationpb.New(time.Minute),
		})
	}
	waitCtx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	for _, id := range ids {
		task, err := d.client.Wait(waitCtx, id)
		if err != nil {
			t.Fatalf("task %s did not finish: %v (an interceptor that stopped reading holds tasks)", id, err)
		}
		if task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
			t.Fatalf("task %s: %s %v; want SUCCEEDED (the stalled interceptor fails open)", id, task.Status, task.Error)
		}
	}
	mu.Lock()
	for _, id := range ids {
		if !asked[id] {
			t.Errorf("the well-behaved interceptor was never asked about %s", id)
		}
	}
	mu.Unlock()
	got := map[string]bool{}
	for len(got) < n {
		ev, err := sub.Recv()
		if err != nil {
			t.Fatalf("subscriber after %d of %d events: %v", len(got), n, err)
		}
		got[ev.Task.GetId()] = true
	}
	for _, id := range ids {
		if !got[id] {
			t.Errorf("subscriber missed after_task_run of %s", id)
		}
	}
	if !strings.Contains(d.logs(), "interceptor=stalled") {
		t.Errorf("aurad did not log the stalled interceptor failing open")
	}
}

// A second aurad pointed at a live daemon's unix socket must refuse to
// start, naming the socket, and leave the live one reachable; a socket file
// left by a daemon that was killed is replaced.
func TestAttackSecondDaemonOnALiveSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "aurad.sock")
	listen := "unix://" + sock
	first := startDaemon(t, daemonOpts{args: []string{"--listen", listen}})
	ctx := ctxT(t, 2*time.Minute)
	viaSocket := func(what string) {
		t.Helper()
		c := dialAs(t, listen)
		resp, err := c.Submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"})
		if err != nil {
			t.Fatalf("%s: Submit over the socket: %v", what, err)
		}
		if task, err := c.Wait(ctx, resp.TaskId); err != nil || task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
			t.Fatalf("%s: task over the socket: %v %v", what, task.GetStatus(), err)
		}
	}
	viaSocket("before the second daemon")

	// Its own data directory, so nothing but the socket is shared.
	second := exec.Command(bin.aurad, "serve", "--plans", first.plans, "--data", t.TempDir(), "--listen", listen, "--cpu-workers", "-1")
	var stderr testbin.SyncBuffer
	second.Stderr = &stderr
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- second.Wait() }()
	deadline := time.After(60 * time.Second)
	for refused := false; !refused; {
		select {
		case err := <-exited:
			if err == nil {
				t.Fatalf("the second aurad exited 0; want a refusal:\n%s", stderr.String())
			}
			refused = true
		case <-deadline:
			_ = second.Process.Kill()
			<-exited
			t.Fatalf("the second aurad did not refuse the live socket within 60s:\n%s", stderr.String())
		case <-time.After(20 * time.Millisecond):
			if strings.Contains(stderr.String(), "aurad serving") {
				_ = second.Process.Kill()
				<-exited
				t.Fatalf("the second aurad took over the live socket:\n%s", stderr.String())
			}
		}
	}
	msg := stderr.String()
	if strings.Contains(msg, "aurad serving") || !strings.Contains(msg, sock) || !strings.Contains(msg, "in use") || !strings.Contains(msg, "stop that daemon") {
		t.Fatalf("the second aurad's error should name the socket, say it is in use and what to do:\n%s", msg)
	}
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("the live socket is gone after the refused start: %v", err)
	}
	viaSocket("after the refused second daemon")

	// A daemon that dies leaves its socket file behind; the next start
	// replaces it.
	first.kill()
	if fi, err := os.Lstat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("expected a stale socket file after kill -9: %v", err)
	}
	startDaemonIn(t, first.plans, first.data, "--listen", listen)
	viaSocket("after replacing the stale socket")
}

// Revoking a token with SIGHUP ends the streams it holds open, at once:
// a hook subscriber, an event stream, an interceptor and a SubmitStream.
// A token whose roles changed has its streams ended too (it reconnects
// with its new rights); a token the reload left alone keeps streaming.
func TestAttackRevokedTokenKeepsItsStreams(t *testing.T) {
	tokens := func(watcherRoles, narrowedRoles string, withWatcher bool) []byte {
		var b strings.Builder
		b.WriteString("tokens:\n")
		fmt.Fprintf(&b, "  - {name: ops, sha256: %s, roles: [submit, read, cancel, hooks, admin]}\n", auth.HashToken("ops"))
		if withWatcher {
			fmt.Fprintf(&b, "  - {name: watcher, sha256: %s, roles: [%s]}\n", auth.HashToken("watcher"), watcherRoles)
		}
		fmt.Fprintf(&b, "  - {name: narrowed, sha256: %s, roles: [%s]}\n", auth.HashToken("narrowed"), narrowedRoles)
		return []byte(b.String())
	}
	file := filepath.Join(t.TempDir(), "tokens.yaml")
	if err := os.WriteFile(file, tokens("submit, read, hooks", "read, hooks", true), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, daemonOpts{args: []string{"--auth-tokens", file}})
	ctx := ctxT(t, 2*time.Minute)
	ops := dialAs(t, d.addr, client.WithToken("ops"))
	watcher := dialAs(t, d.addr, client.WithToken("watcher"))
	narrowed := dialAs(t, d.addr, client.WithToken("narrowed"))

	submit := func() string {
		t.Helper()
		resp, err := ops.Submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ops.Wait(ctx, resp.TaskId); err != nil {
			t.Fatal(err)
		}
		return resp.TaskId
	}
	subscribe := func(c *client.Client) aurav1.HookService_SubscribeClient {
		t.Helper()
		s, err := c.Hooks.Subscribe(ctx, &aurav1.SubscribeRequest{Hooks: []string{"after_task_run"}})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	opsSub, watcherSub, narrowedSub := subscribe(ops), subscribe(watcher), subscribe(narrowed)
	events, err := watcher.Exec.Stream(ctx, &aurav1.StreamRequest{})
	if err != nil {
		t.Fatal(err)
	}
	intercept, err := watcher.Hooks.Intercept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := intercept.Send(&aurav1.InterceptReply{Msg: &aurav1.InterceptReply_Register{Register: &aurav1.InterceptRegistration{
		Name: "watcher-policy", Plan: "demo", Timeout: durationpb.New(time.Minute),
	}}}); err != nil {
		t.Fatal(err)
	}
	submits, err := watcher.Exec.SubmitStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := submits.Send(&aurav1.SubmitRequest{Task: "e2e/quick"}); err != nil {
		t.Fatal(err)
	}
	if r, err := submits.Recv(); err != nil || r.GetError() != nil {
		t.Fatalf("SubmitStream before the reload: %v %v", r.GetError(), err)
	}
	waitFor(t, "the watcher's interceptor to register", 10*time.Second, func() bool {
		s, err := ops.Exec.GetStats(ctx, &aurav1.GetStatsRequest{})
		return err == nil && s.Interceptors == 1
	})
	// Every subscriber sees a task before the reload: they are all live
	// (three Subscribe and one Stream follow the event log).
	waitFor(t, "the streams to be followed", 10*time.Second, func() bool {
		s, err := ops.Exec.GetStats(ctx, &aurav1.GetStatsRequest{})
		return err == nil && s.HookSubscribers >= 4
	})
	id := submit()
	for name, s := range map[string]aurav1.HookService_SubscribeClient{"ops": opsSub, "watcher": watcherSub, "narrowed": narrowedSub} {
		for {
			ev, err := s.Recv()
			if err != nil {
				t.Fatalf("%s's subscriber before the reload: %v", name, err)
			}
			if ev.Task.GetId() == id {
				break
			}
		}
	}

	// watcher is removed; narrowed loses the hooks role.
	if err := os.WriteFile(file, tokens("", "read", false), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the tokens file to reload", 10*time.Second, func() bool {
		return strings.Contains(d.logs(), "tokens file reloaded")
	})
	after := submit()

	ended := func(what string, recv func() error, want codes.Code) {
		t.Helper()
		for {
			err := recv()
			if err == nil {
				continue // something sent before the reload
			}
			if status.Code(err) != want {
				t.Fatalf("%s after the reload: %v; want %s", what, err, want)
			}
			return
		}
	}
	// After its end, the watcher's subscriber must not see the task
	// submitted after the reload.
	ended("watcher's Subscribe", func() error {
		ev, err := watcherSub.Recv()
		if err == nil && ev.Task.GetId() == after {
			t.Fatalf("the revoked token's subscriber received a task submitted after the reload")
		}
		return err
	}, codes.Unauthenticated)
	ended("watcher's Stream", func() error {
		ev, err := events.Recv()
		if err == nil && ev.TaskId == after {
			t.Fatalf("the revoked token's event stream received a task submitted after the reload")
		}
		return err
	}, codes.Unauthenticated)
	ended("watcher's Intercept", func() error { _, err := intercept.Recv(); return err }, codes.Unauthenticated)
	ended("watcher's SubmitStream", func() error { _, err := submits.Recv(); return err }, codes.Unauthenticated)
	ended("narrowed's Subscribe", func() error { _, err := narrowedSub.Recv(); return err }, codes.PermissionDenied)
	waitFor(t, "the revoked interceptor to be removed", 10*time.Second, func() bool {
		s, err := ops.Exec.GetStats(ctx, &aurav1.GetStatsRequest{})
		return err == nil && s.Interceptors == 0
	})
	for {
		ev, err := opsSub.Recv()
		if err != nil {
			t.Fatalf("ops's subscriber (its token unchanged) after the reload: %v", err)
		}
		if ev.Task.GetId() == after {
			break
		}
	}
}
