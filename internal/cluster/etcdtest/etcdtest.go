// Package etcdtest runs a real etcd cluster inside a test process
// (go.etcd.io/etcd/server/v3/embed) for the tests of Aura's cluster: the
// members listen on loopback ports of their own, keep their data in the
// test's temporary directory, and can be stopped and started again to
// test what a node does when the member it talks to goes away.
package etcdtest

import (
	"bytes"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// Cluster is a running etcd cluster of embedded members.
type Cluster struct {
	t       testing.TB
	token   string
	initial string // the initial-cluster string naming every member

	mu      sync.Mutex // guards members' etcd fields
	members []*member
}

type member struct {
	name   string
	dir    string
	client url.URL
	peer   url.URL
	etcd   *embed.Etcd // nil while stopped
}

// Start starts an etcd cluster of n members (1 or 3 in practice) and
// stops it when the test ends. It fails the test if the cluster does not
// come up within a minute.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t, token: fmt.Sprintf("aura-test-%d", time.Now().UnixNano())}
	var initial []string
	for i := range n {
		m := &member{
			name:   fmt.Sprintf("m%d", i),
			dir:    filepath.Join(t.TempDir(), "etcd"),
			client: freeURL(t),
			peer:   freeURL(t),
		}
		c.members = append(c.members, m)
		initial = append(initial, m.name+"="+m.peer.String())
	}
	c.initial = strings.Join(initial, ",")
	t.Cleanup(c.close)
	// Members of a new cluster wait for each other: start them together.
	errs := make(chan error, n)
	for i := range c.members {
		go func() { errs <- c.start(i, embed.ClusterStateFlagNew) }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("etcdtest: %v", err)
		}
	}
	return c
}

// Endpoints returns every member's client URL, for an etcd client or
// aurad's --cluster-etcd (joined with commas).
func (c *Cluster) Endpoints() []string {
	out := make([]string, len(c.members))
	for i, m := range c.members {
		out[i] = m.client.String()
	}
	return out
}

// Endpoint returns member i's client URL.
func (c *Cluster) Endpoint(i int) string { return c.members[i].client.String() }

// Stop stops member i (a crash as its clients see it: its ports close).
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	e := c.members[i].etcd
	c.members[i].etcd = nil
	c.mu.Unlock()
	if e != nil {
		e.Close()
	}
}

// Restart starts member i again with the data it had: it rejoins the
// cluster. It fails the test if the member does not come up.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if err := c.start(i, embed.ClusterStateFlagExisting); err != nil {
		c.t.Fatalf("etcdtest: %v", err)
	}
}

func (c *Cluster) start(i int, state string) error {
	m := c.members[i]
	cfg := embed.NewConfig()
	cfg.Name = m.name
	cfg.Dir = m.dir
	cfg.ListenClientUrls = []url.URL{m.client}
	cfg.AdvertiseClientUrls = []url.URL{m.client}
	cfg.ListenPeerUrls = []url.URL{m.peer}
	cfg.AdvertisePeerUrls = []url.URL{m.peer}
	cfg.InitialCluster = c.initial
	cfg.InitialClusterToken = c.token
	cfg.ClusterState = state
	cfg.LogLevel = "error"
	// Faster elections than the defaults (100ms/1s), which suit a
	// loaded test machine on loopback.
	cfg.TickMs = 50
	cfg.ElectionMs = 500
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("member %s: %w", m.name, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return fmt.Errorf("member %s: %w", m.name, err)
	case <-time.After(time.Minute):
		e.Close()
		return fmt.Errorf("member %s did not become ready within a minute", m.name)
	}
	c.mu.Lock()
	m.etcd = e
	c.mu.Unlock()
	return nil
}

func (c *Cluster) close() {
	for i := range c.members {
		c.Stop(i)
	}
	waitPeerReads()
}

// waitPeerReads waits (up to 10s) for the reads stopped members left
// behind: a member's peer server ends a connection's background read by
// setting a past read deadline, which etcd's timeoutConn replaces with its
// own on every Read, so the read ends only at that timeout (5s). A
// goroutine-leak check run right after the test would report them.
func waitPeerReads() {
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		n := runtime.Stack(buf, true)
		if !bytes.Contains(buf[:n], []byte("transport.timeoutConn.Read")) {
			return
		}
	}
}

// freeURL returns an http URL on a loopback port that was free a moment
// ago (the port is released for etcd to bind).
func freeURL(t testing.TB) url.URL {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	addr := l.Addr().String()
	l.Close()
	return url.URL{Scheme: "http", Host: addr}
}
