package auth

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkByToken is the per-call cost of authenticating a bearer token
// against a tokens file of 100 entries (every entry is compared).
func BenchmarkByToken(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("tokens:\n")
	for i := range 100 {
		fmt.Fprintf(&sb, "  - {name: t%d, sha256: %s, roles: [read]}\n", i, HashToken(fmt.Sprint("token-", i)))
	}
	r, err := Parse([]byte(sb.String()))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, ok := r.ByToken("token-57"); !ok {
			b.Fatal("not found")
		}
	}
}
