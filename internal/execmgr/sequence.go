package execmgr

import (
	"context"
	"io"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// Sequence submits a series of requests on behalf of one principal and
// answers them in the order they were added: the SubmitStream RPC, and any
// caller with many submissions at once (batch submission, the web UI,
// schedules). Each request is submitted as soon as it is added, so many
// are recorded together and share the store's group commits. A request
// carrying an idempotency key that an earlier request of the sequence
// carries waits until that one is answered, so it deduplicates to it
// instead of racing it to the store: the first request with a key wins.
//
// Add and Close are called from one goroutine, Next from one goroutine
// (the same or another).
type Sequence struct {
	m         *Manager
	principal string
	// pending holds the submissions added and not yet taken by Next, in
	// order; its capacity is the window. Closed by Close.
	pending chan *submission

	// Used only by Add: the submission last added with each idempotency
	// key, closed once answered.
	lastWithKey map[string]chan struct{}
}

// submission is one request of a Sequence and, once done is closed, its
// answer.
type submission struct {
	Submitted
	done chan struct{}
}

// Submitted is the answer to one request of a Sequence: what SubmitAs
// returned for it.
type Submitted struct {
	Response *aurav1.SubmitResponse
	Err      error
}

// NewSequence starts a sequence of submissions by principal with at most
// window of them in flight (added and not yet taken by Next); at least 1.
func (m *Manager) NewSequence(principal string, window int) *Sequence {
	return &Sequence{m: m, principal: principal, pending: make(chan *submission, max(window, 1)), lastWithKey: map[string]chan struct{}{}}
}

// Add submits req under ctx (the submission is bound to it, as a single
// SubmitAs is) after the earlier requests of the sequence with its
// idempotency key are answered. It waits while the window is full; if ctx
// ends first, req is not submitted and Add returns ctx's cause. Not after
// Close.
func (s *Sequence) Add(ctx context.Context, req *aurav1.SubmitRequest) error {
	sub := &submission{done: make(chan struct{})}
	select {
	case s.pending <- sub:
	default:
		select {
		case s.pending <- sub:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	if len(s.lastWithKey) > 4*cap(s.pending) {
		// Keys whose last request is answered need no waiting on.
		for k, done := range s.lastWithKey {
			select {
			case <-done:
				delete(s.lastWithKey, k)
			default:
			}
		}
	}
	var before chan struct{}
	if k := req.GetIdempotencyKey(); k != "" {
		before = s.lastWithKey[k]
		s.lastWithKey[k] = sub.done
	}
	go func() {
		defer close(sub.done)
		if before != nil {
			<-before
		}
		sub.Response, sub.Err = s.m.SubmitAs(ctx, s.principal, req)
	}()
	return nil
}

// Close says that no more requests will be added: Next returns io.EOF
// once it has returned every answer. Call it once.
func (s *Sequence) Close() { close(s.pending) }

// Next returns the answer to the earliest request whose answer it has not
// returned yet, waiting for it. It returns io.EOF after Close once every
// answer is taken, and ctx's cause if ctx ends first (the answer it was
// waiting for is then lost: the sequence is over).
func (s *Sequence) Next(ctx context.Context) (Submitted, error) {
	var sub *submission
	select {
	case next, ok := <-s.pending:
		if !ok {
			return Submitted{}, io.EOF
		}
		sub = next
	case <-ctx.Done():
		return Submitted{}, context.Cause(ctx)
	}
	select {
	case <-sub.done:
		return sub.Submitted, nil
	case <-ctx.Done():
		return Submitted{}, context.Cause(ctx)
	}
}

// SubmitMany submits reqs by principal as one Sequence and returns their
// answers in the same order. Its error is ctx's cause if ctx ended before
// every answer came; a refused request is an answer with Err set.
func (m *Manager) SubmitMany(ctx context.Context, principal string, reqs []*aurav1.SubmitRequest) ([]Submitted, error) {
	s := m.NewSequence(principal, len(reqs))
	for _, req := range reqs {
		if err := s.Add(ctx, req); err != nil {
			return nil, err
		}
	}
	s.Close()
	out := make([]Submitted, 0, len(reqs))
	for {
		sub, err := s.Next(ctx)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, sub)
	}
}
