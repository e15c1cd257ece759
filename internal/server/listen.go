package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
)

// ListenConfig says where and how the daemon may listen.
type ListenConfig struct {
	Addr string // host:port or unix:///path
	// TLS says the server has TLS credentials.
	TLS bool
	// InsecureRemote allows plaintext on a non-loopback address.
	InsecureRemote bool
	// SocketGroup, when set, is the gid given to a unix socket.
	SocketGID int
}

// ErrPlaintextRemote refuses plaintext on anything but loopback.
var ErrPlaintextRemote = errors.New("plaintext is only allowed on loopback: pass --tls-cert/--tls-key (or --insecure-listen-remote)")

// Listen opens the listener: TCP (loopback unless TLS or InsecureRemote),
// or a unix socket with mode 0660.
func Listen(c ListenConfig) (net.Listener, error) {
	if path, ok := strings.CutPrefix(c.Addr, "unix://"); ok {
		if path == "" {
			return nil, fmt.Errorf("listen %q: empty socket path", c.Addr)
		}
		if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			_ = os.Remove(path) // a stale socket from an earlier run
		}
		lis, err := net.Listen("unix", path)
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", c.Addr, err)
		}
		if err := os.Chmod(path, 0o660); err != nil {
			lis.Close()
			return nil, fmt.Errorf("chmod %s: %w", path, err)
		}
		if c.SocketGID > 0 {
			if err := os.Chown(path, -1, c.SocketGID); err != nil {
				lis.Close()
				return nil, fmt.Errorf("chown %s: %w", path, err)
			}
		}
		return lis, nil
	}
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen %q: %w", c.Addr, err)
	}
	if !c.TLS && !c.InsecureRemote && !isLoopback(host) {
		return nil, fmt.Errorf("listen %s: %w", c.Addr, ErrPlaintextRemote)
	}
	lis, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", c.Addr, err)
	}
	return lis, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
