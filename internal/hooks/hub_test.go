package hooks

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/aura-dev/aura/internal/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newLog returns a real in-memory event log whose commits feed a hub.
func newLog(t *testing.T) (*store.Memory, *Hub) {
	t.Helper()
	var hub *Hub
	mem := store.NewMemory(store.Options{OnCommit: func(evs []store.Event) { hub.Publish(evs) }})
	hub = NewHub(mem)
	t.Cleanup(func() { mem.Close() })
	return mem, hub
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
		if err := mem.AppendEvents(context.Background(), []store.Event{{TaskID: fmt.Sprint("t", i%3), Type: typ, Hook: hook}}); err != nil {
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

func TestSlowFollowerCatchesUpFromTheLog(t *testing.T) {
	mem, hub := newLog(t)
	zero := uint64(0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	release := make(chan struct{})
	var got []uint64
	errDone := errors.New("done")
	done := make(chan error, 1)
	total := 3 * bufferSize
	go func() {
		done <- hub.Follow(ctx, &zero, Filter{}, func(ev store.Event) (bool, error) {
			if len(got) == 0 {
				<-release // stall until the writer has overflowed our buffer
			}
			got = append(got, ev.Seq)
			if len(got) == total {
				return false, errDone
			}
			return false, nil
		})
	}()
	appendN(t, mem, 1, true)
	// Wait until the follower is live (its first event is the stored one),
	// then overflow its buffer while it is stalled.
	waitFollowers(t, hub, 1)
	appendN(t, mem, total-1, true)
	if hub.Followers() != 0 {
		t.Fatalf("a follower %d events behind is still on the live feed", total)
	}
	close(release)
	if err := <-done; !errors.Is(err, errDone) {
		t.Fatal(err)
	}
	consecutive(t, got, 1)
}

func waitFollowers(t *testing.T, hub *Hub, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for hub.Followers() < n {
		if time.Now().After(deadline) {
			t.Fatalf("follower never joined")
		}
		time.Sleep(time.Millisecond)
	}
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
	var hub *Hub
	mem := store.NewMemory(store.Options{Retain: time.Hour, Now: func() time.Time { return clock() }, OnCommit: func(evs []store.Event) { hub.Publish(evs) }})
	defer mem.Close()
	hub = NewHub(mem)
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
