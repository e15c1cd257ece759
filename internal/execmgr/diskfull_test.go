package execmgr

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/aura-dev/aura/internal/store"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// fullForTransitions refuses the first n creations of transition tasks
// with store.ErrFull, as the SQLite store refuses new tasks while the disk
// is full.
type fullForTransitions struct {
	store.DB
	mu     sync.Mutex
	refuse int
}

func (f *fullForTransitions) Write(ctx context.Context, b store.Batch) *store.Pending {
	if t := b.Create; t != nil && t.Labels["aura.parent"] != "" {
		f.mu.Lock()
		refuse := f.refuse > 0
		f.refuse--
		f.mu.Unlock()
		if refuse {
			return store.Finished(fmt.Errorf("store: create task %s: %w", t.ID, store.ErrFull))
		}
	}
	return f.DB.Write(ctx, b)
}

// A state transition belongs to a task already accepted: while the disk is
// full its creation waits for space instead of failing the planning.
func TestTransitionWaitsForDiskSpace(t *testing.T) {
	mem := store.NewMemory(store.Options{Logger: quiet})
	t.Cleanup(func() { mem.Close() })
	m, fc := newManagerOn(t, &fullForTransitions{DB: mem, refuse: 2}, 4, true)
	ctx := context.Background()
	resp, err := m.Submit(ctx, &aurav1.SubmitRequest{Task: "planning/reach_goal"})
	if err != nil {
		t.Fatal(err)
	}
	<-fc.watch(resp.TaskId)
	done, err := mem.TasksWithStatus(ctx, int32(aurav1.TaskStatus_TASK_STATUS_SUCCEEDED))
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, row := range done {
		if row.Labels["aura.parent"] == resp.TaskId {
			ran++
		}
	}
	task, err := m.Get(ctx, resp.TaskId)
	if err != nil {
		t.Fatal(err)
	}
	if ran == 0 || strings.Contains(task.GetError().GetMessage(), "disk full") {
		t.Fatalf("no transition was recorded and run (task ended %s: %q): planning gave up on the full disk instead of waiting for space",
			task.Status, task.GetError().GetMessage())
	}
}
