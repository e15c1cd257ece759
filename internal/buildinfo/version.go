// Package buildinfo says which build of aurad or auractl is running, from
// the module build information and the VCS stamp the go command records.
package buildinfo

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// Info is what a binary knows about its own build.
type Info struct {
	// Version is the module version ("v1.2.3", or a pseudo-version such as
	// "v0.0.0-20261130115735-862e774abcde+dirty"), or the version given with
	// -ldflags "-X main.version=..."; "(devel)" when neither is known.
	Version  string
	Revision string // the VCS commit, "" when not stamped
	Time     string // the commit's time, RFC 3339
	Modified bool   // the work tree had uncommitted changes
	Go       string // the Go toolchain that built it
}

// Read returns the running binary's build information. stamped is a version
// set at link time; "" or "dev" means none.
func Read(stamped string) Info {
	info := Info{Version: "(devel)"}
	bi, ok := debug.ReadBuildInfo()
	if ok {
		info.Go = bi.GoVersion
		if v := bi.Main.Version; v != "" {
			info.Version = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Revision = s.Value
			case "vcs.time":
				info.Time = s.Value
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
	}
	if stamped != "" && stamped != "dev" {
		info.Version = stamped
	}
	return info
}

// Short is the version with the commit when it adds anything: for logs.
func (i Info) Short() string {
	if i.Revision == "" || strings.Contains(i.Version, shortRev(i.Revision)) {
		return i.Version
	}
	return i.Version + "+" + shortRev(i.Revision)
}

// String is the line `NAME version` prints, e.g.
// "aurad v0.0.0-... (commit 862e774abcde, 2026-11-30T11:57:35Z, modified; go1.26.0)".
func (i Info) String() string {
	var extra []string
	if i.Revision != "" {
		c := "commit " + shortRev(i.Revision)
		if i.Time != "" {
			c += ", " + i.Time
		}
		if i.Modified {
			c += ", modified"
		}
		extra = append(extra, c)
	}
	if i.Go != "" {
		extra = append(extra, i.Go)
	}
	if len(extra) == 0 {
		return i.Version
	}
	return fmt.Sprintf("%s (%s)", i.Version, strings.Join(extra, "; "))
}

func shortRev(r string) string {
	if len(r) > 12 {
		return r[:12]
	}
	return r
}
