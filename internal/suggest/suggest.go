// Package suggest finds the names a mistyped name was probably meant to be,
// for "did you mean" hints in error messages.
package suggest

import (
	"slices"
	"strings"
)

// Closest returns up to three candidates close to name, best first: those
// whose last "/" segment is name (a task given without its plan), those
// within a small edit distance (a typo, a swapped letter), and those name
// abbreviates. None when
// nothing is close: a wild guess is worse than no guess.
func Closest(name string, candidates []string) []string {
	type scored struct {
		s    string
		dist int
	}
	lname := strings.ToLower(name)
	limit := max(1, min(3, len([]rune(name))/4))
	var found []scored
	for _, c := range candidates {
		if c == name {
			continue
		}
		lc := strings.ToLower(c)
		if i := strings.LastIndexByte(lc, '/'); i >= 0 && !strings.Contains(lname, "/") && lc[i+1:] == lname {
			found = append(found, scored{c, 0})
			continue
		}
		if d := distance(lname, lc); d <= limit {
			found = append(found, scored{c, d})
		} else if abbreviates(lname, lc) {
			// "secs" for "seconds": ranked after typos.
			found = append(found, scored{c, limit + 1})
		}
	}
	slices.SortStableFunc(found, func(a, b scored) int {
		if a.dist != b.dist {
			return a.dist - b.dist
		}
		return strings.Compare(a.s, b.s)
	})
	// Only the best distance counts: "helo" suggests "hello", not "help"
	// and "hello" and "hero".
	var out []string
	for _, f := range found {
		if f.dist > found[0].dist || len(out) == 3 {
			break
		}
		out = append(out, f.s)
	}
	return out
}

// Hint is Closest as a clause for an error message: ` (did you mean "a"?)`,
// ` (did you mean "a" or "b"?)`, or "" when nothing is close.
func Hint(name string, candidates []string) string {
	c := Closest(name, candidates)
	if len(c) == 0 {
		return ""
	}
	q := make([]string, len(c))
	for i, s := range c {
		q[i] = `"` + s + `"`
	}
	return " (did you mean " + strings.Join(q, " or ") + "?)"
}

// abbreviates reports whether a (3 runes or more) is an abbreviation of b:
// b starts with a's first rune and holds all of a's runes in order.
func abbreviates(a, b string) bool {
	ra, rb := []rune(a), []rune(b)
	if len(ra) < 3 || len(ra) >= len(rb) || ra[0] != rb[0] {
		return false
	}
	i := 0
	for _, r := range rb {
		if i < len(ra) && r == ra[i] {
			i++
		}
	}
	return i == len(ra)
}

// distance is the Damerau-Levenshtein distance (optimal string alignment)
// between a and b, in runes.
func distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}
