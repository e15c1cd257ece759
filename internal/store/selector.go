package store

import (
	"fmt"
	"strings"
)

// LabelOp is the operator of one label requirement.
type LabelOp int

const (
	LabelEquals    LabelOp = iota + 1 // k=v, k==v
	LabelNotEquals                    // k!=v (also true when k is absent)
	LabelExists                       // k
	LabelNotExists                    // !k
)

// LabelReq is one requirement of a label selector.
type LabelReq struct {
	Key   string
	Op    LabelOp
	Value string // for LabelEquals and LabelNotEquals
}

// Matches reports whether labels satisfy the requirement.
func (r LabelReq) Matches(labels map[string]string) bool {
	v, ok := labels[r.Key]
	switch r.Op {
	case LabelEquals:
		return ok && v == r.Value
	case LabelNotEquals:
		return !ok || v != r.Value
	case LabelExists:
		return ok
	case LabelNotExists:
		return !ok
	}
	return false
}

func (r LabelReq) String() string {
	switch r.Op {
	case LabelEquals:
		return r.Key + "=" + r.Value
	case LabelNotEquals:
		return r.Key + "!=" + r.Value
	case LabelExists:
		return r.Key
	case LabelNotExists:
		return "!" + r.Key
	}
	return "?" + r.Key
}

// MatchesAll reports whether labels satisfy every requirement of sel.
func MatchesAll(sel []LabelReq, labels map[string]string) bool {
	for _, r := range sel {
		if !r.Matches(labels) {
			return false
		}
	}
	return true
}

// ParseSelector parses a Kubernetes-style equality selector: comma-separated
// requirements k=v, k==v, k!=v, k (present) and !k (absent). An empty string
// selects everything.
func ParseSelector(s string) ([]LabelReq, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	reqs := make([]LabelReq, 0, len(parts))
	for _, p := range parts {
		r, err := parseRequirement(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("%w: label selector %q: %w", ErrInvalid, s, err)
		}
		reqs = append(reqs, r)
	}
	return reqs, nil
}

func parseRequirement(p string) (LabelReq, error) {
	if p == "" {
		return LabelReq{}, fmt.Errorf("empty requirement")
	}
	var r LabelReq
	switch {
	case strings.HasPrefix(p, "!") && !strings.Contains(p, "="):
		r = LabelReq{Key: strings.TrimSpace(p[1:]), Op: LabelNotExists}
	case strings.Contains(p, "!="):
		k, v, _ := strings.Cut(p, "!=")
		r = LabelReq{Key: strings.TrimSpace(k), Op: LabelNotEquals, Value: strings.TrimSpace(v)}
	case strings.Contains(p, "=="):
		k, v, _ := strings.Cut(p, "==")
		r = LabelReq{Key: strings.TrimSpace(k), Op: LabelEquals, Value: strings.TrimSpace(v)}
	case strings.Contains(p, "="):
		k, v, _ := strings.Cut(p, "=")
		r = LabelReq{Key: strings.TrimSpace(k), Op: LabelEquals, Value: strings.TrimSpace(v)}
	default:
		r = LabelReq{Key: p, Op: LabelExists}
	}
	if err := checkLabelToken("key", r.Key, false); err != nil {
		return LabelReq{}, err
	}
	if err := checkLabelToken("value", r.Value, true); err != nil {
		return LabelReq{}, err
	}
	return r, nil
}

// checkLabelToken accepts the characters Kubernetes allows in label keys and
// values (alphanumerics, '-', '_', '.', and '/' in keys as a prefix
// separator), and '/' in values too: aurad's own labels name things as
// <plan>/<name> (schedule=reports/daily).
func checkLabelToken(what, s string, emptyOK bool) error {
	if s == "" {
		if emptyOK {
			return nil
		}
		return fmt.Errorf("empty %s", what)
	}
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '-', c == '_', c == '.':
		case c == '/':
		default:
			return fmt.Errorf("invalid character %q in %s %q", c, what, s)
		}
	}
	return nil
}

func validateSelector(sel []LabelReq) error {
	for _, r := range sel {
		if r.Op < LabelEquals || r.Op > LabelNotExists || r.Key == "" {
			return fmt.Errorf("%w: label requirement %q", ErrInvalid, r.String())
		}
	}
	return nil
}
