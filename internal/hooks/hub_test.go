package hooks

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/aura-dev/aura/internal/store"
	"github.com/aura-dev/aura/internal/testbin"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newLog returns a real in-memory event log whose commits feed a hub.
func newLog(t *testing.T) (*store.Memory, *Hub) {
	t.Helper()
	hub := NewHub()
	mem := store.NewMemory(store.Options{OnCommit: hub.Publish})
	t.Cleanup(func() { mem.Close() })
	startHub(t, hub, mem)
	return mem, hub
}

// startHub starts hub on log and shuts it down at the end of the test.
func startHub(t *testing.T, hub *Hub, log Log) {
	t.Helper()
	if err := hub.Start(context.Background(), log); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Shutdown)
}

func appendN(t *testing.T, mem *store.Memory, n int, hook bool) {
	t.Helper()
	if err := appendEvents(mem, n, hook); err != nil {
		t.Fatal(err)
	}
}

func appendEvents(mem *store.Memory, n int, hook bool) error {
	for i := range n {
		typ := "task.running"
		if hook {
			typ = AfterTaskRun
		}
		if err := mem.Write(context.Background(), store.Batch{Events: []store.Event{{TaskID: fmt.Sprint("t", i%3), Type: typ, Hook: hook}}}).Wait(); err != nil {
			return err
		}
	}
	return nil
}

// follow collects sequences until it has want of them.
func follow(t *testing.T, hub *Hub, after *uint64, f Filter, want int, during func()) []uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var (
		got     []uint64
		started = make(chan struct{})
		once    sync.Once
	)
	errDone := errors.New("done")
	done := make(chan error, 1)
	go func() {
		done <- hub.Follow(ctx, after, f, func(ev store.Event) (bool, error) {
			once.Do(func() { close(started) })
			got = append(got, ev.Seq)
			if len(got) == want {
				return false, errDone
			}
			return false, nil
		})
	}()
	if during != nil {
		during()
	}
	if err := <-done; !errors.Is(err, errDone) {
		t.Fatalf("Follow: %v (got %d of %d)", err, len(got), want)
	}
	return got
}

func consecutive(t *testing.T, got []uint64, from uint64) {
	t.Helper()
	for i, s := range got {
		if s != from+uint64(i) {
			t.Fatalf("sequence %d at position %d, want %d: %v", s, i, from+uint64(i), got)
		}
	}
}

func TestReplayThenLiveHasNoGapOrDuplicate(t *testing.T) {
	mem, hub := newLog(t)
	appendN(t, mem, 100, true)
	after := uint64(40)
	// 60 stored after 40, then 200 more written while following.
	got := follow(t, hub, &after, Filter{}, 260, func() {
		go func() {
			if err := appendEvents(mem, 200, true); err != nil {
				t.Error(err)
			}
		}()
	})
	consecutive(t, got, 41)
}

// countingLog counts the hub's reads of the log.
type countingLog struct {
	Log
	reads atomic.Int64
}

func (c *countingLog) Events(ctx context.Context, after uint64, f store.EventFilter, limit int) ([]store.Event, error) {
	c.reads.Add(1)
	return c.Log.Events(ctx, after, f, limit)
}

// newSmallLog is newLog with a ring of ringSize events and a log that
// counts its reads.
func newSmallLog(t *testing.T, ringSize int) (*store.Memory, *Hub, *countingLog) {
	t.Helper()
	hub := newHub(ringSize)
	mem := store.NewMemory(store.Options{OnCommit: hub.Publish})
	t.Cleanup(func() { mem.Close() })
	log := &countingLog{Log: mem}
	startHub(t, hub, log)
	return mem, hub, log
}

