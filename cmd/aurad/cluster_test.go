package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The cluster settings come from flags, the --config file and AURA_*
// like every other, and are checked before anything starts.
func TestClusterSettings(t *testing.T) {
	config := filepath.Join(t.TempDir(), "aurad.yaml")
	if err := os.WriteFile(config, []byte("cluster-etcd: [http://e1:2379, http://e2:2379]\nnode: farm-1\ncluster-ttl: 4s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AURA_ADVERTISE", "farm-1.lan:7070")
	cmd := serveCmd()
	if err := cmd.Flags().Parse([]string{"--config", config}); err != nil {
		t.Fatal(err)
	}
	if _, err := applyConfig(cmd.Flags()); err != nil {
		t.Fatal(err)
	}
	var f clusterFlags
	f.etcd, _ = cmd.Flags().GetStringSlice("cluster-etcd")
	f.node, _ = cmd.Flags().GetString("node")
	f.advertise, _ = cmd.Flags().GetString("advertise")
	f.ttl, _ = cmd.Flags().GetDuration("cluster-ttl")
	cc, err := clusterConfig(&f)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cc.Endpoints, []string{"http://e1:2379", "http://e2:2379"}) || cc.Node != "farm-1" || cc.Advertise != "farm-1.lan:7070" || cc.TTL != 4*time.Second {
		t.Fatalf("cluster config %+v", cc)
	}

	for _, tc := range []struct {
		f    clusterFlags
		want string
	}{
		{clusterFlags{}, ""},
		{clusterFlags{node: "a"}, "--node is a cluster setting: it needs --cluster-etcd"},
		{clusterFlags{etcd: []string{"http://e:2379"}, advertise: "a:1", ttl: time.Second}, "--node: required with --cluster-etcd"},
		{clusterFlags{etcd: []string{"http://e:2379"}, node: "Farm_1", advertise: "a:1", ttl: time.Second}, `--node: node name "Farm_1"`},
		{clusterFlags{etcd: []string{"http://e:2379"}, node: "a", ttl: time.Second}, "--advertise: required with --cluster-etcd"},
		{clusterFlags{etcd: []string{"http://e:2379"}, node: "a", advertise: "nowhere", ttl: time.Second}, `--advertise "nowhere": want host:port`},
		{clusterFlags{etcd: []string{"http://e:2379"}, node: "a", advertise: "a:1", ttl: 1500 * time.Millisecond}, "--cluster-ttl 1.5s: want whole seconds"},
		{clusterFlags{etcd: []string{"http://e:2379"}, node: "a", advertise: "a:1", ttl: time.Second, etcdCert: "c.pem"}, "--etcd-cert and --etcd-key go together"},
	} {
		cc, err := clusterConfig(&tc.f)
		switch {
		case tc.want == "" && (err != nil || cc != nil):
			t.Errorf("%+v: %v, %v; want no cluster", tc.f, cc, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: %v; want %q", tc.f, err, tc.want)
		}
	}
}
