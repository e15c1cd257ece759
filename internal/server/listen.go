package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ListenConfig says where and how the daemon may listen.
type ListenConfig struct {
	Addr string // host:port or unix:///path
	// TLS says the server has TLS credentials.
	TLS bool
	// InsecureRemote allows plaintext on a non-loopback address.
	InsecureRemote bool
	// SocketGID, when above 0, is the group given to a unix socket.
	SocketGID int
}

// ErrPlaintextRemote refuses plaintext on anything but loopback.
var ErrPlaintextRemote = errors.New("plaintext is only allowed on loopback: pass --tls-cert/--tls-key (or --insecure-listen-remote)")

// Listen opens the listener: TCP (loopback unless TLS or InsecureRemote),
// or a unix socket with mode 0660.
func Listen(c ListenConfig) (net.Listener, error) {
	if path, ok := strings.CutPrefix(c.Addr, "unix://"); ok {
		return listenUnix(c, path)
	}
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen %q: %w", c.Addr, err)
	}
	if !c.TLS && !c.InsecureRemote && !isLoopback(host) {
		return nil, fmt.Errorf("listen %s: %w", c.Addr, ErrPlaintextRemote)
	}
	lis, err := net.Listen("tcp", c.Addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("listen %s: %w: another process (another aurad?) listens there; stop it, or give this one another --listen", c.Addr, err)
	}
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

// ErrSocketInUse refuses a unix socket another process is serving on.
var ErrSocketInUse = errors.New("socket in use")

// listenUnix listens on a unix socket. A socket file left by a daemon that
// died is replaced; a live one never is. "Live" is decided twice: by an
// flock on path+".lock", which the kernel drops when its holder dies (so
// two daemons starting at once cannot both decide the file is stale), and
// by dialing the socket, which catches a server that takes no lock.
func listenUnix(c ListenConfig, path string) (net.Listener, error) {
	if path == "" {
		return nil, fmt.Errorf("listen %q: empty socket path", c.Addr)
	}
	inUse := func(why string) error {
		return fmt.Errorf("listen %s: %w: %s; stop that daemon first, or give this one another --listen path", c.Addr, ErrSocketInUse, why)
	}
	lockPath := path + ".lock"
	lock, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("listen %s: lock file: %w", c.Addr, err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, inUse("another process holds " + lockPath)
		}
		return nil, fmt.Errorf("listen %s: locking %s: %w", c.Addr, lockPath, err)
	}
	fail := func(err error) (net.Listener, error) {
		lock.Close()
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return fail(fmt.Errorf("listen %s: %s exists and is not a socket; remove it or choose another path", c.Addr, path))
		}
		if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
			conn.Close()
			return fail(inUse("a server accepts connections on " + path))
		}
		// Nobody accepts on it: a socket left by a daemon that died.
		if err := os.Remove(path); err != nil {
			return fail(fmt.Errorf("listen %s: removing the stale socket: %w", c.Addr, err))
		}
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return fail(fmt.Errorf("listen %s: %w", c.Addr, err))
	}
	if err := os.Chmod(path, 0o660); err != nil {
		lis.Close()
		return fail(fmt.Errorf("chmod %s: %w", path, err))
	}
	if c.SocketGID > 0 {
		if err := os.Chown(path, -1, c.SocketGID); err != nil {
			lis.Close()
			return fail(fmt.Errorf("chown %s: %w", path, err))
		}
	}
	return &lockedListener{Listener: lis, lock: lock}, nil
}

// lockedListener holds the socket's lock for as long as it listens.
type lockedListener struct {
	net.Listener
	lock *os.File
	once sync.Once
	err  error
}

// Close closes the listener, which unlinks the socket file, and only then
// releases the lock, so the next daemon never sees a socket without a lock.
func (l *lockedListener) Close() error {
	l.once.Do(func() {
		l.err = l.Listener.Close()
		l.lock.Close()
	})
	return l.err
}
