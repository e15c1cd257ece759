package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/aura-dev/aura/internal/daemon"
)

// routeFlags say how a node answers for its cluster.
type routeFlags struct {
	handoff       bool
	tokenFile     string
	fanOutTimeout time.Duration
}

func addRouteFlags(fl *pflag.FlagSet, f *routeFlags) {
	fl.BoolVar(&f.handoff, "cluster-handoff", false, "on SIGTERM, submit the queued tasks another live node can run to that node and end them here CANCELLED, naming the new task id (tasks that name an instance only this node has stay queued here)")
	fl.StringVar(&f.tokenFile, "cluster-token-file", "", "file holding this node's own bearer token, sent with the calls it makes in its own name: the handoff's submissions (the other nodes' tokens files must give it the submit role) and asking an interceptor connected to another node (the hooks role)")
	fl.DurationVar(&f.fanOutTimeout, "cluster-fanout-timeout", 5*time.Second, "how long a cluster ListTasks or GetStats waits for each node; a node that takes longer is named in unreachable_nodes")
}

// routingConfig turns the routing flags into the daemon's configuration.
// A node dials the others as clients do: with TLS when it serves TLS,
// verifying their certificates with --client-ca (or the system roots
// without it), and presenting its own --tls-cert when --client-ca makes
// the nodes ask for client certificates.
func routingConfig(f *routeFlags, s *serveFlags, clustered bool) (daemon.RoutingConfig, error) {
	rc := daemon.RoutingConfig{Handoff: f.handoff, FanOutTimeout: f.fanOutTimeout}
	if !clustered {
		if f.handoff || f.tokenFile != "" {
			return rc, errors.New("--cluster-handoff and --cluster-token-file are cluster settings: they need --cluster-etcd")
		}
		return rc, nil
	}
	if f.fanOutTimeout <= 0 {
		return rc, fmt.Errorf("--cluster-fanout-timeout %s: want a positive duration", f.fanOutTimeout)
	}
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return rc, fmt.Errorf("--cluster-token-file: %w", err)
		}
		if rc.Token = strings.TrimSpace(string(b)); rc.Token == "" || strings.ContainsAny(rc.Token, " \t\r\n") {
			return rc, fmt.Errorf("--cluster-token-file %s: want one token on one line", f.tokenFile)
		}
	}
	if s.tlsCert == "" {
		return rc, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.clientCA != "" {
		pem, err := os.ReadFile(s.clientCA)
		if err != nil {
			return rc, fmt.Errorf("--client-ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return rc, fmt.Errorf("--client-ca %s: no PEM certificates found", s.clientCA)
		}
		cert, err := tls.LoadX509KeyPair(s.tlsCert, s.tlsKey)
		if err != nil {
			return rc, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	rc.PeerTLS = cfg
	return rc, nil
}
