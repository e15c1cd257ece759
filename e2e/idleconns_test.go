package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/aura-dev/aura/client"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// The idle-connection attack: open connections, send the HTTP/2 client
// preface and an empty SETTINGS frame (so the connection is past gRPC's
// handshake timeout), then say nothing more. The attackers run as child
// processes (this test binary again), each with its own descriptor limit,
// so together they can hold more connections than aurad may open.

// h2Hello is the HTTP/2 client preface followed by an empty SETTINGS frame.
var h2Hello = append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0, 0, 0, 4, 0, 0, 0, 0, 0)

const idleAttackerEnv = "AURA_E2E_IDLE_ATTACKER"

// idleAttacker is this test binary run as an attacker process (see
// TestMain), told addr,from,n in AURA_E2E_IDLE_ATTACKER: it opens n
// connections to addr from the local IP from, then, for every line on its
// stdin, prints how many aurad still holds open; it exits when stdin closes.
func idleAttacker(spec string) int {
	parts := strings.Split(spec, ",")
	if len(parts) != 3 {
		fmt.Fprintf(os.Stderr, "%s: want addr,from,n, got %q\n", idleAttackerEnv, spec)
		return 2
	}
	addr, from := parts[0], parts[1]
	n, _ := strconv.Atoi(parts[2])
	d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	var conns []net.Conn
	for range n {
		c, err := d.Dial("tcp", addr)
		if err == nil {
			if _, err = c.Write(h2Hello); err != nil {
				c.Close()
			}
		}
		if err == nil {
			conns = append(conns, c)
		}
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		held := 0
		for _, c := range conns {
			if stillOpen(c) {
				held++
			}
		}
		fmt.Printf("held %d\n", held)
	}
	return 0
}

// stillOpen reads what c has without blocking: closed by the peer reads
// as end of file or a reset (after aurad's SETTINGS frame, if it sent
// one); open reads as nothing more to read yet.
func stillOpen(c net.Conn) bool {
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return false
	}
	open := false
	buf := make([]byte, 4096)
	_ = raw.Read(func(fd uintptr) bool {
		for {
			n, _, err := syscall.Recvfrom(int(fd), buf, syscall.MSG_DONTWAIT)
			if n > 0 {
				continue
			}
			open = err == syscall.EAGAIN
			return true
		}
	})
	return open
}

// attackers are running attacker processes.
type attackers struct {
	t     *testing.T
	stdin []io.WriteCloser
	out   []*bufio.Scanner
	cmds  []*exec.Cmd
}

// idleAttack starts one attacker process per source IP, each opening n
// connections, and returns once all of them have.
func idleAttack(t *testing.T, addr string, n int, from ...string) *attackers {
	t.Helper()
	a := &attackers{t: t}
	t.Cleanup(a.stop)
	for _, ip := range from {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%s,%d", idleAttackerEnv, addr, ip, n))
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		a.cmds, a.stdin, a.out = append(a.cmds, cmd), append(a.stdin, stdin), append(a.out, bufio.NewScanner(out))
	}
	a.held() // every attacker has finished dialing once it answers
	return a
}

// held asks every attacker how many of its connections aurad keeps open.
func (a *attackers) held() int {
	a.t.Helper()
	total := 0
	for i := range a.cmds {
		if _, err := io.WriteString(a.stdin[i], "count\n"); err != nil {
			a.t.Fatalf("attacker %d: %v", i, err)
		}
		if !a.out[i].Scan() {
			a.t.Fatalf("attacker %d ended: %v", i, a.out[i].Err())
		}
		var h int
		if _, err := fmt.Sscanf(a.out[i].Text(), "held %d", &h); err != nil {
			a.t.Fatalf("attacker %d said %q", i, a.out[i].Text())
		}
		total += h
	}
	return total
}

func (a *attackers) stop() {
	for i, cmd := range a.cmds {
		a.stdin[i].Close()
		_ = cmd.Wait()
	}
	a.cmds = nil
}

// openFDs counts the descriptors process pid holds.
func openFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// legitSubmit submits and waits for one task with a fresh client, as a
// scheduler connecting during the attack would.
func legitSubmit(t *testing.T, addr string, within time.Duration) error {
	t.Helper()
	c := dialAs(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	resp, err := c.Submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"})
	if err != nil {
		return err
	}
	task, err := c.Wait(ctx, resp.TaskId)
	if err != nil {
		return err
	}
	if task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		return fmt.Errorf("task %s: %s %v", task.Id, task.Status, task.Error)
	}
	return nil
}

// The idle-connection attack, scaled down: three attacker addresses open
// 300 idle connections each against limits of 40 per address and 100 in
// all. aurad's descriptors stay within the limits, a client on the same
// address as an attacker is still served, and the idle connections are
// closed once --idle-timeout passes, although the attackers keep them open.
func TestAttackIdleConnectionsAreBounded(t *testing.T) {
	d := startDaemon(t, daemonOpts{args: []string{
		"--max-connections", "100", "--max-connections-per-ip", "40", "--idle-timeout", "5s",
	}})
	pid := d.cmd.Process.Pid
	if err := legitSubmit(t, d.addr, 30*time.Second); err != nil {
		t.Fatalf("before the attack: %v", err)
	}
	// The harness's own client holds one connection; count from here.
	base := openFDs(t, pid)

	attack := idleAttack(t, d.addr, 300, "127.0.0.1", "127.0.0.2", "127.0.0.3")
	during := openFDs(t, pid)
	t.Logf("900 idle connections attempted from 3 addresses; aurad descriptors %d -> %d", base, during)
	if during > base+100 {
		t.Fatalf("aurad holds %d descriptors with the attack on, %d before: more than --max-connections 100 idle connections", during, base)
	}
	// aurad closes what it refuses or evicts right after accepting it; the
	// attackers see that once aurad has caught up with its accept queue.
	waitFor(t, "the attackers to hold at most --max-connections", 30*time.Second, func() bool {
		return attack.held() <= 100
	})
	// 127.0.0.1 is also an attacker's address: the new connection takes an
	// idle one's place.
	if err := legitSubmit(t, d.addr, 30*time.Second); err != nil {
		t.Fatalf("a legitimate client during the attack: %v", err)
	}
	waitFor(t, "aurad to close the idle connections (--idle-timeout 5s)", 60*time.Second, func() bool {
		return openFDs(t, pid) <= base+2
	})
	if n := attack.held(); n != 0 {
		t.Fatalf("the attackers still hold %d connections after the idle timeout", n)
	}
	if err := legitSubmit(t, d.addr, 30*time.Second); err != nil {
		t.Fatalf("a legitimate client after the idle connections were closed: %v", err)
	}
}

