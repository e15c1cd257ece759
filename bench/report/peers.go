package main

import "bytes"

// The section of BENCHMARKS.md that `make bench-peers` (bench/peers)
// generates lies between these markers. This report does not measure it;
// it carries it over from the file it replaces.
const (
	peersBegin = "<!-- bench-peers:begin -->"
	peersEnd   = "<!-- bench-peers:end -->"
)

// keepPeersSection returns rendered followed by the bench-peers section of
// old, the report being replaced; rendered alone when old has none.
func keepPeersSection(old, rendered []byte) []byte {
	i := bytes.Index(old, []byte(peersBegin))
	j := bytes.Index(old, []byte(peersEnd))
	if i < 0 || j < i {
		return rendered
	}
	out := append(bytes.TrimRight(rendered, "\n"), "\n\n"...)
	out = append(out, old[i:j+len(peersEnd)]...)
	return append(out, '\n')
}
