package auth

import (
	"context"
	"errors"
	"net"
	"testing"

	"google.golang.org/grpc/peer"
)

func fromAddr(addr string) context.Context {
	a, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		panic(err)
	}
	return peer.NewContext(context.Background(), &peer.Peer{Addr: a})
}

// Streams open to callers without credentials are bounded per address as
// the connection limits count addresses (IPv4, or IPv6 /64), and an
// address is forgotten when its last stream ends.
func TestOpenStreamsAreBoundedPerAddress(t *testing.T) {
	o := newOpenStreams(2)
	var release []func()
	for _, addr := range []string{"192.0.2.1:1000", "192.0.2.1:1001", "[2001:db8::1]:1", "[2001:db8::ffff]:2", "[::ffff:192.0.2.9]:3"} {
		r, err := o.open(fromAddr(addr))
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		release = append(release, r)
	}
	for _, addr := range []string{"192.0.2.1:1002", "[2001:db8::2]:3"} {
		if _, err := o.open(fromAddr(addr)); !errors.Is(err, errTooManyOpenStreams) {
			t.Errorf("%s, its address at the bound: %v, want errTooManyOpenStreams", addr, err)
		}
	}
	if _, err := o.open(fromAddr("[2001:db8:0:1::1]:1")); err != nil {
		t.Errorf("another /64: %v", err)
	}
	release[0]()
	release[0]() // twice is once
	if _, err := o.open(fromAddr("192.0.2.1:1003")); err != nil {
		t.Errorf("after a release: %v", err)
	}
	for _, r := range release[1:] {
		r()
	}
	if n := len(o.by); n != 2 {
		t.Errorf("%d addresses remembered; want 2 (those with streams left)", n)
	}
	if got := addressKey(fromAddr("[::ffff:192.0.2.9]:3")); got != "192.0.2.9" {
		t.Errorf("an IPv4-mapped address counts as %q; want its IPv4 address", got)
	}
}
