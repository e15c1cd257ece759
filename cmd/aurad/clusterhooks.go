package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/aura-dev/aura/internal/daemon"
)

// nodeCallsConfig completes a node's cluster configuration with how it
// calls the other nodes: with TLS when it serves TLS itself (the nodes of
// a cluster serve alike), presenting its own certificate when they ask
// for client certificates (--client-ca), and, for calls made on its own
// behalf, the token of --cluster-token-file.
func nodeCallsConfig(cc *daemon.ClusterConfig, tokenFile, cert, key, clientCA string) error {
	if cc == nil {
		if tokenFile != "" {
			return errors.New("--cluster-token-file is a cluster setting: it needs --cluster-etcd")
		}
		return nil
	}
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return fmt.Errorf("--cluster-token-file: %w", err)
		}
		if cc.Token = strings.TrimSpace(string(b)); cc.Token == "" {
			return fmt.Errorf("--cluster-token-file %s: the file is empty; write this node's bearer token in it", tokenFile)
		}
	}
	if cert == "" {
		return nil
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
	if clientCA != "" {
		// The nodes' certificates chain to the CA that client
		// certificates do (or to a public one).
		pem, err := os.ReadFile(clientCA)
		if err != nil {
			return fmt.Errorf("--client-ca: %w", err)
		}
		roots.AppendCertsFromPEM(pem)
		own, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{own}
	}
	cc.PeerTLS = cfg
	return nil
}
