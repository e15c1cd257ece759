package execmgr

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aura-dev/aura/internal/store"
	"github.com/aura-dev/aura/internal/testbin"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

func TestQueueBounds(t *testing.T) {
	m, _ := newManager(t, 1)
	m.backlog = newBacklog(3, 2) // 3 waiting in all, 2 per principal
	ctx := context.Background()
	t.Cleanup(func() { // before the manager's shutdown: nothing sleeps a minute
		m.mu.Lock()
		var ids []string
		for id := range m.live {
			ids = append(ids, id)
		}
		m.mu.Unlock()
		for _, id := range ids {
			_, _ = m.Cancel(ctx, id, "test over")
		}
	})
	submit := func(who string) (*aurav1.SubmitResponse, error) {
		return m.SubmitAs(ctx, who, &aurav1.SubmitRequest{Task: "bench/sleep"})
	}
	running, err := submit("a")
	if err != nil {
		t.Fatal(err)
	}
	// The running task does not count: only waiting ones do.
	var aWaiting []string
	for range 2 {
		resp, err := submit("a")
		if err != nil {
			t.Fatalf("a's waiting task within its bound: %v", err)
		}
		aWaiting = append(aWaiting, resp.TaskId)
	}
	_, err = submit("a")
	var full *QueueFullError
	if !errors.As(err, &full) || !full.PerPrincipal || full.Limit != 2 || !strings.Contains(err.Error(), "--max-queued-per-principal 2") {
		t.Fatalf("a's third waiting task: %v, want a per-principal QueueFullError naming the limit", err)
	}
	if _, err := submit("b"); err != nil {
		t.Fatalf("b within the total bound: %v", err)
	}
	_, err = submit("b")
	if !errors.As(err, &full) || full.PerPrincipal || full.Limit != 3 || !strings.Contains(err.Error(), "--max-queued 3") {
		t.Fatalf("beyond the total bound: %v, want a total QueueFullError naming the limit", err)
	}
	// A cancelled waiting task frees its place; so does one that starts.
	if _, err := m.Cancel(ctx, aWaiting[0], "make room"); err != nil {
		t.Fatal(err)
	}
	if _, err := submit("a"); err != nil {
		t.Fatalf("after a cancel: %v", err)
	}
	if _, err := m.Cancel(ctx, running.TaskId, "let the next start"); err != nil {
		t.Fatal(err)
	}
	if _, err := submit("b"); err != nil {
		t.Fatalf("after a waiting task started: %v", err)
	}
	m.mu.Lock()
	total, byA, byB := m.backlog.total, m.backlog.by["a"], m.backlog.by["b"]
	m.mu.Unlock()
	if total != 3 || byA != 1 || byB != 2 {
		t.Fatalf("backlog total %d, a %d, b %d; want 3, 1, 2", total, byA, byB)
	}
}

// A submission the store refuses, or one deduplicated, leaves no place
// taken in the queue bounds.
func TestQueueBoundsReleaseRefusedAndDeduplicated(t *testing.T) {
	st := store.NewMemory(store.Options{Logger: quiet})
	m, _ := newManagerOn(t, st, 1, true)
	ctx := context.Background()
	key := &aurav1.SubmitRequest{Task: "bench/noop", IdempotencyKey: "k"}
	first, err := m.SubmitAs(ctx, "a", key)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := m.SubmitAs(ctx, "a", key); err != nil || !again.Deduplicated || again.TaskId != first.TaskId {
		t.Fatalf("retry: %v %v", again, err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	for _, req := range []*aurav1.SubmitRequest{{Task: "bench/noop"}, {Task: "bench/noop", IdempotencyKey: "k2"}} {
		if _, err := m.SubmitAs(ctx, "a", req); err == nil {
			t.Fatalf("submission %v to a closed store succeeded", req)
		}
	}
	testbin.WaitFor(t, "the refused submissions to leave the queue bounds", 10*time.Second, func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.backlog.total == 0 && len(m.backlog.by) == 0
	})
}
