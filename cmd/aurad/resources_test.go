package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestResourcesFromConfigSection: a resources: mapping in --config declares
// pools like --resources does, and is not taken for the --resources flag.
func TestResourcesFromConfigSection(t *testing.T) {
	config := writeFile(t, "aurad.yaml", "max-concurrent: 7\nresources:\n  device:\n    instances: [a, b]\n")
	cmd := serveCmd()
	if err := cmd.Flags().Parse([]string{"--config", config}); err != nil {
		t.Fatal(err)
	}
	if _, err := applyConfig(cmd.Flags()); err != nil {
		t.Fatalf("applyConfig: %v", err)
	}
	if got := cmd.Flags().Lookup("max-concurrent").Value.String(); got != "7" {
		t.Fatalf("max-concurrent = %s, want 7 (the other settings still apply)", got)
	}
	if got := cmd.Flags().Lookup("resources").Value.String(); got != "" {
		t.Fatalf("--resources = %q, want unset: the section is not a file name", got)
	}
	decl, err := loadResources("", config)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := decl.Pool("device"); !ok || len(p.Instances) != 2 {
		t.Fatalf("pools %+v", decl.Pools)
	}
	// A file and the section together: both count, a name in both is an error.
	file := writeFile(t, "resources.yaml", "resources:\n  api: 3\n")
	decl, err = loadResources(file, config)
	if err != nil || decl.Counters["api"] != 3 || len(decl.Pools) != 1 {
		t.Fatalf("file and section: %+v, %v", decl, err)
	}
	dup := writeFile(t, "dup.yaml", "resources:\n  device: 2\n")
	if _, err := loadResources(dup, config); err == nil || !strings.Contains(err.Error(), `"device" is declared both`) {
		t.Fatalf("a name in both: %v", err)
	}
	// config print repeats the section, so its output declares the same pools.
	print := configCmd()
	var out strings.Builder
	print.SetOut(&out)
	print.SetArgs([]string{"print", "--config", config})
	if err := print.Execute(); err != nil {
		t.Fatal(err)
	}
	again := writeFile(t, "printed.yaml", out.String())
	if decl, err := loadResources("", again); err != nil || len(decl.Pools) != 1 || len(decl.Pools[0].Instances) != 2 {
		t.Fatalf("config print's output declares %+v (%v):\n%s", decl, err, out.String())
	}
	bad := writeFile(t, "bad.yaml", "resources:\n  device:\n    instances: [a]\n    limit: -2\n")
	if _, err := loadResources(bad, ""); err == nil || !strings.Contains(err.Error(), bad+":4:") {
		t.Fatalf("bad file: %v, want %s:4", err, bad)
	}
}

// TestPlanCheckResourceTags: `aurad plan check` reports a tag naming an
// undeclared pool or instance at its file:line, and passes the same plan
// once --resources declares them; a templated tag is accepted.
func TestPlanCheckResourceTags(t *testing.T) {
	plans := t.TempDir()
	task := filepath.Join(plans, "phone", "tasks", "post.yaml")
	if err := os.MkdirAll(filepath.Dir(task), 0o755); err != nil {
		t.Fatal(err)
	}
	body := "meta:\n  resource_tags:\n    - \"device:*\"\n    - \"device:{{ inputs.serial }}:1\"\ninputs:\n  - {name: serial, type: string}\nsteps:\n  - action: noop\n"
	if err := os.WriteFile(task, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		cmd := planCmd()
		var out strings.Builder
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(append([]string{"check"}, args...))
		err := cmd.Execute()
		return out.String(), err
	}
	out, err := run(plans)
	if err == nil || !strings.Contains(out, task+":3:") || !strings.Contains(out, `no pool "device" is declared`) {
		t.Fatalf("without --resources: %v\n%s", err, out)
	}
	resources := writeFile(t, "resources.yaml", "resources:\n  device: {instances: [emulator-5554]}\n")
	if out, err := run("--resources", resources, plans); err != nil {
		t.Fatalf("with --resources: %v\n%s", err, out)
	}
}
