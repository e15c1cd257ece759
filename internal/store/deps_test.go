package store

import (
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// The store knows nothing of the task lifecycle: it imports no other Aura
// package (and so not the generated proto package either).
func TestImportsNoOtherAuraPackage(t *testing.T) {
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), e.Name(), nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(path, "github.com/aura-dev/aura") || strings.Contains(path, "protobuf") || strings.Contains(path, "grpc") {
				t.Errorf("%s imports %s", e.Name(), path)
			}
		}
	}
}
