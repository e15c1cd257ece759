package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Settings: default < --config file < AURA_* environment < flag.
func TestConfigPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "aurad.yaml")
	conf := "max-concurrent: 8\nlog-level: debug\nsync: batch\nresource-limit: {device: 2}\nkill-grace: 9s\n"
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin.aurad, "config", "print", "--config", file, "--sync", "off")
	cmd.Env = append(os.Environ(), "AURA_LOG_LEVEL=warn", "AURA_SYNC=always")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("config print: %v\n%s", err, out)
	}
	for _, want := range []string{
		"max-concurrent: 8  # file " + file,     // file beats default
		"log-level: warn  # env AURA_LOG_LEVEL", // env beats file
		`sync: "off"  # flag`,                   // flag beats env and file
		"kill-grace: 9s  # file",                // durations
		"resource-limit: [device=2]  # file",    // maps become key=value
		"shutdown-grace: 30s  # default",        // untouched
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("config print lacks %q:\n%s", want, out)
		}
	}
	// The printed configuration is itself a valid config file.
	again := filepath.Join(t.TempDir(), "again.yaml")
	if err := os.WriteFile(again, out, 0o600); err != nil {
		t.Fatal(err)
	}
	out2, err := exec.Command(bin.aurad, "config", "print", "--config", again).CombinedOutput()
	if err != nil || !strings.Contains(string(out2), "max-concurrent: 8  # file") || !strings.Contains(string(out2), `sync: "off"  # file`) {
		t.Fatalf("re-reading the printed config: %v\n%s", err, out2)
	}
	// An unknown key is an error naming the file and line.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("listen: 127.0.0.1:7070\nmax-concurent: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(bin.aurad, "serve", "--config", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), bad+":2:") || !strings.Contains(string(out), "max-concurent") {
		t.Fatalf("unknown config key: %v\n%s", err, out)
	}
}
