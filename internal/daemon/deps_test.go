package daemon

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestDependencyRules enforces the dependency rules table of
// docs/architecture.md on everything each package pulls in (`go list` Deps,
// transitively). aura.v1's generated message types are data the core may
// use; only internal/server, internal/auth, internal/cluster (calls between
// nodes) and the wiring in internal/daemon import grpc themselves, and the
// packages the table marks do not depend on it at all.
func TestDependencyRules(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}} | {{join .Deps " "}}`, "github.com/aura-dev/aura/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const mod = "github.com/aura-dev/aura/"
	imports, deps := map[string][]string{}, map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		direct, all, _ := strings.Cut(line, " | ")
		f := strings.Fields(direct)
		pkg := strings.TrimPrefix(f[0], mod)
		imports[pkg] = f[1:]
		deps[pkg] = strings.Fields(all)
	}
	allowedAura, noGRPC := dependencyRules(t)
	for pkg, allowed := range allowedAura {
		imps, ok := deps[pkg]
		if !ok {
			t.Errorf("package %s not found", pkg)
			continue
		}
		for _, imp := range imps {
			if !strings.HasPrefix(imp, mod) {
				continue
			}
			rel := strings.TrimPrefix(imp, mod)
			ok := false
			for _, a := range allowed {
				ok = ok || rel == a
			}
			if !ok {
				t.Errorf("%s imports %s; docs/architecture.md allows only %v", pkg, rel, allowed)
			}
		}
	}
	for _, pkg := range noGRPC {
		for _, dep := range deps[pkg] {
			if strings.HasPrefix(dep, "google.golang.org/grpc") {
				t.Errorf("%s depends on %s: it runs one task or holds data, it does not speak gRPC", pkg, dep)
			}
		}
	}
	for pkg, imps := range imports {
		if !strings.HasPrefix(pkg, "internal/") {
			continue
		}
		for _, imp := range imps {
			if strings.HasPrefix(imp, mod+"cmd/") {
				t.Errorf("%s imports %s: nothing under internal/ imports cmd/", pkg, imp)
			}
			grpcAllowed := strings.HasPrefix(pkg, "internal/server") || strings.HasPrefix(pkg, "internal/daemon") || strings.HasPrefix(pkg, "internal/auth") ||
				pkg == "internal/cluster" // node-to-node calls: forwarding, fan-out, routing
			if strings.HasPrefix(imp, "google.golang.org/grpc") && !grpcAllowed {
				t.Errorf("%s imports %s: only internal/server (and the daemon's wiring) speak gRPC", pkg, imp)
			}
		}
	}
}

// dependencyRules reads the table between the dependency-rules markers of
// docs/architecture.md: per package, the Aura packages it may depend on
// ("none" for none), and whether it may depend on gRPC. The page is what
// contributors read, so the test enforces exactly what it says.
func dependencyRules(t *testing.T) (allowed map[string][]string, noGRPC []string) {
	t.Helper()
	const doc = "../../docs/architecture.md"
	b, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok1 := strings.Cut(string(b), "<!-- dependency-rules: read by internal/daemon/deps_test.go -->")
	table, _, ok2 := strings.Cut(rest, "<!-- end dependency-rules -->")
	if !ok1 || !ok2 {
		t.Fatalf("%s: no dependency-rules table between its markers", doc)
	}
	code := regexp.MustCompile("`([^`]+)`")
	allowed = map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(table), "\n") {
		cells := strings.Split(strings.Trim(line, "| "), "|")
		if len(cells) != 3 || strings.HasPrefix(strings.TrimSpace(cells[0]), "---") || strings.TrimSpace(cells[0]) == "package" {
			continue
		}
		pkg := code.FindStringSubmatch(cells[0])
		if pkg == nil {
			t.Fatalf("%s: row %q names no package in backquotes", doc, line)
		}
		deps := []string{}
		for _, m := range code.FindAllStringSubmatch(cells[1], -1) {
			deps = append(deps, m[1])
		}
		if len(deps) == 0 && strings.TrimSpace(cells[1]) != "none" {
			t.Fatalf("%s: row %q: want backquoted packages or none", doc, line)
		}
		allowed[pkg[1]] = deps
		switch strings.TrimSpace(cells[2]) {
		case "no":
			noGRPC = append(noGRPC, pkg[1])
		case "yes":
		default:
			t.Fatalf("%s: row %q: the gRPC column is yes or no", doc, line)
		}
	}
	// A table that parsed to almost nothing would make the test pass
	// vacuously.
	for _, pkg := range []string{"internal/admission", "internal/store", "internal/engine", "internal/execmgr"} {
		if _, ok := allowed[pkg]; !ok {
			t.Fatalf("%s: the dependency-rules table has no row for %s", doc, pkg)
		}
	}
	return allowed, noGRPC
}
