package admission

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrInvalidTag is matched (errors.Is) by every *TagError.
var ErrInvalidTag = errors.New("invalid resource tag")

// TagError reports a resource tag that cannot be used; callers map it to
// INVALID_ARGUMENT at submit time.
type TagError struct {
	Tag    string // the tag as written
	Reason string
}

func (e *TagError) Error() string {
	return fmt.Sprintf("invalid resource tag %q: %s", e.Tag, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidTag) true for every *TagError.
func (e *TagError) Is(target error) bool { return target == ErrInvalidTag }

// Tag is one parsed resource tag.
type Tag struct {
	Key      string
	Limit    int  // >= 1; 1 when the tag wrote no limit
	Explicit bool // the tag wrote a limit
}

// String returns the canonical form of t; ParseTag(t.String()) == t.
func (t Tag) String() string {
	if t.Explicit {
		return t.Key + ":" + strconv.Itoa(t.Limit)
	}
	return t.Key
}

// ParseTag parses one resource tag (see the package comment for the rules).
// It never panics; every error is a *TagError naming the tag.
func ParseTag(s string) (Tag, error) {
	bad := func(reason string) (Tag, error) {
		return Tag{}, &TagError{Tag: s, Reason: reason}
	}
	t := strings.TrimSpace(s)
	if t == "" {
		return bad("empty tag")
	}
	if !utf8.ValidString(t) {
		return bad("not valid UTF-8")
	}
	for _, r := range t {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return bad("contains whitespace or a control character")
		}
	}
	tag := Tag{Key: t, Limit: 1}
	if i := strings.LastIndexByte(t, ':'); i >= 0 {
		suffix := t[i+1:]
		if suffix == "" {
			return bad("nothing after the last ':'")
		}
		if isInteger(suffix) {
			n, err := strconv.Atoi(suffix)
			if err != nil {
				return bad("limit out of range")
			}
			if n <= 0 {
				return bad("limit must be a positive integer")
			}
			tag = Tag{Key: t[:i], Limit: n, Explicit: true}
		}
	}
	if tag.Key == "" {
		return bad("empty key")
	}
	for seg := range strings.SplitSeq(tag.Key, ":") {
		if seg == "" {
			return bad("empty segment between ':'")
		}
	}
	return tag, nil
}

// isInteger reports whether s is an optional sign followed by ASCII digits.
func isInteger(s string) bool {
	if s != "" && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// ParseTags parses a task's tags. A key named more than once is one slot:
// the result keeps the first occurrence's position and the explicit limit if
// any occurrence wrote one. Two different explicit limits for the same key in
// one task are a *TagError, since the task contradicts itself.
func ParseTags(tags []string) ([]Tag, error) {
	out := make([]Tag, 0, len(tags))
	for _, s := range tags {
		t, err := ParseTag(s)
		if err != nil {
			return nil, err
		}
		dup := false
		for i := range out {
			if out[i].Key != t.Key {
				continue
			}
			dup = true
			switch {
			case !t.Explicit:
			case !out[i].Explicit:
				out[i] = t
			case out[i].Limit != t.Limit:
				return nil, &TagError{Tag: s, Reason: fmt.Sprintf(
					"limit %d contradicts %q earlier in the same task", t.Limit, out[i].String())}
			}
			break
		}
		if !dup {
			out = append(out, t)
		}
	}
	return out, nil
}
