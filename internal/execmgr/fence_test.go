package execmgr

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/aura-dev/aura/internal/admission"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// fencingLedger is an in-memory Ledger whose grants carry a fencing
// token, as a cluster's does, and which notes every release.
type fencingLedger struct {
	*admission.LocalLedger
	mu       sync.Mutex
	next     int64
	fences   map[string]map[string]int64
	released []string // holders, in the order their releases came
}

func newFencingLedger() *fencingLedger {
	return &fencingLedger{LocalLedger: admission.NewLocalLedger(), next: 100, fences: map[string]map[string]int64{}}
}

func (l *fencingLedger) Acquire(ctx context.Context, holder string, claims []admission.Claim) (bool, int, error) {
	ok, full, err := l.LocalLedger.Acquire(ctx, holder, claims)
	if ok {
		l.mu.Lock()
		l.next++
		f := map[string]int64{}
		for _, c := range claims {
			f[c.Key] = l.next
		}
		l.fences[holder] = f
		l.mu.Unlock()
	}
	return ok, full, err
}

func (l *fencingLedger) Release(ctx context.Context, holder string, keys []string) error {
	l.mu.Lock()
	delete(l.fences, holder)
	l.released = append(l.released, holder)
	l.mu.Unlock()
	return l.LocalLedger.Release(ctx, holder, keys)
}

func (l *fencingLedger) Fences(holder string) map[string]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.fences[holder])
}

func (l *fencingLedger) releasedBy(holder string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Contains(l.released, holder)
}

// The fencing token of a granted shared slot is in the task's record
// (engine's tests show it reaching exec steps' environment).
func TestFencingTokenTravelsWithTheTask(t *testing.T) {
	l := newFencingLedger()
	m, fc := newManager(t, 2, withLedger(l, "account:main"))
	id := submitTagged(t, m, "account:main", "local")
	within(t, fc.watch(id), "the task to finish")
	task := taskNow(t, m, id)
	if task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("status %s: %v", task.Status, task.Error)
	}
	if want := map[string]int64{"account:main": 101}; !maps.Equal(task.Fences, want) {
		t.Fatalf("Task.fences %v, want %v", task.Fences, want)
	}
}

// A task the Ledger refused that leaves the queue without a slot is
// withdrawn from the Ledger's waiters.
func TestARefusedTaskThatLeavesIsWithdrawn(t *testing.T) {
	l := newFencingLedger()
	if ok, _, _ := l.Acquire(context.Background(), "elsewhere", []admission.Claim{{Key: "account:main", Limit: 1}}); !ok {
		t.Fatal("setup: the other node's claim was refused")
	}
	m, _ := newManager(t, 2, withLedger(l, "account:main"))
	id := submitTagged(t, m, "account:main")
	pollUntil(t, "the task is refused and waits", func() bool {
		adm, _ := m.Stats()
		return adm.Waiting == 1 && adm.InUse == 0
	})
	if _, err := m.Cancel(context.Background(), id, "gave up"); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, "the cancelled waiter is withdrawn from the ledger", func() bool { return l.releasedBy(id) })
}

// Ending the tasks that hold cluster slots: INTERRUPTED with the kind
// given, steps stopped, slots given back, and not requeued even when the
// task says on_interrupt: requeue.
func TestEndInterruptedEndsHoldersWithTheKind(t *testing.T) {
	l := newFencingLedger()
	m, fc := newManager(t, 4, withLedger(l, "account:main", "account:alt"))
	ctx := context.Background()
	var ids []string
	for _, tc := range []struct{ task, key string }{{"lifecycle/once", "account:main"}, {"lifecycle/requeue", "account:alt"}} {
		resp, err := m.Submit(ctx, &aurav1.SubmitRequest{Task: tc.task, ResourceTags: []string{tc.key}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, resp.TaskId)
	}
	for _, id := range ids {
		pollUntil(t, id+" runs", func() bool { return taskNow(t, m, id).Status == aurav1.TaskStatus_TASK_STATUS_RUNNING })
	}
	// A task waiting in the queue holds no slot: it is left alone.
	queued, err := m.Submit(ctx, &aurav1.SubmitRequest{Task: "lifecycle/once", ResourceTags: []string{"account:main"}})
	if err != nil {
		t.Fatal(err)
	}
	cause := errors.New("no renewal of the node's etcd lease succeeded for 5s")
	got := m.EndInterrupted(append(ids, "not-a-task", queued.TaskId), KindLeaseLost, cause)
	if !slices.Equal(got, ids) {
		t.Fatalf("EndInterrupted stopped %v, want %v", got, ids)
	}
	for _, id := range ids {
		within(t, fc.watch(id), "task "+id+" to end")
		task := taskNow(t, m, id)
		if task.Status != aurav1.TaskStatus_TASK_STATUS_INTERRUPTED || task.Error.GetKind() != "lease_lost" || task.Error.GetMessage() != cause.Error() {
			t.Fatalf("task %s (%s): %s %v; want INTERRUPTED, lease_lost, %q", id, task.Task, task.Status, task.Error, cause)
		}
		if task.Attempt != 1 {
			t.Fatalf("task %s was requeued (attempt %d)", id, task.Attempt)
		}
	}
	pollUntil(t, "the queued task gets the slot given back", func() bool {
		return taskNow(t, m, queued.TaskId).Status == aurav1.TaskStatus_TASK_STATUS_RUNNING
	})
	if _, err := m.Cancel(ctx, queued.TaskId, "done"); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, "the slots are given back", func() bool { return l.Held("account:main") == 0 && l.Held("account:alt") == 0 })
}
