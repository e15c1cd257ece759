package hooks

import (
	"context"
	"fmt"
	"testing"

	"github.com/aura-dev/aura/internal/store"
)

// endWrite is a task's end as the manager writes it: task.finished and
// two hook events in one write, which the SQLite store keeps in one row.
func endWrite(s store.DB, i int) error {
	id := fmt.Sprint("t", i)
	return s.Write(context.Background(), store.Batch{Events: []store.Event{
		{TaskID: id, Type: "task.finished", Data: []byte("f")},
		{TaskID: id, Type: AfterTaskSuccess, Hook: true, Data: []byte("s")},
		{TaskID: id, Type: AfterTaskRun, Hook: true, Data: []byte("r")},
	}}).Wait()
}

// A subscriber resuming after a sequence in the middle of what one write
// stored (one packed row of the SQLite log), far behind the ring so it
// replays from the file, gets every event after it once and in order,
// then the live ones with no gap or duplicate at the seam.
func TestResumeInsidePackedRowFromSQLite(t *testing.T) {
	hub := newHub(8)
	s, err := store.Open(context.Background(), t.TempDir(), store.Options{Sync: store.SyncOff, OnCommit: hub.Publish})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	startHub(t, hub, s)
	const stored, live = 40, 15
	for i := range stored {
		if err := endWrite(s, i); err != nil {
			t.Fatal(err)
		}
	}
	isHook := func(seq uint64) bool { return seq%3 != 1 } // each write: finished, hook, hook
	for _, after := range []uint64{1, 2, 3, 59, 118, 119} {
		for _, f := range []Filter{{}, {HooksOnly: true}, {Hooks: []string{AfterTaskRun}}} {
			t.Run(fmt.Sprintf("after=%d/%+v", after, f), func(t *testing.T) {
				_, last, err := s.EventBounds(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				var want []uint64
				for seq := after + 1; seq <= last+3*live; seq++ {
					switch {
					case len(f.Hooks) > 0 && seq%3 != 0, f.HooksOnly && !isHook(seq):
						continue
					}
					want = append(want, seq)
				}
				from := last
				written := make(chan struct{})
				got := follow(t, hub, &after, f, len(want), func() {
					go func() {
						defer close(written)
						for i := range live {
							if err := endWrite(s, int(from)+i); err != nil {
								t.Error(err)
							}
						}
					}()
				})
				<-written
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("got %v\nwant %v", got, want)
				}
			})
		}
	}
}
