package execmgr

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aura-dev/aura/internal/admission"
	"github.com/aura-dev/aura/internal/testbin"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// gatedLedger is an in-memory Ledger whose answers wait for a gate, as a
// ledger across the network waits for its round trip; until the gate
// opens, every claim blocks (or ends with its context). It can also fail,
// as an unreachable ledger does.
type gatedLedger struct {
	*admission.LocalLedger
	gate  chan struct{} // closed: claims are answered
	asked chan string   // the holder of each claim, as it starts waiting
	fails atomic.Int32  // the next this many answers are errors; negative: all
}

var errUnreachable = errors.New("ledger unreachable")

func newGatedLedger() *gatedLedger {
	return &gatedLedger{LocalLedger: admission.NewLocalLedger(), gate: make(chan struct{}), asked: make(chan string, 64)}
}

func (l *gatedLedger) Acquire(ctx context.Context, holder string, claims []admission.Claim) (bool, int, error) {
	select {
	case l.asked <- holder:
	default:
	}
	select {
	case <-l.gate:
	case <-ctx.Done():
		return false, 0, ctx.Err()
	}
	if n := l.fails.Load(); n < 0 || (n > 0 && l.fails.CompareAndSwap(n, n-1)) {
		return false, 0, errUnreachable
	}
	return l.LocalLedger.Acquire(ctx, holder, claims)
}

// withLedger makes keys shared, counted by l.
func withLedger(l admission.Ledger, keys ...string) func(*Config) {
	return func(c *Config) { c.Ledger, c.SharedResources = l, keys }
}

func submitTagged(t *testing.T, m *Manager, tags ...string) string {
	t.Helper()
	resp, err := m.Submit(context.Background(), &aurav1.SubmitRequest{Task: "bench/noop", ResourceTags: tags})
	if err != nil {
		t.Fatal(err)
	}
	return resp.TaskId
}

// within fails the test unless ch is ready within a generous bound: a
// stalled manager fails the test instead of hanging it.
func within[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// pollUntil waits (bounded) until cond holds.
func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func taskNow(t *testing.T, m *Manager, id string) *aurav1.Task {
	t.Helper()
	task, err := m.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return task
}

func TestSlowLedgerStallsOnlyItsTasks(t *testing.T) {
	l := newGatedLedger()
	m, fc := newManager(t, 4, withLedger(l, "shared"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	waiting := submitTagged(t, m, "shared")
	within(t, l.asked, "the claim to reach the ledger")

	// The ledger does not answer; everything else still does.
	local := submitTagged(t, m, "local")
	within(t, fc.watch(local), "the task on a local key to finish")
	if got := taskNow(t, m, local).Status; got != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("task on a local key: %s", got)
	}
	if got := taskNow(t, m, waiting).Status; got != aurav1.TaskStatus_TASK_STATUS_QUEUED {
		t.Fatalf("task waiting on the ledger: %s, want QUEUED", got)
	}
	adm, counts := m.Stats()
	if counts[aurav1.TaskStatus_TASK_STATUS_QUEUED.String()] != 1 || adm.InUse != 1 {
		t.Fatalf("stats while the ledger blocks: %+v %v; want the claiming task queued, holding its slot here", adm, counts)
	}
	if ps, _ := m.Principals(); len(ps) != 1 {
		t.Fatalf("principals while the ledger blocks: %+v", ps)
	}
	task, err := m.Cancel(ctx, waiting, "no longer needed")
	if err != nil {
		t.Fatal(err)
	}
	if task.Status != aurav1.TaskStatus_TASK_STATUS_CANCELLED || task.Error.GetMessage() != "no longer needed" || task.StartedAt != nil {
		t.Fatalf("cancelled while claiming: %s %v started=%v", task.Status, task.Error, task.StartedAt)
	}
	if adm, _ := m.Stats(); adm.InUse != 0 || l.Held("shared") != 0 {
		t.Fatalf("after the cancel: %d slots in use here, %d in the ledger; want none", adm.InUse, l.Held("shared"))
	}

	// Once the ledger answers, tasks on the shared key run and give it back.
	next := submitTagged(t, m, "shared")
	within(t, l.asked, "the next claim to reach the ledger")
	close(l.gate)
	within(t, fc.watch(next), "the shared task to finish")
	if got := taskNow(t, m, next).Status; got != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("task on the shared key: %s", got)
	}
	pollUntil(t, "the shared slot is given back", func() bool { return l.Held("shared") == 0 })
}

func TestLedgerRefusalWaitsForTheSlot(t *testing.T) {
	// Another daemon holds the one slot of "shared": the task is refused,
	// waits without holding anything here, and starts once told the slot
	// is free.
	l := admission.NewLocalLedger()
	if ok, _, _ := l.Acquire(context.Background(), "elsewhere", []admission.Claim{{Key: "shared", Limit: 1}}); !ok {
		t.Fatal("setup: the other daemon's claim was refused")
	}
	m, fc := newManager(t, 1, withLedger(l, "shared"))
	refused := submitTagged(t, m, "shared")
	pollUntil(t, "the task is back in the queue", func() bool {
		adm, _ := m.Stats()
		return adm.Waiting == 1 && adm.InUse == 0
	})
	// Its global slot is free again: a task on a local key runs.
	local := submitTagged(t, m)
	within(t, fc.watch(local), "the local task to finish")
	if got := taskNow(t, m, refused).Status; got != aurav1.TaskStatus_TASK_STATUS_QUEUED {
		t.Fatalf("refused task: %s, want QUEUED", got)
	}
	if err := l.Release(context.Background(), "elsewhere", []string{"shared"}); err != nil {
		t.Fatal(err)
	}
	m.ResourcesFreed("shared")
	within(t, fc.watch(refused), "the refused task to finish")
	if got := taskNow(t, m, refused).Status; got != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("refused task after the slot freed: %s", got)
	}
}

