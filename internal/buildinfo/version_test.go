package buildinfo

import (
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	i := Info{Version: "v1.2.0", Revision: "862e774abcdef0123456789", Time: "2026-11-30T11:57:35Z", Modified: true, Go: "go1.26.0"}
	if got, want := i.String(), "v1.2.0 (commit 862e774abcde, 2026-11-30T11:57:35Z, modified; go1.26.0)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := i.Short(); got != "v1.2.0+862e774abcde" {
		t.Errorf("Short() = %q", got)
	}
	// A pseudo-version already carries the commit.
	p := Info{Version: "v0.0.0-20261130115735-862e774abcde+dirty", Revision: "862e774abcdef0123456789"}
	if got := p.Short(); got != p.Version {
		t.Errorf("Short() of a pseudo-version = %q", got)
	}
	if got := (Info{Version: "(devel)"}).String(); got != "(devel)" {
		t.Errorf("bare String() = %q", got)
	}
}

func TestReadPrefersTheLinkTimeVersion(t *testing.T) {
	if got := Read("v9.9.9").Version; got != "v9.9.9" {
		t.Errorf("Read(v9.9.9).Version = %q", got)
	}
	// "dev" (the Dockerfile's default) is no version at all.
	if got := Read("dev"); got.Version == "dev" || !strings.HasPrefix(got.Go, "go") {
		t.Errorf("Read(dev) = %+v", got)
	}
}
