package server

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// ConnLimits bound the connections aurad holds, before any request is read:
// an unauthenticated peer can open connections, so they must not be free.
type ConnLimits struct {
	// Max bounds open connections in all; 0 is unlimited.
	Max int
	// PerIP bounds open TCP connections from one IPv4 address or IPv6 /64;
	// 0 is unlimited. Unix sockets have no peer address and only count
	// against Max.
	PerIP int
	// IdleTimeout closes a connection that has had no RPC in flight for
	// this long (gracefully: GOAWAY, and the client reconnects when it
	// needs to); 0 never closes idle connections.
	IdleTimeout time.Duration
	// KeepaliveTime is how long a connection may be silent before aurad
	// pings it; a peer that does not answer within KeepaliveTimeout is
	// dropped, which finds half-open connections whose peer vanished.
	// 0 is gRPC's default (2h).
	KeepaliveTime    time.Duration
	KeepaliveTimeout time.Duration
	// RequestTimeout bounds how long a unary call's request message may
	// take to arrive after its headers; 0 is unbounded. Authentication
	// runs only once the request is in, so without it a peer with no
	// credentials could hold a handler goroutine per stream, up to 1024
	// streams a connection, by sending headers and nothing more. Streaming
	// calls are authenticated at once and bounded per principal instead.
	RequestTimeout time.Duration
	Logger         *slog.Logger
}

// ConnGuard enforces ConnLimits. Wrap the listener with Listener and give
// the gRPC server ServerOptions: the listener counts and refuses
// connections, and the stats handler tells it which ones have RPCs in
// flight.
//
// At a limit, a new connection takes the place of an idle one (no RPC in
// flight; those that never ran an RPC first, then the least recently used)
// rather than being refused: a client that behaves gets served while
// connections that only sit there are the ones that go. Only when every
// connection concerned is busy is the new one refused (closed at once).
type ConnGuard struct {
	limits ConnLimits // immutable
	log    *slog.Logger

	mu    sync.Mutex // guards the fields below
	all   map[*trackedConn]struct{}
	byKey map[string]map[*trackedConn]struct{} // TCP connections by peer address (or /64)

	logBudget *rate.Limiter // refusal and eviction log lines
	refused   atomic.Int64  // refusals not yet logged
	evicted   atomic.Int64  // evictions not yet logged
}

// NewConnGuard builds a ConnGuard.
func NewConnGuard(l ConnLimits) *ConnGuard {
	if l.Logger == nil {
		l.Logger = slog.Default()
	}
	if l.KeepaliveTimeout <= 0 {
		l.KeepaliveTimeout = 20 * time.Second
	}
	return &ConnGuard{
		limits: l, log: l.Logger,
		all: map[*trackedConn]struct{}{}, byKey: map[string]map[*trackedConn]struct{}{},
		logBudget: rate.NewLimiter(1, 1),
	}
}

// ServerOptions are the keepalive settings (idle and half-open timeouts),
// the stats handler that tracks RPCs per connection, and the request
// timer (a tap handle and two interceptors: install them outside
// authentication).
func (g *ConnGuard) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: g.limits.IdleTimeout,
			Time:              g.limits.KeepaliveTime,
			Timeout:           g.limits.KeepaliveTimeout,
		}),
		grpc.StatsHandler(connStats{}),
		grpc.InTapHandle(g.startRequestTimer),
		grpc.ChainUnaryInterceptor(stopRequestTimerUnary),
		grpc.ChainStreamInterceptor(stopRequestTimerStream),
	}
}

var errRequestTimeout = status.Error(codes.DeadlineExceeded, "the request message did not arrive in time after its headers")

type requestTimerKey struct{}

// startRequestTimer runs when a call's headers arrive: unless the call
// reaches the interceptors within RequestTimeout, its context is cancelled,
// which ends the wait for its request.
func (g *ConnGuard) startRequestTimer(ctx context.Context, _ *tap.Info) (context.Context, error) {
	if g.limits.RequestTimeout <= 0 {
		return ctx, nil
	}
	// The stream's own cancellation releases this context when the call
	// ends; the timer is stopped once the request is in.
	ctx, cancel := context.WithCancelCause(ctx)
	t := time.AfterFunc(g.limits.RequestTimeout, func() { cancel(errRequestTimeout) })
	return context.WithValue(ctx, requestTimerKey{}, t), nil
}

func stopRequestTimer(ctx context.Context) {
	if t, ok := ctx.Value(requestTimerKey{}).(*time.Timer); ok {
		t.Stop()
	}
}

// A unary interceptor runs once the request message is decoded.
func stopRequestTimerUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	stopRequestTimer(ctx)
	return h(ctx, req)
}

// A stream interceptor runs at once; authentication and the per-principal
// stream limits bound streams from there.
func stopRequestTimerStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	stopRequestTimer(ss.Context())
	return h(srv, ss)
}

// Listener wraps lis so that every connection it accepts is counted and
// bounded.
func (g *ConnGuard) Listener(lis net.Listener) net.Listener {
	return &limitedListener{Listener: lis, g: g}
}

// Open returns how many connections are open.
func (g *ConnGuard) Open() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.all)
}

type limitedListener struct {
	net.Listener
	g *ConnGuard
}

func (l *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if tc := l.g.admit(c); tc != nil {
			return tc, nil
		}
		c.Close()
	}
}

// peerKey is what PerIP counts by: the IPv4 address, or the IPv6 /64 (one
// host usually holds a whole /64). "" for unix sockets.
func peerKey(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return ""
	}
	if ip4 := tcp.IP.To4(); ip4 != nil {
		return ip4.String()
	}
	return tcp.IP.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// admit counts c, making room by closing an idle connection when a limit
