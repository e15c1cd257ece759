package auth

import (
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// CheckedStream guards a stream whose handler answers every request with
// exactly one response, in order (SubmitStream), even when it receives and
// sends on different goroutines. A request that Check refuses never
// reaches the handler; the response Reject makes for it goes out in that
// request's place in the response order, and the stream goes on.
type CheckedStream struct {
	grpc.ServerStream
	Check  func(req any) error
	Reject func(err error) any

	mu       sync.Mutex // serialises every send; guards the fields below
	passed   int        // requests handed to the handler
	answered int        // responses the handler has sent
	waiting  []refusal  // refusals queued behind earlier answers, in order
}

type refusal struct {
	after int // send once this many handler responses have gone out
	resp  any
}

// RecvMsg returns the next request that passes Check.
func (s *CheckedStream) RecvMsg(m any) error {
	for {
		if err := s.ServerStream.RecvMsg(m); err != nil {
			return err
		}
		err := s.Check(m)
		s.mu.Lock()
		if err == nil {
			s.passed++
			s.mu.Unlock()
			return nil
		}
		resp := s.Reject(err)
		var sendErr error
		if s.answered == s.passed && len(s.waiting) == 0 {
			sendErr = s.ServerStream.SendMsg(resp)
		} else {
			s.waiting = append(s.waiting, refusal{after: s.passed, resp: resp})
		}
		s.mu.Unlock()
		if sendErr != nil {
			return sendErr
		}
		if pm, ok := m.(proto.Message); ok {
			proto.Reset(pm)
		}
	}
}

// SendMsg sends the handler's response, then any refusals that were
// waiting for it.
func (s *CheckedStream) SendMsg(m any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ServerStream.SendMsg(m); err != nil {
		return err
	}
	s.answered++
	for len(s.waiting) > 0 && s.waiting[0].after <= s.answered {
		if err := s.ServerStream.SendMsg(s.waiting[0].resp); err != nil {
			return err
		}
		s.waiting = s.waiting[1:]
	}
	return nil
}
