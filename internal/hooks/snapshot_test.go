package hooks

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/aura-dev/aura/internal/store"
	"github.com/aura-dev/aura/internal/testbin"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// A snapshot names each follower as its Follow call described it, with
// its filter, the sequence it has passed and how far behind it is; a
// follower that ends leaves it.
func TestHubSnapshotListsFollowers(t *testing.T) {
	mem, hub := newLog(t)
	appendN(t, mem, 3, true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A follower that takes one event and then blocks until released:
	// what it has passed and what it lags are then fixed.
	release := make(chan struct{})
	done := make(chan error, 1)
	zero := uint64(0)
	go func() {
		done <- hub.Follow(ctx, &zero, Filter{Hooks: []string{AfterTaskRun}, Who: Follower{Kind: "subscribe", Name: "ops", Peer: "127.0.0.1:5555", Plan: "demo"}},
			func(store.Event) (bool, error) {
				<-release
				return false, nil
			})
	}()
	waitFollowers(t, hub, 1)
	testbin.WaitFor(t, "the follower to hold its first event", 5*time.Second, func() bool {
		s := hub.Snapshot()
		return len(s) == 1 && s[0].Lag == 3
	})
	got := hub.Snapshot()[0]
	want := FollowerSnapshot{Follower: Follower{Kind: "subscribe", Name: "ops", Peer: "127.0.0.1:5555", Plan: "demo"}, Hooks: []string{AfterTaskRun}, Cursor: 0, Lag: 3}
	if got.Follower != want.Follower || !slices.Equal(got.Hooks, want.Hooks) || got.Cursor != 0 || got.Lag != 3 {
		t.Fatalf("snapshot %+v, want %+v", got, want)
	}
	close(release)
	testbin.WaitFor(t, "the follower to catch up", 5*time.Second, func() bool {
		s := hub.Snapshot()
		return len(s) == 1 && s[0].Cursor == 3 && s[0].Lag == 0
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Follow ended with %v", err)
	}
	if s := hub.Snapshot(); len(s) != 0 {
		t.Fatalf("an ended follower is still listed: %+v", s)
	}
}

type planInterceptor struct{ fakeInterceptor }

func (p *planInterceptor) Plan() string { return p.plan }

// An interceptor's snapshot shows its settings and counts the decisions
// asked of it and the ones that stopped a task.
func TestRegistrySnapshotCountsDecisions(t *testing.T) {
	r := NewRegistry(quiet())
	deny := &planInterceptor{fakeInterceptor{name: "policy", plan: "p", allow: false}}
	r.AddInterceptor(deny)
	remove := r.AddInterceptor(&fakeInterceptor{name: "allow-all", allow: true, failOpen: true})
	for range 2 {
		_ = r.Before(context.Background(), NewBeforeRunRequest(&aurav1.Task{Id: "t", Task: "p/x"}))
	}
	_ = r.Before(context.Background(), NewBeforeRunRequest(&aurav1.Task{Id: "u", Task: "other/x"}))
	got := r.Snapshot()
	want := []InterceptorSnapshot{
		{Name: "policy", Plan: "p", Timeout: 50 * time.Millisecond, Calls: 2, Denials: 2},
		{Name: "allow-all", Timeout: 50 * time.Millisecond, FailOpen: true, Calls: 3},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("snapshot %+v, want %+v", got, want)
	}
	remove()
	if got := r.Snapshot(); len(got) != 1 || got[0].Name != "policy" {
		t.Fatalf("after removing one: %+v", got)
	}
}
