package main

import (
	"github.com/aura-dev/aura/internal/daemon"
)

// defaultUIListen is where the web UI listens unless told otherwise.
const defaultUIListen = "127.0.0.1:7071"

// uiConfig settles the web UI's listener. The UI shares the gRPC rules:
// plaintext on loopback only (or with --insecure-listen-remote), TLS with
// --tls-cert/--tls-key. Clients reach it with a browser, so it asks for no
// client certificate even under --client-ca; --auth-tokens guards it.
func uiConfig(f *serveFlags, explicit bool, grpcAddr string) (daemon.UIConfig, error) {
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
	// An address nobody asked for may be taken by another aurad on this
	// machine: the daemon then starts without a UI and says so.
	c.Optional = !explicit
	return c, nil
}
