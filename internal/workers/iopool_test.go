package workers

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aura-dev/aura/internal/testbin"
)

func TestIOPoolBoundsConcurrency(t *testing.T) {
	const size, jobs = 3, 12
	p := NewIOPool(size)
	defer p.Close()
	var running, peak atomic.Int64
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Do(context.Background(), func(context.Context) (any, error) {
				n := running.Add(1)
				for {
					old := peak.Load()
					if n <= old || peak.CompareAndSwap(old, n) {
						break
					}
				}
				<-release
				running.Add(-1)
				return nil, nil
			})
		}()
	}
	testbin.WaitFor(t, "the pool to fill and queue the rest", 10*time.Second, func() bool {
		s := p.Stats()
		return s.Busy == size && s.Queued == jobs-size
	})
	close(release)
	wg.Wait()
	if peak.Load() != size {
		t.Fatalf("peak concurrency %d, want %d", peak.Load(), size)
	}
	if s := p.Stats(); s.Jobs != jobs || s.Busy != 0 || s.Queued != 0 || s.Size != size {
		t.Fatalf("stats after the run: %+v", s)
	}
}

func TestIOPoolQueueIsFIFO(t *testing.T) {
	p := NewIOPool(1)
	defer p.Close()
	hold := make(chan struct{})
	holding := make(chan struct{})
	go p.Do(context.Background(), func(context.Context) (any, error) {
		close(holding)
		<-hold
		return nil, nil
	})
	<-holding
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Do(context.Background(), func(context.Context) (any, error) {
				mu.Lock()
				order = append(order, i)
				mu.Unlock()
				return nil, nil
			})
		}()
		// Queue them one at a time so the arrival order is known.
		testbin.WaitFor(t, "caller to queue", 10*time.Second, func() bool { return p.Stats().Queued == i+1 })
	}
	close(hold)
	wg.Wait()
	for i, v := range order {
		if v != i {
			t.Fatalf("ran in order %v, want arrival order", order)
		}
	}
}

func TestIOPoolHonoursContextWhileQueued(t *testing.T) {
	p := NewIOPool(1)
	defer p.Close()
	hold := make(chan struct{})
	holding := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Do(context.Background(), func(context.Context) (any, error) {
			close(holding)
			<-hold
			return nil, nil
		})
	}()
	<-holding
	cause := errors.New("task cancelled")
	ctx, cancel := context.WithCancelCause(context.Background())
	errc := make(chan error, 1)
	var ran atomic.Bool
	go func() {
		_, err := p.Do(ctx, func(context.Context) (any, error) { ran.Store(true); return nil, nil })
		errc <- err
	}()
	testbin.WaitFor(t, "caller to queue", 10*time.Second, func() bool { return p.Stats().Queued == 1 })
	cancel(cause)
	if err := <-errc; !errors.Is(err, cause) {
		t.Fatalf("queued Do gave %v, want the cancellation cause", err)
	}
	if ran.Load() || p.Stats().Queued != 0 {
		t.Fatalf("cancelled caller ran=%v, queued=%d", ran.Load(), p.Stats().Queued)
	}
	close(hold)
	<-done
	out, err := p.Do(context.Background(), func(context.Context) (any, error) { return "ok", nil })
	if out != "ok" || err != nil {
		t.Fatalf("Do after a cancelled waiter: %v, %v", out, err)
	}
}

func TestIOPoolReturnsResultsAndPanics(t *testing.T) {
	p := NewIOPool(2)
	defer p.Close()
	out, err := p.Do(context.Background(), func(context.Context) (any, error) { return int64(42), nil })
	if out != int64(42) || err != nil {
		t.Fatalf("Do: %v, %v", out, err)
	}
	want := errors.New("action failed")
	if _, err := p.Do(context.Background(), func(context.Context) (any, error) { return nil, want }); !errors.Is(err, want) {
		t.Fatalf("Do error: %v", err)
	}
	_, err = p.Do(context.Background(), func(context.Context) (any, error) { panic("kaboom") })
	var pe *PanicError
	if !errors.As(err, &pe) || pe.Value != "kaboom" || len(pe.Stack) == 0 {
		t.Fatalf("panic gave %v", err)
	}
	if s := p.Stats(); s.Busy != 0 || s.Jobs != 3 {
		t.Fatalf("stats after a panic: %+v", s)
	}
}

func TestIOPoolCloseWaitsAndRefuses(t *testing.T) {
	p := NewIOPool(1)
	hold := make(chan struct{})
	holding := make(chan struct{})
	finished := atomic.Bool{}
	go p.Do(context.Background(), func(context.Context) (any, error) {
		close(holding)
		<-hold
		finished.Store(true)
		return nil, nil
	})
	<-holding
	queued := make(chan error, 1)
	go func() {
		_, err := p.Do(context.Background(), func(context.Context) (any, error) { return nil, nil })
		queued <- err
	}()
	testbin.WaitFor(t, "caller to queue", 10*time.Second, func() bool { return p.Stats().Queued == 1 })
	closed := make(chan struct{})
	go func() {
		p.Close()
		close(closed)
	}()
	if err := <-queued; !errors.Is(err, ErrClosed) {
		t.Fatalf("queued caller at Close got %v, want ErrClosed", err)
	}
	close(hold)
	<-closed
	if !finished.Load() {
		t.Fatal("Close returned before the running job finished")
	}
	if _, err := p.Do(context.Background(), func(context.Context) (any, error) { return nil, nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Do after Close gave %v, want ErrClosed", err)
	}
}
