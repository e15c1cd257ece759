package planner

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// The planner sits below the execution manager: of Aura's packages it may
// import only plan (DESIGN.md §2).
func TestImportsOnlyPlan(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			path := strings.Trim(imp.Path.Value, `"`)
			if strings.HasPrefix(path, "github.com/aura-dev/aura/") && path != "github.com/aura-dev/aura/internal/plan" {
				t.Errorf("%s imports %s; the planner may import only internal/plan", f, path)
			}
		}
	}
}