// A follower that falls further behind than the ring holds catches up from
// the log, then goes on from the ring, without a gap or a duplicate; the
// writer never waits for it.
func TestSlowFollowerCatchesUpFromTheLog(t *testing.T) {
	const ring = 64
	mem, hub, log := newSmallLog(t, ring)
	zero := uint64(0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	release := make(chan struct{})
	var got []uint64
	errDone := errors.New("done")
	done := make(chan error, 1)
	total := 10 * ring
	go func() {
		done <- hub.Follow(ctx, &zero, Filter{}, func(ev store.Event) (bool, error) {
			if len(got) == 0 {
				<-release // stall until the ring has moved far past us
			}
			got = append(got, ev.Seq)
			if len(got) == total {
				return false, errDone
			}
			return false, nil
		})
	}()
	appendN(t, mem, 1, true)
	waitFollowers(t, hub, 1)
	appendN(t, mem, total-1, true) // returns: nothing waits for the stalled follower
	before := log.reads.Load()
	close(release)
	if err := <-done; !errors.Is(err, errDone) {
		t.Fatal(err)
	}
	consecutive(t, got, 1)
	if log.reads.Load() == before {
		t.Errorf("a follower %d events behind a ring of %d did not read the log", total, ring)
	}
}

// A follower that never falls further behind than the ring holds (here the
// ring holds every event) reads memory, not the log.
func TestFollowerWithinTheRingDoesNotReadTheLog(t *testing.T) {
	mem, hub, log := newSmallLog(t, 1024)
	appendN(t, mem, 10, true)
	got := follow(t, hub, nil, Filter{HooksOnly: true}, 500, func() {
		waitFollowers(t, hub, 1)
		for range 50 {
			appendN(t, mem, 10, true)
			appendN(t, mem, 5, false)
		}
	})
	if len(got) != 500 {
		t.Fatalf("got %d events", len(got))
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("sequence %d after %d", got[i], got[i-1])
		}
	}
	if n := log.reads.Load(); n != 0 {
		t.Errorf("a follower that kept up read the log %d times", n)
	}
}

func waitFollowers(t *testing.T, hub *Hub, n int) {
	t.Helper()
	testbin.WaitFor(t, fmt.Sprintf("%d followers to join", n), 5*time.Second, func() bool { return hub.Followers() >= n })
}

func TestLiveFollowerStartsNow(t *testing.T) {
	mem, hub := newLog(t)
	appendN(t, mem, 10, true)
	got := follow(t, hub, nil, Filter{}, 5, func() {
		waitFollowers(t, hub, 1)
		appendN(t, mem, 5, true)
	})
	consecutive(t, got, 11)
}

func TestFilters(t *testing.T) {
	mem, hub := newLog(t)
	appendN(t, mem, 30, false) // task events
	appendN(t, mem, 30, true)  // hook events
	zero := uint64(0)
	hooksOnly := follow(t, hub, &zero, Filter{HooksOnly: true}, 30, nil)
	consecutive(t, hooksOnly, 31)
	oneTask := follow(t, hub, &zero, Filter{TaskID: "t1", Hooks: []string{AfterTaskRun}}, 10, nil)
	for _, s := range oneTask {
		if s <= 30 || (s-31)%3 != 1 {
			t.Fatalf("event %d is not an after_task_run of t1", s)
		}
	}
}

func TestResumeOlderThanRetentionIsOutOfRange(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	hub := NewHub()
	mem := store.NewMemory(store.Options{Retain: time.Hour, Now: func() time.Time { return clock() }, OnCommit: hub.Publish})
	defer mem.Close()
	startHub(t, hub, mem)
	appendN(t, mem, 10, true)
	now = now.Add(2 * time.Hour)
	if _, err := mem.Prune(context.Background()); err != nil {
		t.Fatal(err)
	}
	appendN(t, mem, 3, true)
	after := uint64(2)
	err := hub.Follow(context.Background(), &after, Filter{}, func(store.Event) (bool, error) { return true, nil })
	var oor *OutOfRangeError
	if !errors.As(err, &oor) || oor.Oldest != 11 {
		t.Fatalf("got %v, want OutOfRangeError naming oldest 11", err)
	}
	// Resuming right at the edge of what is kept is fine.
	after = 10
	got := follow(t, hub, &after, Filter{}, 3, nil)
	consecutive(t, got, 11)
}

