package main

import (
	"errors"
	"log/slog"
	"net"
	"syscall"

	"github.com/aura-dev/aura/internal/daemon"
)

// defaultUIListen is where the web UI listens unless told otherwise.
const defaultUIListen = "127.0.0.1:7071"

// uiConfig settles the web UI's listener. The UI shares the gRPC rules:
// plaintext on loopback only (or with --insecure-listen-remote), TLS with
// --tls-cert/--tls-key. Clients reach it with a browser, so it asks for no
// client certificate even under --client-ca; --auth-tokens guards it. When
// the default address is taken (a second aurad on one machine) the daemon
// starts without a UI and says so; an address given explicitly must work.
func uiConfig(f *serveFlags, explicit bool, grpcAddr string, log *slog.Logger) (daemon.UIConfig, error) {
	c := daemon.UIConfig{Listen: f.uiListen, InsecureRemote: f.insecureRemote, GRPCAddr: grpcAddr}
	if c.Listen == "" {
		return c, nil
	}
	if f.tlsCert != "" || f.tlsKey != "" {
		cfg, err := serverTLS(f.tlsCert, f.tlsKey, "")
		if err != nil {
			return c, err
		}
		c.TLS = cfg
	}
	if !explicit {
		lis, err := net.Listen("tcp", c.Listen)
		if errors.Is(err, syscall.EADDRINUSE) {
			log.Warn("web UI not served: its default address is in use (another aurad?); give --ui-listen another address, or empty to silence this", "ui_listen", c.Listen)
			c.Listen = ""
			return c, nil
		}
		if err == nil {
			lis.Close()
		}
	}
	return c, nil
}
