package engine

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyRules enforces DESIGN.md's arrows: the engine runs one
// task and never reaches up into scheduling or the gRPC layer.
func TestDependencyRules(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{
			"github.com/aura-dev/aura/internal/execmgr",
			"github.com/aura-dev/aura/internal/server",
			"github.com/aura-dev/aura/internal/admission",
			"github.com/aura-dev/aura/cmd/",
			"google.golang.org/grpc",
		} {
			if strings.HasPrefix(dep, banned) {
				t.Errorf("engine depends on %s", dep)
			}
		}
	}
}
