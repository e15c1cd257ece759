package workers

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// IOPool bounds how many io-lane jobs run at once. Jobs run on their
// caller's goroutine; callers beyond the bound wait in FIFO order.
type IOPool struct {
	size      int
	slots     chan struct{} // a token per running job; blocked senders queue FIFO
	closed    chan struct{}
	closeOnce sync.Once

	busy   atomic.Int64
	queued atomic.Int64
	jobs   atomic.Uint64
}

// NewIOPool returns a pool running at most size jobs at once (at least 1).
func NewIOPool(size int) *IOPool {
	size = max(size, 1)
	return &IOPool{size: size, slots: make(chan struct{}, size), closed: make(chan struct{})}
}

// Do runs fn once a slot is free, or returns an error wrapping
// context.Cause(ctx) if ctx ends while it waits. A panic in fn comes back as
// *PanicError.
func (p *IOPool) Do(ctx context.Context, fn func(context.Context) (any, error)) (out any, err error) {
	if ctx.Err() != nil {
		return nil, fmt.Errorf("workers: io job not started: %w", context.Cause(ctx))
	}
	select {
	case p.slots <- struct{}{}:
	default:
		p.queued.Add(1)
		select {
		case p.slots <- struct{}{}:
			p.queued.Add(-1)
		case <-ctx.Done():
			p.queued.Add(-1)
			return nil, fmt.Errorf("workers: waiting for an io slot: %w", context.Cause(ctx))
		case <-p.closed:
			p.queued.Add(-1)
			return nil, ErrClosed
		}
	}
	select {
	case <-p.closed:
		<-p.slots
		return nil, ErrClosed
	default:
	}
	p.busy.Add(1)
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, &PanicError{Value: r, Stack: debug.Stack()}
		}
		p.busy.Add(-1)
		p.jobs.Add(1)
		<-p.slots
	}()
	return fn(ctx)
}

// Stats returns a snapshot of the pool.
func (p *IOPool) Stats() PoolStats {
	return PoolStats{
		Name:   "io",
		Size:   p.size,
		Live:   p.size,
		Busy:   int(p.busy.Load()),
		Queued: int(p.queued.Load()),
		Jobs:   p.jobs.Load(),
	}
}

// Close makes queued and later calls fail with ErrClosed and waits for the
// running ones to return.
func (p *IOPool) Close() {
	p.closeOnce.Do(func() { close(p.closed) })
	for range p.size {
		p.slots <- struct{}{}
	}
	for range p.size {
		<-p.slots
	}
}
