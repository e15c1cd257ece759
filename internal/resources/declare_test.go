package resources

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aura-dev/aura/internal/admission"
)

func write(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "resources.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadPoolsAndCounters(t *testing.T) {
	d, err := Load(write(t, `resources:
  device:
    instances: [emulator-5554, emulator-5556, R58M123]
  printer: {instances: [left, right], limit: 2}
  "api:openai": 5
`))
	if err != nil {
		t.Fatal(err)
	}
	dev, ok := d.Pool("device")
	if !ok || dev.Limit != 1 || strings.Join(dev.Instances, ",") != "emulator-5554,emulator-5556,R58M123" {
		t.Fatalf("device pool %+v", dev)
	}
	want := map[string]int{
		"api:openai": 5, "device:emulator-5554": 1, "device:emulator-5556": 1, "device:R58M123": 1,
		"printer:left": 2, "printer:right": 2,
	}
	if got := d.Limits(); !maps.Equal(got, want) {
		t.Fatalf("limits %v, want %v", got, want)
	}
	if ps := d.AdmissionPools(); len(ps) != 2 || ps[1].Name != "printer" {
		t.Fatalf("admission pools %+v", ps)
	}
}

func TestLoadErrorsNameFileAndLine(t *testing.T) {
	cases := []struct{ body, want string }{
		{"resources:\n  device:\n    instances: []\n", ":3: pool \"device\": instances must be a list of names, not empty"},
		{"resources:\n  device:\n    instances: [a, a]\n", ":3: pool \"device\": instance \"a\" is listed twice"},
		{"resources:\n  device:\n    instances: [a]\n    limit: 0\n", ":4: pool \"device\": limit"},
		{"resources:\n  device:\n    instances: [\"a:b\"]\n", `:3: pool "device": instance "a:b": a name may not contain ':'`},
		{"resources:\n  device:\n    instances: [5554]\n", `:3: pool "device": instance "5554": a name may not be an integer`},
		{"resources:\n  device:\n    instance: [a]\n", `:3: pool "device": unknown key "instance"`},
		{"resources:\n  api: -1\n", `:2: resource "api": the limit must be a positive integer`},
		{"resources:\n  \"api:5\": 2\n", `:2: resource "api:5": a name may not end in ":<integer>"`},
		{"resources:\n  api: lots\n", `:2: resource "api": want a limit`},
		{"limits:\n  api: 1\n", `:1: unknown key "limits"`},
		{"resources:\n  device:\n    instances: [a]\n  \"device:a\": 2\n", `:4: resource "device:a": its name is inside pool "device"`},
	}
	for _, c := range cases {
		path := write(t, c.body)
		_, err := Load(path)
		if err == nil || !strings.Contains(err.Error(), path+c.want) {
			t.Errorf("%q: got %v, want %s%s", c.body, err, path, c.want)
		}
	}
}

func TestParseSectionIgnoresSettings(t *testing.T) {
	d, err := ParseSection([]byte("max-concurrent: 4\nresources:\n  device: {instances: [a]}\n"), "aurad.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Pool("device"); !ok {
		t.Fatalf("no device pool in %+v", d)
	}
	if d, err := ParseSection([]byte("max-concurrent: 4\n"), "aurad.yaml"); d != nil || err != nil {
		t.Fatalf("a config without resources: %+v, %v", d, err)
	}
}

func TestMergeRefusesTwoDeclarations(t *testing.T) {
	a := &Declarations{Pools: []Pool{{Name: "device", Instances: []string{"a"}, Limit: 1}}}
	b := &Declarations{Counters: map[string]int{"device": 2}}
	if _, err := Merge(a, b); err == nil || !strings.Contains(err.Error(), `"device" is declared both`) {
		t.Fatalf("got %v", err)
	}
	m, err := Merge(a, &Declarations{Counters: map[string]int{"api": 2}})
	if err != nil || m.Counters["api"] != 2 || len(m.Pools) != 1 {
		t.Fatalf("merge: %+v, %v", m, err)
	}
}

func TestCheckTag(t *testing.T) {
	d := &Declarations{Pools: []Pool{{Name: "device", Instances: []string{"emulator-5554", "R58"}, Limit: 1}}}
	cases := []struct{ tag, want string }{
		{"device:*", ""},
		{"device:emulator-5554", ""},
		{"device:emulator-5554:1", ""},
		{"api:openai:5", ""},
		{"other:thing", ""},
		{"phone:*", `no pool "phone" is declared (pools: device)`},
		{"device:*:2", "a pool's limit is declared with the pool"},
		{"device", "device is a pool: ask for device:* (any instance) or device:<instance>"},
		{"device:nope", `pool "device" has no instance "nope" (instances: emulator-5554, R58)`},
	}
	for _, c := range cases {
		err := d.CheckTagString(c.tag)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.tag, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, admission.ErrInvalidTag)):
			t.Errorf("%s: got %v, want %q", c.tag, err, c.want)
		}
	}
	var none *Declarations
	if err := none.CheckTagString("device:*"); err == nil || !strings.Contains(err.Error(), "aurad --resources FILE") {
		t.Fatalf("a pool tag with no pools declared: %v", err)
	}
	if err := none.CheckTagString("device:emulator-5554:1"); err != nil {
		t.Fatalf("a counting tag with no pools declared: %v", err)
	}
}

func TestCheckTagsOneInstancePerPool(t *testing.T) {
	d := &Declarations{Pools: []Pool{{Name: "device", Instances: []string{"a", "b"}, Limit: 1}}}
	tags, err := admission.ParseTags([]string{"device:*", "api", "device:a"})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.CheckTags(tags); err == nil || !strings.Contains(err.Error(), "at most one instance") {
		t.Fatalf("got %v", err)
	}
}

func TestLoadClusterScope(t *testing.T) {
	d, err := Load(write(t, `resources:
  "account:main": {limit: 1, scope: cluster}
  "account:alt":
    limit: 2
    scope: node
  "api:openai": 5
`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"account:main": 1, "account:alt": 2, "api:openai": 5}
	if got := d.Limits(); !maps.Equal(got, want) {
		t.Fatalf("limits %v, want %v", got, want)
	}
	if got := d.ClusterKeys(); strings.Join(got, ",") != "account:main" {
		t.Fatalf("cluster keys %v, want [account:main]", got)
	}
	m, err := Merge(nil, d)
	if err != nil || strings.Join(m.ClusterKeys(), ",") != "account:main" {
		t.Fatalf("merged cluster keys %v, %v", m.ClusterKeys(), err)
	}
	var none *Declarations
	if none.ClusterKeys() != nil {
		t.Fatal("nil declarations name cluster keys")
	}
}

func TestLoadClusterScopeErrorsNameFileAndLine(t *testing.T) {
	cases := []struct{ body, want string }{
		{"resources:\n  account: {limit: 1, scope: global}\n", `:2: resource "account": scope "global": want node`},
		{"resources:\n  account:\n    scope: cluster\n", `:3: resource "account": limit is required`},
		{"resources:\n  account:\n    limit: 0\n    scope: cluster\n", `:3: resource "account": limit must be a positive integer`},
		{"resources:\n  account:\n    limit: 1\n    scop: cluster\n", `:4: resource "account": unknown key "scop"`},
		{"resources:\n  device:\n    instances: [a]\n    scope: cluster\n", `:4: pool "device": scope applies to counting resources only`},
	}
	for _, c := range cases {
		path := write(t, c.body)
		_, err := Load(path)
		if err == nil || !strings.Contains(err.Error(), path+c.want) {
			t.Errorf("%q: got %v, want %s%s", c.body, err, path, c.want)
		}
	}
}
