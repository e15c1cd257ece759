package server

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// acceptAll accepts from lis until it closes, sending each connection on.
func acceptAll(lis net.Listener) <-chan net.Conn {
	out := make(chan net.Conn, 16)
	go func() {
		defer close(out)
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			out <- c
		}
	}()
	return out
}

func dialFrom(t *testing.T, ip, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByPeer waits until aurad's side of c is closed.
func closedByPeer(t *testing.T, c net.Conn) bool {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	return err == io.EOF
}

func TestConnGuardReplacesIdleConnectionsAndRefusesWhenAllAreBusy(t *testing.T) {
	g := NewConnGuard(ConnLimits{Max: 3, PerIP: 2})
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lis := g.Listener(raw)
	defer lis.Close()
	accepted := acceptAll(lis)
	addr := raw.Addr().String()
	next := func() *trackedConn {
		t.Helper()
		select {
		case c := <-accepted:
			return c.(*trackedConn)
		case <-time.After(5 * time.Second):
			t.Fatal("nothing accepted")
			return nil
		}
	}

	a1 := dialFrom(t, "127.0.0.2", addr)
	next()
	dialFrom(t, "127.0.0.2", addr)
	s2 := next()
	s2.used.Store(true) // has run an RPC: kept over a never-used one
	// A third from the same address replaces the never-used idle one.
	dialFrom(t, "127.0.0.2", addr)
	s3 := next()
	if !closedByPeer(t, a1) {
		t.Fatalf("the never-used idle connection was not closed to make room")
	}
	if g.Open() != 2 {
		t.Fatalf("%d connections open; want 2 (--max-connections-per-ip)", g.Open())
	}

	// Busy connections are never replaced: a fourth is refused.
	s2.active.Add(1)
	s3.active.Add(1)
	a4 := dialFrom(t, "127.0.0.2", addr)
	if !closedByPeer(t, a4) {
		t.Fatalf("a connection beyond the per-address limit, all busy, was not refused")
	}

	// Another address is not limited by the first's count, only by Max.
	dialFrom(t, "127.0.0.3", addr)
	s5 := next()
	s5.active.Add(1)
	b := dialFrom(t, "127.0.0.4", addr)
	if !closedByPeer(t, b) {
		t.Fatalf("a connection beyond --max-connections, all busy, was not refused")
	}
	if g.Open() != 3 {
		t.Fatalf("%d connections open; want 3 (--max-connections)", g.Open())
	}
	s5.Close()
	if g.Open() != 2 {
		t.Fatalf("%d connections open after one closed; want 2", g.Open())
	}
}

// holdDesc is a service with one stream that lasts until its caller ends
// it: an RPC in flight for as long as a test wants.
var holdDesc = grpc.ServiceDesc{
	ServiceName: "aura.test.Hold",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName: "Hold", ServerStreams: true, ClientStreams: true,
		Handler: func(_ any, ss grpc.ServerStream) error {
			<-ss.Context().Done()
			return nil
		},
	}},
}

// Through a real gRPC server: a connection with a stream in flight counts
// as busy, so a new connection from its address is refused rather than
// replacing it, and the stream goes on. A health Watch does not make its
// connection busy: it needs no credentials and lasts as long as its caller
// likes, so a connection holding only Watches is replaced like an idle one.
func TestConnGuardCountsRPCsInFlight(t *testing.T) {
	g := NewConnGuard(ConnLimits{PerIP: 1})
	srv := grpc.NewServer(g.ServerOptions()...)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	srv.RegisterService(&holdDesc, struct{}{})
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = srv.Serve(g.Listener(raw)); close(done) }()
	defer func() { srv.Stop(); <-done }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dial := func() *grpc.ClientConn {
		t.Helper()
		conn, err := grpc.NewClient("passthrough:///"+raw.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}

	// Only a Watch: the next connection from the address takes its place.
	watch, err := healthpb.NewHealthClient(dial()).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatal(err)
	}
	replacing := dialFrom(t, "127.0.0.1", raw.Addr().String())
	if _, err := watch.Recv(); err == nil {
		t.Fatal("a connection holding only a health Watch was kept; the new one should have replaced it")
	}
	replacing.Close()

	conn := dial()
	hold, err := conn.NewStream(ctx, &holdDesc.Streams[0], "/aura.test.Hold/Hold")
	if err != nil {
		t.Fatal(err)
	}
	// A Watch on the same connection beside it changes nothing.
	watch, err = healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatal(err)
	}
	other := dialFrom(t, "127.0.0.1", raw.Addr().String())
	if !closedByPeer(t, other) {
		t.Fatalf("a second connection from the address of a busy one was not refused")
	}
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	if r, err := watch.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("the busy connection's stream after the refusal: %v %v", r, err)
	}
	if err := hold.CloseSend(); err != nil {
		t.Fatal(err)
	}
}
