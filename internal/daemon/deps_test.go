package daemon

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyRules enforces DESIGN.md's arrows between packages, on the
// direct imports `go list` reports. (aura.v1's generated message types are
// data and may be used by the core; only internal/server and the wiring in
// internal/daemon may import grpc itself.)
func TestDependencyRules(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "github.com/aura-dev/aura/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const mod = "github.com/aura-dev/aura/"
	imports := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		imports[strings.TrimPrefix(f[0], mod)] = f[1:]
	}
	allowedAura := map[string][]string{
		"internal/admission": {},
		"internal/store":     {},
		"internal/template":  {},
		"internal/workers":   {},
		"internal/actions":   {},
		"internal/plan":      {"internal/template"},
		"internal/planner":   {"internal/plan"},
		"internal/engine":    {"internal/actions", "internal/workers", "internal/plan", "internal/template"},
		"internal/hooks":     {"internal/store", "proto/aura/v1"},
		"internal/execmgr": {"internal/admission", "internal/planner", "internal/hooks", "internal/engine", "internal/store",
			"internal/plan", "internal/template", "internal/workers", "proto/aura/v1"},
	}
	for pkg, allowed := range allowedAura {
		imps, ok := imports[pkg]
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
