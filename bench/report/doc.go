// Command report runs Aura's benchmark suite (the figures the project tracks), takes the
// median of repeated runs of each figure, and writes BENCHMARKS.md: the
// machine, the date, the commit, one row per figure with its bar and the
// command that reproduces it, and bench/notes.md as the commentary. The raw
// `go test -bench` output goes to bench.txt for benchstat.
//
// Usage (from the repository, as `make bench` and `make bench-quick` do):
//
//	go run ./bench/report [-quick] [-only REGEXP] [-out BENCHMARKS.md] [-raw bench.txt]
package main
