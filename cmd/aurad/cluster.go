package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/aura-dev/aura/internal/cluster"
	"github.com/aura-dev/aura/internal/daemon"
)

// clusterFlags are the settings of a node of a cluster on etcd.
type clusterFlags struct {
	etcd                      []string
	node, advertise           string
	ttl                       time.Duration
	etcdCA, etcdCert, etcdKey string
}

func addClusterFlags(fl *pflag.FlagSet, f *clusterFlags) {
	fl.StringSliceVar(&f.etcd, "cluster-etcd", nil, "etcd client URLs (comma-separated): run as a node of the cluster on that etcd (needs --node and --advertise); unset, aurad runs alone")
	fl.StringVar(&f.node, "node", "", "this node's name in the cluster: unique, a DNS label (lower-case letters, digits, '-'); its task ids start with it")
	fl.StringVar(&f.advertise, "advertise", "", "host:port where other nodes and clients reach this node's gRPC (--listen's port, on an address they can reach; port 0: the port --listen bound)")
	fl.DurationVar(&f.ttl, "cluster-ttl", cluster.DefaultTTL, "etcd session TTL (whole seconds): a node that stops answering is gone from the cluster this long after")
	fl.StringVar(&f.etcdCA, "etcd-ca", "", "CA bundle (PEM) etcd's server certificate must chain to (TLS to etcd)")
	fl.StringVar(&f.etcdCert, "etcd-cert", "", "client certificate (PEM) presented to etcd (with --etcd-key)")
	fl.StringVar(&f.etcdKey, "etcd-key", "", "client key (PEM) of --etcd-cert")
}

// clusterConfig turns the cluster flags into the daemon's configuration:
// nil without --cluster-etcd.
func clusterConfig(f *clusterFlags) (*daemon.ClusterConfig, error) {
	var urls []string
	for _, u := range f.etcd {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	if len(urls) == 0 {
		for flag, v := range map[string]string{"--node": f.node, "--advertise": f.advertise, "--etcd-ca": f.etcdCA, "--etcd-cert": f.etcdCert, "--etcd-key": f.etcdKey} {
			if v != "" {
				return nil, fmt.Errorf("%s is a cluster setting: it needs --cluster-etcd", flag)
			}
		}
		return nil, nil
	}
	if f.node == "" {
		return nil, errors.New("--node: required with --cluster-etcd: this node's name in the cluster (unique, a DNS label such as farm-1)")
	}
	if err := cluster.CheckNodeName(f.node); err != nil {
		return nil, fmt.Errorf("--node: %w", err)
	}
	if f.advertise == "" {
		return nil, errors.New("--advertise: required with --cluster-etcd: the host:port other nodes and clients reach this node's gRPC at")
	}
	if host, port, err := net.SplitHostPort(f.advertise); err != nil || host == "" || port == "" {
		return nil, fmt.Errorf("--advertise %q: want host:port", f.advertise)
	}
	if f.ttl < time.Second || f.ttl%time.Second != 0 {
		return nil, fmt.Errorf("--cluster-ttl %s: want whole seconds, at least 1s", f.ttl)
	}
	tlsCfg, err := etcdTLS(f)
	if err != nil {
		return nil, err
	}
	return &daemon.ClusterConfig{Endpoints: urls, TLS: tlsCfg, Node: f.node, Advertise: f.advertise, TTL: f.ttl}, nil
}

// etcdTLS is the etcd client's TLS: nil (plaintext) unless a flag asks for it.
func etcdTLS(f *clusterFlags) (*tls.Config, error) {
	if f.etcdCA == "" && f.etcdCert == "" && f.etcdKey == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if (f.etcdCert == "") != (f.etcdKey == "") {
		return nil, errors.New("--etcd-cert and --etcd-key go together")
	}
	if f.etcdCert != "" {
		cert, err := tls.LoadX509KeyPair(f.etcdCert, f.etcdKey)
		if err != nil {
			return nil, fmt.Errorf("--etcd-cert/--etcd-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if f.etcdCA != "" {
		pem, err := os.ReadFile(f.etcdCA)
		if err != nil {
			return nil, fmt.Errorf("--etcd-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--etcd-ca %s: no PEM certificates found", f.etcdCA)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// advertisedPort fills in an --advertise port of 0 with the port --listen
// bound (a listen port of 0 is only known once bound: tests, one-off
// clusters on one machine).
func advertisedPort(cc *daemon.ClusterConfig, bound net.Addr) {
	if cc == nil {
		return
	}
	host, port, _ := net.SplitHostPort(cc.Advertise)
	tcp, ok := bound.(*net.TCPAddr)
	if port == "0" && ok {
		cc.Advertise = net.JoinHostPort(host, fmt.Sprint(tcp.Port))
	}
}