// A follower of one task, live, gets that task's events and no other while
// other tasks' events go by, and while it waits it does not count as
// behind.
func TestTaskFollowerGetsItsTaskOnly(t *testing.T) {
	mem, hub := newLog(t)
	appendN(t, mem, 6, true) // t0, t1, t2, t0, t1, t2
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type got struct {
		seq  uint64
		task string
	}
	var seen []got
	errDone := errors.New("done")
	done := make(chan error, 1)
	go func() {
		done <- hub.Follow(ctx, nil, Filter{TaskID: "t1"}, func(ev store.Event) (bool, error) {
			seen = append(seen, got{ev.Seq, ev.TaskID})
			if len(seen) == 10 {
				return false, errDone
			}
			return false, nil
		})
	}()
	waitFollowers(t, hub, 1)
	// Others' events while it waits: it is idle, not behind.
	for range 20 {
		if err := mem.Write(ctx, store.Batch{Events: []store.Event{{TaskID: "t0", Type: "step.started"}, {TaskID: "t2", Type: "step.started"}}}).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	testbin.WaitFor(t, "a follower waiting for its task to show no lag", 5*time.Second, func() bool {
		_, lag := hub.Lag()
		return lag == 0
	})
	appendN(t, mem, 30, true) // ten events of t1 among them
	if err := <-done; !errors.Is(err, errDone) {
		t.Fatal(err)
	}
	for i, g := range seen {
		if g.task != "t1" || (i > 0 && g.seq <= seen[i-1].seq) {
			t.Fatalf("event %d: %+v (all: %v)", i, g, seen)
		}
	}
	if seen[0].seq <= 46 {
		t.Fatalf("a live follower got event %d, from before it started", seen[0].seq)
	}
}

// A follower that lags while the events it still needs are pruned from the
// log gets an OutOfRangeError, never a silent gap.
func TestFollowerPrunedWhileLaggingIsOutOfRange(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	hub := newHub(8)
	mem := store.NewMemory(store.Options{Retain: time.Hour, Now: clock, OnCommit: hub.Publish})
	defer mem.Close()
	startHub(t, hub, mem)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stalled, release := make(chan struct{}), make(chan struct{})
	var got []uint64
	zero := uint64(0)
	done := make(chan error, 1)
	go func() {
		done <- hub.Follow(ctx, &zero, Filter{}, func(ev store.Event) (bool, error) {
			got = append(got, ev.Seq)
			if len(got) == 1 {
				close(stalled)
				<-release
			}
			return false, nil
		})
	}()
	appendN(t, mem, 1, true)
	<-stalled
	appendN(t, mem, 50, true)
	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	if _, err := mem.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	appendN(t, mem, 3, true) // 52..54: all the log holds now
	close(release)
	err := <-done
	var oor *OutOfRangeError
	if !errors.As(err, &oor) || oor.After != 1 || oor.Oldest != 52 {
		t.Fatalf("got %v after events %v, want OutOfRangeError after 1, oldest 52", err, got)
	}
}

// Shutting the hub down ends the followers still waiting, with ErrClosed,
// and refuses new ones: nothing follows a hub that has stopped.
func TestShutdownEndsFollowers(t *testing.T) {
	_, hub := newLog(t)
	done := make(chan error, 1)
	go func() {
		done <- hub.Follow(context.Background(), nil, Filter{}, func(store.Event) (bool, error) { return false, nil })
	}()
	deadline := time.Now().Add(10 * time.Second)
	for hub.Followers() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the follower never started")
		}
		time.Sleep(time.Millisecond)
	}
	hub.Shutdown()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("Follow after Shutdown returned %v; want ErrClosed", err)
	}
	if err := hub.Follow(context.Background(), nil, Filter{}, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("a new Follow after Shutdown returned %v; want ErrClosed", err)
	}
}
