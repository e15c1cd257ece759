package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"

	"github.com/goccy/go-yaml"
)

// File is the tokens file given to aurad with --auth-tokens.
//
//	tokens:
//	  - name: scheduler                  # who this is, in logs
//	    sha256: 9f86d081884c7d65...      # hex sha256 of the bearer token
//	    roles: [submit, read, cancel]
//	    plans: [demo]                    # optional allowlist; omitted = every plan
//	    max_priority: 10                 # optional; omitted = --max-priority
//	principals:
//	  - name: ci
//	    cert_subject: ci.example.com     # client certificate CN or a SAN (mTLS)
//	    roles: [read]
type File struct {
	Tokens     []TokenEntry    `yaml:"tokens"`
	Principals []CertPrincipal `yaml:"principals"`
}

// TokenEntry is one bearer token, stored as the hex sha256 of the token.
type TokenEntry struct {
	Name   string   `yaml:"name"`
	SHA256 string   `yaml:"sha256"`
	Roles  []string `yaml:"roles"`
	Plans  []string `yaml:"plans"`
	// MaxPriority is the highest priority this principal may give a
	// submission; nil leaves it to Options.MaxPriority.
	MaxPriority *int32 `yaml:"max_priority"`
}

// CertPrincipal gives roles to the holder of a client certificate whose
// common name or one of whose SANs (DNS, email, URI, IP) equals CertSubject.
type CertPrincipal struct {
	Name        string   `yaml:"name"`
	CertSubject string   `yaml:"cert_subject"`
	Roles       []string `yaml:"roles"`
	Plans       []string `yaml:"plans"`
	MaxPriority *int32   `yaml:"max_priority"` // as TokenEntry.MaxPriority
}

// ErrTokensFile wraps every problem found in a tokens file.
var ErrTokensFile = errors.New("tokens file")

var (
	hashPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)
	// The same grammar as a plan directory name (internal/plan).
	planPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	namePattern = regexp.MustCompile(`^[A-Za-z0-9_.@:-]{1,128}$`)
)

// Registry maps credentials to principals. It is immutable once built.
type Registry struct {
	tokens []tokenPrincipal
	certs  []certPrincipal
}

type tokenPrincipal struct {
	hash [sha256.Size]byte
	p    *Principal
}

type certPrincipal struct {
	subject string
	p       *Principal
}

// LoadFile reads and checks a tokens file.
func LoadFile(path string) (*Registry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTokensFile, err)
	}
	r, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// Parse checks a tokens file's contents. Unknown keys are errors, so a
// misspelt `plans` never silently grants every plan.
func Parse(data []byte) (*Registry, error) {
	var f File
	if err := yaml.UnmarshalWithOptions(data, &f, yaml.Strict()); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrTokensFile, yaml.FormatError(err, false, true))
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrTokensFile, fmt.Sprintf(format, args...))
	}
	r := &Registry{}
	names := map[string]bool{}
	checkCommon := func(where, name string, roles, plans []string, maxPriority *int32) (*Principal, error) {
		if !namePattern.MatchString(name) {
			return nil, bad("%s: name %q: want 1-128 letters, digits or _ . @ : -", where, name)
		}
		if name == AnonymousName {
			// Tasks recorded before principals were stored belong to it,
			// with their idempotency keys: no configured caller may be it.
			return nil, bad("%s: name %q is reserved for callers when authentication is off; pick another", where, name)
		}
		if maxPriority != nil && *maxPriority < 0 {
			return nil, bad("%s (%s): max_priority %d: want 0 or more", where, name, *maxPriority)
		}
		if names[name] {
			return nil, bad("%s: name %q is used twice", where, name)
		}
		names[name] = true
		if len(roles) == 0 {
			return nil, bad("%s (%s): no roles", where, name)
		}
		rs := make([]Role, 0, len(roles))
		for _, s := range roles {
			role, err := ParseRole(s)
			if err != nil {
				return nil, bad("%s (%s): %v", where, name, err)
			}
			rs = append(rs, role)
		}
		for _, pl := range plans {
			if !planPattern.MatchString(pl) || pl == "." || pl == ".." {
				return nil, bad("%s (%s): plan %q is not a plan name", where, name, pl)
			}
		}
		p := NewPrincipal(name, rs, plans)
		p.maxPriority = maxPriority
		return p, nil
	}
	seen := map[string]bool{}
	for i, t := range f.Tokens {
		where := fmt.Sprintf("tokens[%d]", i)
		p, err := checkCommon(where, t.Name, t.Roles, t.Plans, t.MaxPriority)
		if err != nil {
			return nil, err
		}
		if !hashPattern.MatchString(t.SHA256) {
			return nil, bad("%s (%s): sha256 must be 64 lower-case hex digits (the hash of the token, never the token)", where, t.Name)
		}
		if seen[t.SHA256] {
			return nil, bad("%s (%s): the same token hash appears twice", where, t.Name)
		}
		seen[t.SHA256] = true
		var tp tokenPrincipal
		if _, err := hex.Decode(tp.hash[:], []byte(t.SHA256)); err != nil {
			return nil, bad("%s (%s): sha256: %v", where, t.Name, err)
		}
		tp.p = p
		r.tokens = append(r.tokens, tp)
	}
	subjects := map[string]bool{}
	for i, c := range f.Principals {
		where := fmt.Sprintf("principals[%d]", i)
		p, err := checkCommon(where, c.Name, c.Roles, c.Plans, c.MaxPriority)
		if err != nil {
			return nil, err
		}
		if c.CertSubject == "" {
			return nil, bad("%s (%s): cert_subject is required", where, c.Name)
		}
		if subjects[c.CertSubject] {
			return nil, bad("%s (%s): cert_subject %q appears twice", where, c.Name, c.CertSubject)
		}
		subjects[c.CertSubject] = true
		r.certs = append(r.certs, certPrincipal{subject: c.CertSubject, p: p})
	}
	return r, nil
}

// HashToken is what the tokens file stores for token: hex sha256.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// NewToken returns a fresh random bearer token (256 bits, URL-safe base64).
func NewToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating a token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// ByToken finds the principal holding token. Every entry is compared, in
// constant time, whatever matches, so timing does not tell which token (or
// whether any) is close.
func (r *Registry) ByToken(token string) (*Principal, bool) {
	sum := sha256.Sum256([]byte(token))
	var found *Principal
	for i := range r.tokens {
		if subtle.ConstantTimeCompare(sum[:], r.tokens[i].hash[:]) == 1 {
			found = r.tokens[i].p
		}
	}
	return found, found != nil
}

// ByCertificate finds the principal for a verified client certificate by
// its common name or any SAN.
func (r *Registry) ByCertificate(cert *x509.Certificate) (*Principal, bool) {
	ids := CertificateIdentities(cert)
	for _, c := range r.certs {
		for _, id := range ids {
			if id == c.subject {
				return c.p, true
			}
		}
	}
	return nil, false
}

// CertificateIdentities lists the names a certificate can be matched by:
// its common name, then its DNS, email, URI and IP SANs.
func CertificateIdentities(cert *x509.Certificate) []string {
	var ids []string
	if cn := cert.Subject.CommonName; cn != "" {
		ids = append(ids, cn)
	}
	ids = append(ids, cert.DNSNames...)
	ids = append(ids, cert.EmailAddresses...)
	for _, u := range cert.URIs {
		ids = append(ids, u.String())
	}
	for _, ip := range cert.IPAddresses {
		ids = append(ids, ip.String())
	}
	return ids
}
