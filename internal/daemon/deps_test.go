package daemon

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyRules enforces DESIGN.md's arrows between packages on
// everything each package pulls in (`go list` Deps, transitively). aura.v1's
// generated message types are data the core may use; only internal/server,
// internal/auth and the wiring in internal/daemon import grpc themselves,
// and the pure packages do not depend on it at all.
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
	allowedAura := map[string][]string{
		"internal/admission": {},
		"internal/store":     {},
		"internal/template":  {},
		"internal/workers":   {},
		"internal/actions":   {},
		"internal/plan":      {"internal/template"},
		"internal/planner":   {"internal/plan", "internal/template"},
		"internal/engine":    {"internal/actions", "internal/workers", "internal/plan", "internal/template"},
		"internal/hooks":     {"internal/store", "proto/aura/v1"},
		"internal/execmgr": {"internal/admission", "internal/planner", "internal/hooks", "internal/engine", "internal/store",
			"internal/plan", "internal/template", "internal/workers", "proto/aura/v1"},
	}
	// internal/containment is a leaf: exec and the CPU workers keep their
	// processes in its groups.
	allowedAura["internal/containment"] = []string{}
	for _, pkg := range []string{"internal/workers", "internal/actions", "internal/engine", "internal/execmgr"} {
		allowedAura[pkg] = append(allowedAura[pkg], "internal/containment")
	}
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
				t.Errorf("%s imports %s; DESIGN.md allows only %v", pkg, rel, allowed)
			}
		}
	}
	pure := []string{"internal/admission", "internal/store", "internal/template", "internal/workers",
		"internal/actions", "internal/plan", "internal/planner", "internal/engine"}
	for _, pkg := range pure {
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
			grpcAllowed := strings.HasPrefix(pkg, "internal/server") || strings.HasPrefix(pkg, "internal/daemon") || strings.HasPrefix(pkg, "internal/auth")
			if strings.HasPrefix(imp, "google.golang.org/grpc") && !grpcAllowed {
				t.Errorf("%s imports %s: only internal/server (and the daemon's wiring) speak gRPC", pkg, imp)
			}
		}
	}
}
