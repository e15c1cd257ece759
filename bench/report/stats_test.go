package main

import (
	"math"
	"testing"
)

func TestSummarize(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name string
		in   []float64
		want Summary
		ok   bool
	}{
		{"one run", []float64{5}, Summary{Median: 5, Min: 5, Max: 5, Runs: 1}, true},
		{"odd count, unsorted", []float64{30, 10, 20}, Summary{Median: 20, Min: 10, Max: 30, Runs: 3}, true},
		{"even count takes the mean of the middle two", []float64{4, 1, 3, 2}, Summary{Median: 2.5, Min: 1, Max: 4, Runs: 4}, true},
		{"an outlier does not move the median", []float64{100, 101, 1e9}, Summary{Median: 101, Min: 100, Max: 1e9, Runs: 3}, true},
		{"NaN is left out", []float64{nan, 2, 4}, Summary{Median: 3, Min: 2, Max: 4, Runs: 2}, true},
		{"nothing", nil, Summary{}, false},
		{"only NaN", []float64{nan}, Summary{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Summarize(tt.in)
			if got != tt.want || ok != tt.ok {
				t.Errorf("Summarize(%v) = %+v, %v; want %+v, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestSummarizeLeavesInputAlone(t *testing.T) {
	in := []float64{3, 1, 2}
	Summarize(in)
	if in[0] != 3 || in[1] != 1 || in[2] != 2 {
		t.Errorf("Summarize reordered its input: %v", in)
	}
}