// is reached; nil means c is refused.
func (g *ConnGuard) admit(c net.Conn) *trackedConn {
	key := peerKey(c.RemoteAddr())
	var evict []*trackedConn
	g.mu.Lock()
	if g.limits.PerIP > 0 && key != "" && len(g.byKey[key]) >= g.limits.PerIP {
		v := idlest(g.byKey[key], nil)
		if v == nil {
			g.mu.Unlock()
			g.note(&g.refused, "connection refused: --max-connections-per-ip reached and every connection from this address is busy", "peer", key, "limit", g.limits.PerIP)
			return nil
		}
		evict = append(evict, v)
	}
	if g.limits.Max > 0 && len(g.all)-len(evict) >= g.limits.Max {
		var skip *trackedConn
		if len(evict) > 0 {
			skip = evict[0]
		}
		v := idlest(g.all, skip)
		if v == nil {
			g.mu.Unlock()
			g.note(&g.refused, "connection refused: --max-connections reached and every connection is busy", "peer", key, "limit", g.limits.Max)
			return nil
		}
		evict = append(evict, v)
	}
	for _, v := range evict {
		g.forgetLocked(v)
	}
	tc := &trackedConn{Conn: c, g: g, key: key}
	tc.lastUsed.Store(time.Now().UnixNano())
	g.all[tc] = struct{}{}
	if key != "" {
		if g.byKey[key] == nil {
			g.byKey[key] = map[*trackedConn]struct{}{}
		}
		g.byKey[key][tc] = struct{}{}
	}
	g.mu.Unlock()
	for _, v := range evict {
		v.Conn.Close()
		g.note(&g.evicted, "idle connection closed to make room", "peer", v.key)
	}
	return tc
}

// idlest picks the connection of set to give up first, other than skip:
// one with no RPC in flight, preferring those that never ran an RPC, then
// the longest unused. nil when every one is busy.
func idlest(set map[*trackedConn]struct{}, skip *trackedConn) *trackedConn {
	var best *trackedConn
	for c := range set {
		if c == skip || c.active.Load() > 0 {
			continue
		}
		if best == nil || (!c.used.Load() && best.used.Load()) ||
			(c.used.Load() == best.used.Load() && c.lastUsed.Load() < best.lastUsed.Load()) {
			best = c
		}
	}
	return best
}

// forgetLocked stops counting c. g.mu must be held.
func (g *ConnGuard) forgetLocked(c *trackedConn) {
	if _, ok := g.all[c]; !ok {
		return
	}
	delete(g.all, c)
	if c.key != "" {
		delete(g.byKey[c.key], c)
		if len(g.byKey[c.key]) == 0 {
			delete(g.byKey, c.key)
		}
	}
}

// note logs at most one line a second; the counts say how many happened
// since the last line.
func (g *ConnGuard) note(counter *atomic.Int64, msg string, attrs ...any) {
	counter.Add(1)
	if !g.logBudget.Allow() {
		return
	}
	g.log.Warn(msg, append(attrs, "refused_since_last_line", g.refused.Swap(0), "evicted_since_last_line", g.evicted.Swap(0))...)
}

// trackedConn is an accepted connection while it counts against the limits.
type trackedConn struct {
	net.Conn
	g        *ConnGuard
	key      string
	active   atomic.Int32 // RPCs in flight
	used     atomic.Bool  // has run an RPC
	lastUsed atomic.Int64 // unix nanoseconds: accepted, or its last RPC ended
	closed   sync.Once
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.closed.Do(func() {
		c.g.mu.Lock()
		c.g.forgetLocked(c)
		c.g.mu.Unlock()
	})
	return err
}

// RemoteAddr carries the connection to the stats handler (gRPC hands
// TagConn the transport's RemoteAddr); it prints as the peer address.
func (c *trackedConn) RemoteAddr() net.Addr { return trackedAddr{Addr: c.Conn.RemoteAddr(), c: c} }

type trackedAddr struct {
	net.Addr
	c *trackedConn
}

// connStats counts each connection's RPCs in flight.
type connStats struct{}

type connKey struct{}

func (connStats) TagConn(ctx context.Context, info *stats.ConnTagInfo) context.Context {
	if a, ok := info.RemoteAddr.(trackedAddr); ok {
		return context.WithValue(ctx, connKey{}, a.c)
	}
	return ctx
}

func (connStats) HandleConn(context.Context, stats.ConnStats) {}

type watchKey struct{}

// TagRPC marks health and reflection calls. A health Watch or a
// reflection stream lasts as long as its caller wants, often for the life
// of the connection, and needs no credentials when those services are
// open: if it counted as an RPC in flight, anyone could pin every
// connection of an address (or, from many addresses, every connection
// aurad allows) with one stream each, and clients that behave would be
// refused. They are for probes and tools, which reconnect, so they never
// keep a connection from being replaced at a limit.
func (connStats) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if strings.HasPrefix(info.FullMethodName, "/grpc.health.v1.Health/") || strings.HasPrefix(info.FullMethodName, "/grpc.reflection.") {
		return context.WithValue(ctx, watchKey{}, true)
	}
	return ctx
}

func (connStats) HandleRPC(ctx context.Context, s stats.RPCStats) {
	busy := ctx.Value(watchKey{}) == nil
	switch s.(type) {
	case *stats.Begin:
		if c, ok := ctx.Value(connKey{}).(*trackedConn); ok {
			c.used.Store(true)
			if busy {
				c.active.Add(1)
			}
		}
	case *stats.End:
		if c, ok := ctx.Value(connKey{}).(*trackedConn); ok {
			c.lastUsed.Store(time.Now().UnixNano())
			if busy {
				c.active.Add(-1)
			}
		}
	}
}
