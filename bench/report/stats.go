package main

import (
	"math"
	"slices"
)

// Summary describes one figure's values across the repeated runs.
type Summary struct {
	Median, Min, Max float64
	Runs             int
}

// Summarize returns the median, minimum and maximum of vs; NaN values (a
// division by a zero metric) are left out. ok is false when nothing is
// left. With an even count the median is the mean of the middle two.
func Summarize(vs []float64) (s Summary, ok bool) {
	clean := make([]float64, 0, len(vs))
	for _, v := range vs {
		if !math.IsNaN(v) {
			clean = append(clean, v)
		}
	}
	if len(clean) == 0 {
		return Summary{}, false
	}
	slices.Sort(clean)
	n := len(clean)
	med := clean[n/2]
	if n%2 == 0 {
		med = (clean[n/2-1] + clean[n/2]) / 2
	}
	return Summary{Median: med, Min: clean[0], Max: clean[n-1], Runs: n}, true
}
