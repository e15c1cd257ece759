package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/aura-dev/aura/internal/auth"
)

// A token made by `aurad token new` hashes, through `aurad token hash`, to
// the digest it printed, which is what the tokens file compares against.
func TestTokenNewAndHashAgree(t *testing.T) {
	var out bytes.Buffer
	cmd := newRoot()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"token", "new"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	var tok, sum string
	if _, err := fmt.Sscanf(out.String(), "token:  %s\nsha256: %s\n", &tok, &sum); err != nil || len(tok) < 40 || len(sum) != 64 {
		t.Fatalf("token new printed %q (%v)", out.String(), err)
	}
	out.Reset()
	cmd = newRoot()
	cmd.SetOut(&out)
	cmd.SetIn(strings.NewReader(tok + "\n"))
	cmd.SetArgs([]string{"token", "hash"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out.String()); got != sum || got != auth.HashToken(tok) {
		t.Fatalf("token hash printed %q, token new said %q", got, sum)
	}
}