// hpackLiteral encodes one header as an HPACK literal without indexing
// (RFC 7541 6.2.2), names and values shorter than 127 bytes.
func hpackLiteral(name, value string) []byte {
	b := []byte{0, byte(len(name))}
	b = append(b, name...)
	b = append(b, byte(len(value)))
	return append(b, value...)
}

// h2Frame is one HTTP/2 frame.
func h2Frame(typ, flags byte, stream uint32, payload []byte) []byte {
	n := len(payload)
	b := []byte{byte(n >> 16), byte(n >> 8), byte(n), typ, flags, byte(stream >> 24), byte(stream >> 16), byte(stream >> 8), byte(stream)}
	return append(b, payload...)
}

// Unary calls whose headers arrive but whose request never does: before
// authentication (which needs the request), each held a handler goroutine
// for as long as the connection lived. With --request-timeout they are
// cancelled, and the daemon's goroutines come back down while the
// attacker keeps its connection open.
func TestAttackHeadersWithoutARequest(t *testing.T) {
	d := startDaemon(t, daemonOpts{args: []string{"--admin-listen", "127.0.0.1:0", "--request-timeout", "1s"}})
	admin := adminAddr(t, d)
	if err := legitSubmit(t, d.addr, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	before := goroutines(t, admin)

	conn, err := net.Dial("tcp", d.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go func() { _, _ = io.Copy(io.Discard, conn) }() // whatever aurad sends
	var headers []byte
	for _, h := range [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":path", aurav1.ExecutionService_GetStats_FullMethodName},
		{":authority", "aurad"}, {"content-type", "application/grpc"}, {"te", "trailers"},
	} {
		headers = append(headers, hpackLiteral(h[0], h[1])...)
	}
	const calls = 500
	out := append([]byte(nil), h2Hello...)
	for i := range calls {
		// END_HEADERS and not END_STREAM: the request is still to come.
		out = append(out, h2Frame(0x1, 0x4, uint32(2*i+1), headers)...)
	}
	if _, err := conn.Write(out); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "aurad to start the half-sent calls", 30*time.Second, func() bool {
		return goroutines(t, admin) >= before+calls/2
	})
	waitFor(t, "the half-sent calls to be cancelled (--request-timeout 1s)", 60*time.Second, func() bool {
		return goroutines(t, admin) <= before+20
	})
	if err := legitSubmit(t, d.addr, 30*time.Second); err != nil {
		t.Fatalf("a legitimate client after the attack: %v", err)
	}
}

// Health and reflection are open to callers without credentials (so
// probes need none), and a health Watch lasts as long as its caller likes.
// Attack: with tokens required, hold one Watch on every connection an
// address may open, and pile Watches onto one connection. A client with a
// token on the same address is still served (a Watch does not make its
// connection busy, so the new one takes its place), and one address gets
// at most --max-streams-per-principal Watches at once, the rest
// RESOURCE_EXHAUSTED; before, every connection stayed pinned and a
// connection could carry 1024 Watches (about 15 KB of aurad's memory each).
func TestAttackHealthWatchesCannotPinConnections(t *testing.T) {
	d := startDaemon(t, daemonOpts{args: []string{"--auth-tokens", admissionTokens(t, ""),
		"--max-connections-per-ip", "8", "--max-streams-per-principal", "16"}})
	ctx, cancel := context.WithCancel(ctxT(t, time.Minute))
	defer cancel()
	watch := func(cc *grpc.ClientConn) error {
		w, err := healthpb.NewHealthClient(cc).Watch(ctx, &healthpb.HealthCheckRequest{})
		if err == nil {
			_, err = w.Recv()
		}
		return err
	}
	conns := make([]*grpc.ClientConn, 8)
	for i := range conns {
		cc, err := grpc.NewClient(d.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		conns[i] = cc
		if err := watch(cc); err != nil {
			t.Fatalf("watch %d: %v", i, err)
		}
	}
	c := dialAs(t, d.addr, client.WithToken("tok-plan-a"))
	sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
	defer scancel()
	if _, err := c.Submit(sctx, &aurav1.SubmitRequest{Task: "e2e/quick"}); err != nil {
		t.Fatalf("a client with a token, on an address whose every connection holds a health Watch: %v", err)
	}

	// One address's Watches are bounded, wherever they are carried.
	cc, err := grpc.NewClient(d.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	var refused error
	opened := 0
	for range 40 {
		if err := watch(cc); err != nil {
			refused = err
			break
		}
		opened++
	}
	if opened > 16 || status.Code(refused) != codes.ResourceExhausted || !strings.Contains(refused.Error(), "health or reflection streams") {
		t.Fatalf("%d more Watches opened from one address, then %v; want at most 16 in all, then RESOURCE_EXHAUSTED", opened, refused)
	}
}
