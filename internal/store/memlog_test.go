package store

import "testing"

// The chunked log keeps order and indexes across chunk boundaries while
// the front is pruned in uneven steps.
func TestEventLogAcrossChunks(t *testing.T) {
	var l eventLog
	const total = 3*logChunk + 17
	for i := 1; i <= total; i++ {
		l.append(&Event{Seq: uint64(i)})
	}
	dropped := 0
	for _, k := range []int{1, logChunk - 1, logChunk + 5, 100} {
		l.dropFront(k)
		dropped += k
		if l.len() != total-dropped {
			t.Fatalf("after dropping %d: len %d", dropped, l.len())
		}
		for _, i := range []int{0, 1, logChunk - 1, logChunk, l.len() - 1} {
			if i < l.len() && l.at(i).Seq != uint64(dropped+i+1) {
				t.Fatalf("after dropping %d: at(%d) = %d, want %d", dropped, i, l.at(i).Seq, dropped+i+1)
			}
		}
	}
	l.dropFront(l.len())
	if l.len() != 0 || len(l.chunks) != 0 {
		t.Fatalf("emptied log: len %d, %d chunks", l.len(), len(l.chunks))
	}
	l.append(&Event{Seq: total + 1})
	if l.at(0).Seq != total+1 {
		t.Fatalf("append after emptying: %d", l.at(0).Seq)
	}
}
