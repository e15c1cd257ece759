package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		args         []string
		out, raw     string
		quick, hasRe bool
		wantErr      bool
	}{
		{args: nil, out: "BENCHMARKS.md", raw: "bench.txt"},
		{args: []string{"-quick", "-out", "x.md", "-raw", "x.txt"}, out: "x.md", raw: "x.txt", quick: true},
		// A partial run does not overwrite the report of record unless asked.
		{args: []string{"-only", "engine"}, out: "-", raw: "", hasRe: true},
		{args: []string{"-only", "engine", "-out", "BENCHMARKS.md"}, out: "BENCHMARKS.md", raw: "", hasRe: true},
		{args: []string{"-only", "("}, wantErr: true},
		{args: []string{"stray"}, wantErr: true},
	}
	for _, tt := range tests {
		c, err := parseFlags(tt.args, new(bytes.Buffer))
		if tt.wantErr {
			if err == nil {
				t.Errorf("parseFlags(%q) succeeded, want an error", tt.args)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseFlags(%q): %v", tt.args, err)
			continue
		}
		if c.out != tt.out || c.raw != tt.raw || c.quick != tt.quick || (c.only != nil) != tt.hasRe {
			t.Errorf("parseFlags(%q) = out %q raw %q quick %v only %v; want %q %q %v %v", tt.args, c.out, c.raw, c.quick, c.only, tt.out, tt.raw, tt.quick, tt.hasRe)
		}
	}
}

// With -only matching no group nothing is run, and the report still lists
// every figure, each saying why it has no number.
func TestRunWithoutBenchmarks(t *testing.T) {
	dir := t.TempDir()
	notes := filepath.Join(dir, "notes.md")
	if err := os.WriteFile(notes, []byte("- The notes.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "B.md")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-only", "^no-such-group$", "-out", out, "-notes", notes}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", code, stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	md := string(b)
	figures := 0
	for _, g := range suite() {
		figures += len(g.Figures)
	}
	if n := strings.Count(md, "not run (left out by -only)"); n != figures {
		t.Errorf("%d rows say they were left out, want all %d figures:\n%s", n, figures, md)
	}
	if !strings.HasSuffix(md, "## What the figures say\n\n- The notes.\n") {
		t.Errorf("the notes are not the last section:\n%s", md)
	}
}

// Every figure's benchmark is one its group's -bench pattern selects, and
// every metric it reads is reported by a benchmark in that package: a
// renamed benchmark or metric fails here, not silently in the report.
func TestSuiteMatchesTheBenchmarks(t *testing.T) {
	root := filepath.Join("..", "..")
	names := map[string]bool{}
	for _, g := range suite() {
		if names[g.Name] {
			t.Errorf("two groups are called %q", g.Name)
		}
		names[g.Name] = true
		src := packageTests(t, filepath.Join(root, g.Pkg))
		for _, f := range g.Figures {
			if !benchMatches(t, g.Pattern, f.Bench) {
				t.Errorf("%s: -bench %q does not select %s", g.Name, g.Pattern, f.Bench)
			}
			top, _, _ := strings.Cut(f.Bench, "/")
			if !strings.Contains(src, "func "+top+"(b *testing.B)") {
				t.Errorf("%s: no func %s in %s", g.Name, top, g.Pkg)
			}
			measures := []Measure{f.Value}
			for _, a := range f.Also {
				measures = append(measures, a.Value)
			}
			for _, m := range measures {
				for _, name := range m.Metrics {
					if name != "ns/op" && !strings.Contains(src, `"`+name+`")`) {
						t.Errorf("%s: figure %q reads metric %q, which no ReportMetric in %s reports", g.Name, f.What, name, g.Pkg)
					}
				}
			}
		}
	}
}

// packageTests returns the text of a package's _test.go files.
func packageTests(t *testing.T, dir string) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*_test.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files in %s: %v", dir, err)
	}
	var b strings.Builder
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(src)
	}
	return b.String()
}

// benchMatches applies -bench the way go test does: the pattern splits at
// slashes outside brackets and parentheses, and each part must match the
// name's element at the same level (unanchored); levels past the pattern
// match anything.
func benchMatches(t *testing.T, pattern, name string) bool {
	t.Helper()
	var parts []string
	depth, start := 0, 0
	for i, c := range pattern {
		switch c {
		case '(', '[':
			depth++
		case ')', ']':
			depth--
		case '/':
			if depth == 0 {
				parts = append(parts, pattern[start:i])
				start = i + 1
			}
		}
	}
	parts = append(parts, pattern[start:])
	elems := strings.Split(name, "/")
	for i, p := range parts {
		if i >= len(elems) {
			break
		}
		if !regexp.MustCompile(p).MatchString(elems[i]) {
			return false
		}
	}
	return true
}

func TestParseCPUInfo(t *testing.T) {
	const cpuinfo = `processor	: 0
vendor_id	: GenuineIntel
model name	: Intel(R) Xeon(R)   Processor
cpu MHz		: 2100.000

processor	: 1
vendor_id	: GenuineIntel
model name	: Intel(R) Xeon(R)   Processor
`
	model, cores := parseCPUInfo(cpuinfo)
	if model != "Intel(R) Xeon(R) Processor" || cores != 2 {
		t.Errorf("parseCPUInfo = %q, %d; want the model with spaces collapsed, 2", model, cores)
	}
}

func TestParseMemTotal(t *testing.T) {
	n, err := parseMemTotal("MemTotal:       24567320 kB\nMemFree:         1000 kB\n")
	if err != nil || n != 24567320*1024 {
		t.Errorf("parseMemTotal = %d, %v; want %d", n, err, 24567320*1024)
	}
	if _, err := parseMemTotal("MemFree: 1 kB\n"); err == nil {
		t.Error("parseMemTotal without a MemTotal line succeeded")
	}
	if _, err := parseMemTotal("MemTotal: 1 MB\n"); err == nil {
		t.Error("parseMemTotal with an unknown unit succeeded")
	}
}

func TestUnexplained(t *testing.T) {
	// A test binary whose TestMain could not build aurad.
	const out = `goos: linux
goarch: amd64
pkg: github.com/aura-dev/aura/e2e
BenchmarkX-2   	 10	 5 ns/op
# github.com/aura-dev/aura/internal/execmgr
../internal/execmgr/manager.go:217:4: r.unrecorded undefined
building ../cmd/aurad: exit status 1
exit status 1
FAIL	github.com/aura-dev/aura/e2e	0.300s
FAIL
`
	got := unexplained(out, 2)
	want := []string{"../internal/execmgr/manager.go:217:4: r.unrecorded undefined", "building ../cmd/aurad: exit status 1"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("unexplained = %q, want %q", got, want)
	}
}
