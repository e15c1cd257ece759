package server

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestListenUnixRefusesALiveSocketAndReplacesAStaleOne(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "aurad.sock")
	addr := "unix://" + sock

	live, err := Listen(ListenConfig{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(ListenConfig{Addr: addr}); !errors.Is(err, ErrSocketInUse) || !strings.Contains(err.Error(), sock) {
		t.Fatalf("second listen on a live socket: %v; want ErrSocketInUse naming %s", err, sock)
	}
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("the refused listen removed the live socket: %v", err)
	}
	live.Close()
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("closing the listener should remove its socket file: %v", err)
	}

	// A server that takes no lock (another program, an older aurad) is
	// found by dialing.
	other, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(ListenConfig{Addr: addr}); !errors.Is(err, ErrSocketInUse) {
		t.Fatalf("listen on a socket another server accepts on: %v", err)
	}
	// The same server gone without unlinking: a stale file.
	other.(*net.UnixListener).SetUnlinkOnClose(false)
	other.Close()
	again, err := Listen(ListenConfig{Addr: addr})
	if err != nil {
		t.Fatalf("listen over a stale socket file: %v", err)
	}
	again.Close()

	plain := filepath.Join(dir, "not-a-socket")
	if err := os.WriteFile(plain, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(ListenConfig{Addr: "unix://" + plain}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("listen over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(plain); string(b) != "data" {
		t.Fatalf("the regular file was changed")
	}
}
