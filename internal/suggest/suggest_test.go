package suggest

import (
	"slices"
	"testing"
)

func TestClosest(t *testing.T) {
	tasks := []string{"demo/hello", "demo/slow", "demo/fail", "demo/count", "slack/post_message", "web/check", "web/check_many"}
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"demo/helo", []string{"demo/hello"}},
		{"demo/hlelo", []string{"demo/hello"}},           // swapped letters
		{"Demo/Hello", []string{"demo/hello"}},           // case
		{"post_message", []string{"slack/post_message"}}, // plan left out
		{"web/chek", []string{"web/check"}},
		{"web/chk_mny", []string{"web/check_many"}}, // abbreviated
		{"demo/zzzzzz", nil},                        // nothing close: no wild guess
		{"x", nil},
	} {
		if got := Closest(tc.name, tasks); !slices.Equal(got, tc.want) {
			t.Errorf("Closest(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := Hint("lgo", []string{"log", "noop", "fail"}); got != ` (did you mean "log"?)` {
		t.Errorf("Hint = %q", got)
	}
	if got := Hint("secs", []string{"seconds", "name"}); got != ` (did you mean "seconds"?)` {
		t.Errorf("Hint of an abbreviation = %q", got)
	}
	if got := Hint("zzz", []string{"log"}); got != "" {
		t.Errorf("Hint with nothing close = %q", got)
	}
}

func TestDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"a", "", 1}, {"kitten", "sitting", 3}, {"ab", "ba", 1}, {"héllo", "hello", 1},
	} {
		if got := distance(tc.a, tc.b); got != tc.want {
			t.Errorf("distance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
