package execmgr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

func TestSequenceAnswersInOrder(t *testing.T) {
	m, _ := newManager(t, 4)
	ctx := context.Background()
	const n = 40
	seq := m.NewSequence("alice", n)
	// Every third request names no task: its answer is an error, in its
	// place, and the sequence goes on.
	for i := range n {
		task := "bench/noop"
		if i%3 == 2 {
			task = "bench/nope"
		}
		if err := seq.Add(ctx, &aurav1.SubmitRequest{Task: task, Labels: map[string]string{"n": fmt.Sprint(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	seq.Close()
	for i := range n {
		sub, err := seq.Next(ctx)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		if i%3 == 2 {
			var nf *NotFoundError
			if !errors.As(sub.Err, &nf) {
				t.Fatalf("answer %d: %v, want the unknown task refused", i, sub.Err)
			}
			continue
		}
		if sub.Err != nil {
			t.Fatalf("answer %d: %v", i, sub.Err)
		}
		task, err := m.Get(ctx, sub.Response.TaskId)
		if err != nil {
			t.Fatal(err)
		}
		if task.Labels["n"] != fmt.Sprint(i) {
			t.Fatalf("answer %d is the task of request %s", i, task.Labels["n"])
		}
	}
	if _, err := seq.Next(ctx); !errors.Is(err, io.EOF) {
		t.Fatalf("Next after the last answer: %v, want io.EOF", err)
	}
}

func TestSequenceFirstRequestWithAKeyWins(t *testing.T) {
	// Requests with one idempotency key, added one right after the other:
	// the first is the task, the later ones deduplicate to it, whatever
	// order the store would have seen them in.
	m, _ := newManager(t, 4)
	ctx := context.Background()
	for round := range 5 {
		key := fmt.Sprint("key-", round)
		var reqs []*aurav1.SubmitRequest
		for i := range 6 {
			reqs = append(reqs, &aurav1.SubmitRequest{Task: "bench/noop", IdempotencyKey: key, Labels: map[string]string{"n": fmt.Sprint(i)}},
				&aurav1.SubmitRequest{Task: "bench/noop"}) // unkeyed ones in between are not held back
		}
		subs, err := m.SubmitMany(ctx, "alice", reqs)
		if err != nil {
			t.Fatal(err)
		}
		first := subs[0].Response
		task, err := m.Get(ctx, first.GetTaskId())
		if err != nil || first.Deduplicated || task.Labels["n"] != "0" {
			t.Fatalf("round %d: first request: %v dedup=%v labels=%v err=%v; want the task, from request 0", round, first.GetTaskId(), first.GetDeduplicated(), task.GetLabels(), err)
		}
		for i := 2; i < len(subs); i += 2 {
			if r := subs[i].Response; subs[i].Err != nil || !r.Deduplicated || r.TaskId != first.TaskId {
				t.Fatalf("round %d: request %d: %v %v; want deduplicated to %s", round, i/2, r, subs[i].Err, first.TaskId)
			}
		}
		for i := 1; i < len(subs); i += 2 {
			if r := subs[i].Response; subs[i].Err != nil || r.Deduplicated {
				t.Fatalf("round %d: unkeyed request: %v %v", round, r, subs[i].Err)
			}
		}
	}
}

func TestSequenceWindow(t *testing.T) {
	m, _ := newManager(t, 4)
	ctx := context.Background()
	seq := m.NewSequence("", 2)
	req := &aurav1.SubmitRequest{Task: "bench/noop"}
	for range 2 {
		if err := seq.Add(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	// The window is full: Add waits, here until its context ends.
	stopped, stop := context.WithCancelCause(ctx)
	stop(errors.New("caller gave up"))
	if err := seq.Add(stopped, req); err == nil || err.Error() != "caller gave up" {
		t.Fatalf("Add on a full window with its context ended: %v, want the context's cause", err)
	}
	added := make(chan error, 1)
	go func() { added <- seq.Add(ctx, req) }()
	// Taking an answer makes room for the waiting Add.
	if _, err := seq.Next(ctx); err != nil {
		t.Fatal(err)
	}
	if err := within(t, added, "the waiting Add to return"); err != nil {
		t.Fatal(err)
	}
	seq.Close()
	for range 2 {
		if sub, err := seq.Next(ctx); err != nil || sub.Err != nil {
			t.Fatalf("answer: %v %v", err, sub.Err)
		}
	}
	if _, err := seq.Next(ctx); !errors.Is(err, io.EOF) {
		t.Fatalf("Next after the last answer: %v, want io.EOF", err)
	}
}

func TestSequenceNextEndsWithItsContext(t *testing.T) {
	m, _ := newManager(t, 1)
	seq := m.NewSequence("", 4)
	ctx, stop := context.WithCancelCause(context.Background())
	stop(errors.New("stream closed"))
	// Nothing added, nothing closed: Next would wait for ever.
	if _, err := seq.Next(ctx); err == nil || err.Error() != "stream closed" {
		t.Fatalf("Next: %v, want the context's cause", err)
	}
	seq.Close()
}