func TestSharedKeyTasksAllRun(t *testing.T) {
	// Tasks on one shared slot follow each other: each end gives the slot
	// back to the ledger after the next task may have been refused it, and
	// that refusal must not leave the next one waiting for ever.
	l := admission.NewLocalLedger()
	m, fc := newManager(t, 8, withLedger(l, "shared"))
	var ids []string
	for range 20 {
		ids = append(ids, submitTagged(t, m, "shared"))
	}
	for _, id := range ids {
		within(t, fc.watch(id), "task "+id+" to finish")
		if got := taskNow(t, m, id).Status; got != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
			t.Fatalf("task %s: %s", id, got)
		}
	}
	pollUntil(t, "the shared slot is given back", func() bool { return l.Held("shared") == 0 })
}

func TestLedgerErrorsAreRetried(t *testing.T) {
	l := newGatedLedger()
	close(l.gate)
	l.fails.Store(2)
	var logs testbin.SyncBuffer
	m, fc := newManager(t, 2, withLedger(l, "shared"), func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	m.ledgerBackoff = time.Millisecond
	id := submitTagged(t, m, "shared")
	within(t, fc.watch(id), "the task to finish")
	if got := taskNow(t, m, id).Status; got != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("task after two ledger errors: %s", got)
	}
	if n := strings.Count(logs.String(), "claiming shared resource slots failed; asking again"); n != 2 {
		t.Fatalf("%d retries logged, want 2:\n%s", n, logs.String())
	}
}

func TestLedgerFailureEndsTheTaskSayingWhy(t *testing.T) {
	l := newGatedLedger()
	close(l.gate)
	l.fails.Store(-1)
	var logs testbin.SyncBuffer
	m, fc := newManager(t, 2, withLedger(l, "shared"), func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	m.ledgerBackoff = time.Millisecond
	id := submitTagged(t, m, "shared", "local")
	within(t, fc.watch(id), "the task to end")
	task := taskNow(t, m, id)
	if task.Status != aurav1.TaskStatus_TASK_STATUS_FAILED || task.StartedAt != nil || task.AdmittedAt != nil {
		t.Fatalf("task on an unreachable ledger: %s started=%v admitted=%v; want FAILED, never started", task.Status, task.StartedAt, task.AdmittedAt)
	}
	for _, want := range []string{`claiming the shared resource slots ["shared"] failed 5 times`, "ledger unreachable", "submit the task again"} {
		if !strings.Contains(task.Error.GetMessage(), want) {
			t.Fatalf("error %q does not say %q", task.Error.GetMessage(), want)
		}
	}
	if !strings.Contains(logs.String(), "a task did not start: its shared resource slots could not be claimed") {
		t.Fatalf("the failure is not logged:\n%s", logs.String())
	}
	// Nothing is held: its local key is free for the next task.
	if adm, _ := m.Stats(); adm.InUse != 0 || l.Held("shared") != 0 {
		t.Fatalf("after the failure: %+v, ledger holds %d", adm, l.Held("shared"))
	}
	next := submitTagged(t, m, "local")
	within(t, fc.watch(next), "a task on the freed local key to finish")
}

func TestShutdownWhileClaimingLeavesTheTaskQueued(t *testing.T) {
	l := newGatedLedger()
	m, _ := newManager(t, 2, withLedger(l, "shared"))
	id := submitTagged(t, m, "shared")
	within(t, l.asked, "the claim to reach the ledger")
	done := make(chan struct{})
	go func() {
		m.Shutdown(context.Background())
		close(done)
	}()
	within(t, done, "Shutdown to return while the ledger blocks")
	row, err := m.store.GetTask(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	task, err := decodeTask(row)
	if err != nil {
		t.Fatal(err)
	}
	if task.Status != aurav1.TaskStatus_TASK_STATUS_QUEUED {
		t.Fatalf("stored status after shutdown: %s, want QUEUED (it starts again on the next start)", task.Status)
	}
}

func TestSharedResourcesNeedALedger(t *testing.T) {
	m, _ := newManager(t, 1)
	_, err := New(Config{Plans: m.Plans(), Store: m.store, Hooks: m.hooks, Engine: m.engine, SharedResources: []string{"shared"}})
	if err == nil || !strings.Contains(err.Error(), "SharedResources need a Ledger") {
		t.Fatalf("SharedResources without a Ledger: %v", err)
	}
}
