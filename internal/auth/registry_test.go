package auth

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const tokensYAML = `
tokens:
  - name: scheduler
    sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08  # "test"
    roles: [submit, read]
    plans: [demo]
  - name: ops
    sha256: a92c36e66a25ee99ff862faa8e87987be6c7cd13c3ee661c400a45b0f1e3b132  # "ops"
    roles: [submit, read, cancel, hooks, admin]
principals:
  - name: ci
    cert_subject: ci.example.com
    roles: [read]
  - name: robot
    cert_subject: spiffe://aura/robot
    roles: [hooks]
`

func TestHashTokenIsHexSHA256(t *testing.T) {
	if got := HashToken("test"); got != "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" {
		t.Fatalf("HashToken(test) = %s", got)
	}
}

func TestByTokenFindsTheHolder(t *testing.T) {
	r, err := Parse([]byte(tokensYAML))
	if err != nil {
		t.Fatal(err)
	}
	p, ok := r.ByToken("test")
	if !ok || p.Name != "scheduler" {
		t.Fatalf("ByToken(test) = %v, %v; want scheduler", p, ok)
	}
	if !p.Has(RoleSubmit) || !p.Has(RoleRead) || p.Has(RoleCancel) || p.Has(RoleAdmin) {
		t.Errorf("scheduler roles wrong: %+v", p.roles)
	}
	if !p.Scoped() || !p.PlanAllowed("demo") || p.PlanAllowed("web") {
		t.Errorf("scheduler plan allowlist wrong: %+v", p.plans)
	}
	ops, ok := r.ByToken("ops")
	if !ok || ops.Scoped() || !ops.PlanAllowed("anything") {
		t.Fatalf("ops = %v, %v; want every plan", ops, ok)
	}
	for _, wrong := range []string{"", "tes", "test ", "TEST", HashToken("test"), "ops\n"} {
		if p, ok := r.ByToken(wrong); ok {
			t.Errorf("ByToken(%q) = %s; want no principal", wrong, p.Name)
		}
	}
}

func TestByCertificateMatchesCNOrSAN(t *testing.T) {
	r, err := Parse([]byte(tokensYAML))
	if err != nil {
		t.Fatal(err)
	}
	spiffe, _ := url.Parse("spiffe://aura/robot")
	cases := []struct {
		name string
		cert *x509.Certificate
		want string
	}{
		{"common name", &x509.Certificate{Subject: pkix.Name{CommonName: "ci.example.com"}}, "ci"},
		{"DNS SAN", &x509.Certificate{Subject: pkix.Name{CommonName: "other"}, DNSNames: []string{"x", "ci.example.com"}}, "ci"},
		{"URI SAN", &x509.Certificate{URIs: []*url.URL{spiffe}}, "robot"},
		{"no match", &x509.Certificate{Subject: pkix.Name{CommonName: "ci.example.com.evil"}, DNSNames: []string{"example.com"}}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, ok := r.ByCertificate(c.cert)
			if c.want == "" {
				if ok {
					t.Fatalf("matched %s; want no principal", p.Name)
				}
				return
			}
			if !ok || p.Name != c.want {
				t.Fatalf("got %v, %v; want %s", p, ok, c.want)
			}
		})
	}
}

func TestParseRejectsBadFiles(t *testing.T) {
	const h = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	cases := map[string]struct{ yaml, want string }{
		"plaintext token":   {`tokens: [{name: a, sha256: hunter2, roles: [read]}]`, "64 lower-case hex"},
		"token key":         {`tokens: [{name: a, token: hunter2, roles: [read]}]`, "token"},
		"misspelt plans":    {`tokens: [{name: a, sha256: ` + h + `, roles: [read], plan: [demo]}]`, "plan"},
		"unknown role":      {`tokens: [{name: a, sha256: ` + h + `, roles: [root]}]`, `unknown role "root"`},
		"no roles":          {`tokens: [{name: a, sha256: ` + h + `}]`, "no roles"},
		"duplicate name":    {`tokens: [{name: a, sha256: ` + h + `, roles: [read]}]` + "\nprincipals: [{name: a, cert_subject: x, roles: [read]}]", "used twice"},
		"duplicate hash":    {`tokens: [{name: a, sha256: ` + h + `, roles: [read]}, {name: b, sha256: ` + h + `, roles: [read]}]`, "twice"},
		"bad plan":          {`tokens: [{name: a, sha256: ` + h + `, roles: [read], plans: ["../x"]}]`, "not a plan name"},
		"no cert subject":   {`principals: [{name: a, roles: [read]}]`, "cert_subject is required"},
		"bad name":          {`tokens: [{name: "a b", sha256: ` + h + `, roles: [read]}]`, "name"},
		"upper-case digest": {`tokens: [{name: a, sha256: ` + strings.ToUpper(h) + `, roles: [read]}]`, "lower-case hex"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(c.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrTokensFile) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q; want ErrTokensFile mentioning %q", err, c.want)
			}
		})
	}
}

func TestLoadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	if err := os.WriteFile(path, []byte(tokensYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.ByToken("ops"); !ok {
		t.Fatal("ops token not found after LoadFile")
	}
	if _, err := LoadFile(filepath.Join(t.TempDir(), "missing.yaml")); !errors.Is(err, ErrTokensFile) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v; want ErrTokensFile wrapping ErrNotExist", err)
	}
}

func TestNewTokenIsRandomAndUsable(t *testing.T) {
	a, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewToken()
	if a == b || len(a) != 43 {
		t.Fatalf("tokens %q, %q: want two distinct 43-character tokens", a, b)
	}
	r, err := Parse([]byte("tokens: [{name: n, sha256: " + HashToken(a) + ", roles: [read]}]"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.ByToken(a); !ok {
		t.Fatal("a fresh token does not authenticate against its own hash")
	}
}
