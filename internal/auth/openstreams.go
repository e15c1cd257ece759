package auth

import (
	"context"
	"net"
	"net/netip"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

var errTooManyOpenStreams = status.Error(codes.ResourceExhausted, "too many concurrent health or reflection streams from this address")

// openStreams bounds the streams of methods served without credentials
// (health Watch, server reflection) that one client address holds at once.
// No principal is known for them, so the per-principal stream limit cannot
// apply, yet each costs aurad a goroutine and buffers for as long as the
// caller keeps it: without a bound, one address's connections could carry
// hundreds of thousands of them. Addresses are counted like the connection
// limits count them (an IPv4 address, or an IPv6 /64), and forgotten when
// their last stream ends, so the map holds only addresses with streams.
type openStreams struct {
	max int // immutable; 0: unbounded

	mu sync.Mutex
	by map[string]int // guarded by mu
}

func newOpenStreams(max int) *openStreams {
	return &openStreams{max: max, by: map[string]int{}}
}

// open reserves a stream for ctx's peer address; release gives it back.
func (o *openStreams) open(ctx context.Context) (release func(), err error) {
	if o.max <= 0 {
		return func() {}, nil
	}
	key := addressKey(ctx)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.by[key] >= o.max {
		return nil, errTooManyOpenStreams
	}
	o.by[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			o.mu.Lock()
			if o.by[key]--; o.by[key] <= 0 {
				delete(o.by, key)
			}
			o.mu.Unlock()
		})
	}, nil
}

// addressKey is the client address of ctx's peer as the connection limits
// count it: the IPv4 address, or the IPv6 /64 (one host usually holds a
// whole /64). "" for a unix socket or an address that cannot be read.
func addressKey(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(p.Addr.String())
	if err != nil {
		return ""
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return ""
	}
	if ip = ip.Unmap(); ip.Is4() {
		return ip.String()
	}
	return netip.PrefixFrom(ip.WithZone(""), 64).Masked().String()
}
