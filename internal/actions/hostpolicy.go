package actions

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
)

// HostPolicy says which addresses http.request may connect to. It is
// checked when a connection is made, against the address the host name
// resolved to, so every redirect hop is checked and a name that resolves
// to an internal address (DNS rebinding included) is refused like the
// address itself.
//
// By default every address is allowed except loopback, link-local
// (169.254.0.0/16 holds the cloud metadata services), unspecified,
// multicast and the known metadata addresses outside those ranges. A rule
// in the allow list reopens what it names.
type HostPolicy struct {
	rules []hostRule
}

// hostRule is one allow_hosts entry: an address prefix or a host name, and
// a port (0 = any port).
type hostRule struct {
	prefix netip.Prefix // valid for IP and CIDR entries
	name   string       // lower case, for host name entries
	port   uint16
}

// metadataAddrs are cloud metadata services outside the link-local range.
var metadataAddrs = []netip.Addr{
	netip.MustParseAddr("100.100.100.200"), // Alibaba Cloud
	netip.MustParseAddr("fd00:ec2::254"),   // AWS over IPv6
}

var (
	// thisNetwork is 0.0.0.0/8, which Linux treats as this host.
	thisNetwork = netip.MustParsePrefix("0.0.0.0/8")
	// nat64 embeds an IPv4 address in its last 32 bits; behind a NAT64
	// gateway it reaches that address, so it is judged as that address.
	nat64 = netip.MustParsePrefix("64:ff9b::/96")
)

// ErrHostDenied is wrapped by the error of a connection the policy refused.
var ErrHostDenied = errors.New("address not allowed")

// ParseHostRule checks one allow_hosts entry: an IP address ("10.0.0.5",
// "::1"), a CIDR prefix ("10.0.0.0/8"), a host name ("build.internal"),
// each optionally with a port ("127.0.0.1:8080", "[::1]:8080",
// "build.internal:443"; not on a CIDR).
func ParseHostRule(s string) error {
	_, err := parseHostRule(s)
	return err
}

func parseHostRule(s string) (hostRule, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return hostRule{}, errors.New("empty host")
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		return hostRule{prefix: p.Masked()}, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return hostRule{prefix: netip.PrefixFrom(a, a.BitLen())}, nil
	}
	host, port := s, uint16(0)
	if h, ps, err := net.SplitHostPort(s); err == nil {
		n, err := strconv.ParseUint(ps, 10, 16)
		if err != nil || n == 0 {
			return hostRule{}, fmt.Errorf("%q: bad port %q", s, ps)
		}
		host, port = h, uint16(n)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return hostRule{prefix: netip.PrefixFrom(a, a.BitLen()), port: port}, nil
	}
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	if !validHostName(name) {
		return hostRule{}, fmt.Errorf("%q is not an IP address, CIDR prefix or host name (optionally with :port)", s)
	}
	return hostRule{name: name, port: port}, nil
}

func validHostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// NewHostPolicy builds a policy allowing, besides the public internet,
// what allow names (see ParseHostRule).
func NewHostPolicy(allow []string) (*HostPolicy, error) {
	p := &HostPolicy{}
	for _, s := range allow {
		r, err := parseHostRule(s)
		if err != nil {
			return nil, err
		}
		p.rules = append(p.rules, r)
	}
	return p, nil
}

// allowsName reports whether host (as written in the URL) and port are
// allowed by name, whatever they resolve to.
func (p *HostPolicy) allowsName(host string, port uint16) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	for _, r := range p.rules {
		if r.name != "" && r.name == host && (r.port == 0 || r.port == port) {
			return true
		}
	}
	return false
}

// check returns nil when a connection to addr:port is allowed, else an
// error wrapping ErrHostDenied that says why.
func (p *HostPolicy) check(addr netip.Addr, port uint16) error {
	addr = addr.Unmap()
	if nat64.Contains(addr) {
		b := addr.As16()
		addr = netip.AddrFrom4([4]byte(b[12:]))
	}
	for _, r := range p.rules {
		if r.prefix.IsValid() && r.prefix.Contains(addr) && (r.port == 0 || r.port == port) {
			return nil
		}
	}
	var kind string
	switch {
	case addr.IsLoopback():
		kind = "loopback"
	case addr.IsLinkLocalUnicast():
		kind = "link-local (cloud metadata lives here)"
	case addr.IsUnspecified() || thisNetwork.Contains(addr):
		kind = "unspecified"
	case addr.IsMulticast() || addr.IsLinkLocalMulticast() || addr.IsInterfaceLocalMulticast() || addr == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		kind = "multicast or broadcast"
	default:
		for _, m := range metadataAddrs {
			if addr == m {
				kind = "a cloud metadata service"
			}
		}
	}
	if kind == "" {
		return nil
	}
	return fmt.Errorf("%w: %s is %s; to reach it, list it in the plan's plan.yaml under http: {allow_hosts: [...]}",
		ErrHostDenied, netip.AddrPortFrom(addr, port), kind)
}

// dialContext dials like d but refuses, at connect time, addresses the
// policy does not allow. A host allowed by name skips the address check.
func (p *HostPolicy) dialContext(d *net.Dialer) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		host, ps, err := net.SplitHostPort(address)
		if err != nil {
			return nil, err
		}
		port64, _ := strconv.ParseUint(ps, 10, 16)
		dd := *d
		if !p.allowsName(host, uint16(port64)) {
			dd.Control = func(_, resolved string, _ syscall.RawConn) error {
				ap, err := netip.ParseAddrPort(resolved)
				if err != nil {
					return fmt.Errorf("%w: cannot parse %q", ErrHostDenied, resolved)
				}
				return p.check(ap.Addr(), ap.Port())
			}
		}
		return dd.DialContext(ctx, network, address)
	}
}
