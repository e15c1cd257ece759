package daemon

import (
	"testing"

	"github.com/aura-dev/aura/internal/resources"
)

// exampleResources are the pools examples/resources.yaml declares, which
// the device-farm example plan asks for.
func exampleResources(t *testing.T) *resources.Declarations {
	t.Helper()
	decl, err := resources.Load("../../examples/resources.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return decl
}
