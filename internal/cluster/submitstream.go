package cluster

import (
	"context"
	"errors"
	"io"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// streamWindow bounds the requests of one routed SubmitStream waiting for
// their answers, as the local handler bounds its own.
const streamWindow = 1024

// A routed SubmitStream answers each request from where it went: this
// node's own SubmitStream handler, one SubmitStream per other node, or an
// answer in place (a request no live node can take). Each of those
// answers its requests in order, so taking the next answer from the
// source of each request in turn keeps the stream's order.
type source interface{ isSource() }

// inPlace is a request answered here, with an error.
type inPlace struct{ resp *aurav1.SubmitResponse }

// answers is a source's responses, in its requests' order; closed when
// the source ends, err saying why (nil: it answered all it was sent).
type answers struct {
	c   chan *aurav1.SubmitResponse
	err error // read after c is closed
}

func (*inPlace) isSource() {}
func (*answers) isSource() {}

// submitStream routes a SubmitStream request by request (Place, as for
// Submit); the responses go out in the order of the requests.
func (f *Forwarder) submitStream(srv any, ss grpc.ServerStream, handler grpc.StreamHandler) error {
	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // before the wait: the goroutines end on it

	slots := make(chan source, streamWindow)
	local := &answers{c: make(chan *aurav1.SubmitResponse, streamWindow)}
	localReqs := make(chan *aurav1.SubmitRequest, streamWindow)
	localDone := make(chan struct{})
	wg.Go(func() {
		defer close(localDone)
		defer close(local.c)
		local.err = handler(srv, &localStream{ServerStream: ss, ctx: ctx, reqs: localReqs, resps: local.c})
	})
	remotes := map[string]*remoteStream{}
	recvErr := make(chan error, 1)
	go func() { // ends when the call does: ss.RecvMsg returns then
		defer close(slots)
		defer close(localReqs)
		defer func() {
			for _, r := range remotes {
				_ = r.stream.CloseSend()
			}
		}()
		for {
			req := new(aurav1.SubmitRequest)
			if err := ss.RecvMsg(req); err != nil {
				if !errors.Is(err, io.EOF) {
					recvErr <- err
				}
				return
			}
			var (
				to  source
				err error
			)
			node, perr := f.place(ctx, req)
			switch {
			case perr != nil:
				to = refused(perr)
			case node == f.dir.Self():
				to = local
			default:
				r := remotes[node]
				if r == nil {
					if r, err = f.openSubmitStream(ctx, &wg, node); err != nil {
						to = refused(err)
						break
					}
					remotes[node] = r
				}
				// A broken stream's reader says why, when its turn comes.
				_ = r.stream.Send(req)
				to = r.answers
			}
			select {
			case slots <- to:
			case <-ctx.Done():
				return
			}
			if to == local {
				select {
				case localReqs <- req:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	for s := range slots {
		var resp *aurav1.SubmitResponse
		switch s := s.(type) {
		case *inPlace:
			resp = s.resp
		case *answers:
			select {
			case m, ok := <-s.c:
				if !ok {
					if s.err == nil {
						// A handler that ends before answering every request.
						return status.Error(codes.Internal, "internal error")
					}
					return s.err
				}
				resp = m
			case <-ctx.Done():
				return status.FromContextError(ctx.Err()).Err()
			}
		}
		if err := ss.SendMsg(resp); err != nil {
			return err
		}
	}
	select {
	case err := <-recvErr:
		return err
	default:
	}
	<-localDone // every request it had is answered: it is ending
	return local.err
}

// refused is a request answered in place, as SubmitStream answers one it
// refuses.
func refused(err error) *inPlace {
	st := status.Convert(err)
	return &inPlace{resp: &aurav1.SubmitResponse{Error: &aurav1.SubmitError{Code: int32(st.Code()), Message: st.Message()}}}
}

// remoteStream is the SubmitStream to one other node.
type remoteStream struct {
	stream  aurav1.ExecutionService_SubmitStreamClient
	answers *answers
}

func (f *Forwarder) openSubmitStream(ctx context.Context, wg *sync.WaitGroup, node string) (*remoteStream, error) {
	out, err := f.outgoing(ctx, node)
	if err != nil {
		return nil, err
	}
	cc, err := f.peers.Conn(node)
	if err != nil {
		return nil, f.peerError(node, err)
	}
	st, err := aurav1.NewExecutionServiceClient(cc).SubmitStream(out)
	if err != nil {
		return nil, f.peerError(node, err)
	}
	r := &remoteStream{stream: st, answers: &answers{c: make(chan *aurav1.SubmitResponse, streamWindow)}}
	wg.Go(func() {
		defer close(r.answers.c)
		for {
			resp, err := st.Recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = status.Errorf(codes.Unavailable, "node %s ended its part of the stream before answering every request sent to it", node)
				}
				r.answers.err = f.peerError(node, err)
				return
			}
			select {
			case r.answers.c <- resp:
			case <-ctx.Done():
				r.answers.err = status.FromContextError(ctx.Err()).Err()
				return
			}
		}
	})
	return r, nil
}

// localStream is this node's SubmitStream handler's view of a routed
// stream: the requests that stay here, and its answers to them.
type localStream struct {
	grpc.ServerStream
	ctx   context.Context
	reqs  <-chan *aurav1.SubmitRequest
	resps chan<- *aurav1.SubmitResponse
}

func (s *localStream) Context() context.Context { return s.ctx }

func (s *localStream) RecvMsg(m any) error {
	select {
	case req, ok := <-s.reqs:
		if !ok {
			return io.EOF
		}
		dst, isReq := m.(*aurav1.SubmitRequest)
		if !isReq {
			return status.Error(codes.Internal, "internal error")
		}
		proto.Reset(dst)
		proto.Merge(dst, req)
		return nil
	case <-s.ctx.Done():
		return status.FromContextError(s.ctx.Err()).Err()
	}
}

func (s *localStream) SendMsg(m any) error {
	resp, ok := m.(*aurav1.SubmitResponse)
	if !ok {
		return status.Error(codes.Internal, "internal error")
	}
	select {
	case s.resps <- resp:
		return nil
	case <-s.ctx.Done():
		return status.FromContextError(s.ctx.Err()).Err()
	}
}
