package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// prune deletes one batch: up to pruneBatch finished tasks past retention
// (and past the idempotency TTL, so dedup keeps working) with their labels,
// and up to pruneBatch of the oldest events past retention. Events go only
// from the front of the log, so the retained log never has holes.
func (w *writer) prune(o *op, now time.Time) error {
	cutoff := now.Add(-w.opts.Retain).UnixNano()
	idemCutoff := now.Add(-w.opts.IdempotencyTTL).UnixNano()

	rows, err := w.st.pruneTasks.Query(cutoff, idemCutoff, pruneBatch)
	if err != nil {
		return fmt.Errorf("select tasks to prune: %w", err)
	}
	var arrivals []int64
	for rows.Next() {
		var a int64
		if err := rows.Scan(&a); err != nil {
			_ = rows.Close()
			return fmt.Errorf("select tasks to prune: %w", err)
		}
		arrivals = append(arrivals, a)
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("select tasks to prune: %w", err)
	}
	for _, a := range arrivals {
		if _, err := w.st.deleteLabels.Exec(a); err != nil {
			return fmt.Errorf("prune labels: %w", err)
		}
		if _, err := w.st.deleteTask.Exec(a); err != nil {
			return fmt.Errorf("prune task: %w", err)
		}
	}

	// Events go a row at a time (a run of one transaction's events of one
	// task), once the newest event in it is past retention; n counts events.
	rows, err = w.st.eventPrefix.Query(pruneBatch)
	if err != nil {
		return fmt.Errorf("select events to prune: %w", err)
	}
	var upTo int64
	n, nrows := 0, 0
	for rows.Next() {
		var last, first, ts int64
		if err := rows.Scan(&last, &first, &ts); err != nil {
			_ = rows.Close()
			return fmt.Errorf("select events to prune: %w", err)
		}
		if ts >= cutoff {
			break
		}
		upTo = last
		n += int(last - first + 1)
		nrows++
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("select events to prune: %w", err)
	}
	if nrows > 0 {
		if _, err := w.st.deleteEvents.Exec(upTo); err != nil {
			return fmt.Errorf("prune events: %w", err)
		}
	}
	o.pruned = len(arrivals) + n
	o.more = len(arrivals) == pruneBatch || nrows == pruneBatch
	return nil
}

// pruneAll queues prune batches until one comes back not full. Each batch is
// an ordinary queued operation, so submissions interleave with pruning.
func (w *writer) pruneAll(ctx context.Context) (int, error) {
	total := 0
	for {
		o := &op{kind: opPrune, done: make(chan struct{})}
		err := w.send(ctx, o)
		if err == nil {
			<-o.done
			err = o.err
		}
		if err != nil {
			return total, fmt.Errorf("store: prune: %w", err)
		}
		total += o.pruned
		if !o.more {
			return total, nil
		}
		if err := ctx.Err(); err != nil {
			return total, err
		}
	}
}

// PrunerParams configure a Pruner.
type PrunerParams struct {
	// Store is pruned; a Store (SQLite) needs a Pruner, a Memory also
	// prunes during its writes.
	Store interface {
		Prune(ctx context.Context) (int, error)
	}
	Interval time.Duration // between runs; default 1m
	Logger   *slog.Logger  // default slog.Default()
}

// Pruner runs retention pruning every Interval in the background. Start
// it once the store is open and Shut it down before closing the store: a
// batch it queued waits for the store's writer.
type Pruner struct {
	// Immutable after construction.
	store interface {
		Prune(context.Context) (int, error)
	}
	interval time.Duration
	log      *slog.Logger
	ctx      context.Context // ends at Shutdown, cutting a run short
	cancel   context.CancelFunc

	wg sync.WaitGroup // the pruning goroutine, from Start to Shutdown
}

// NewPruner returns a Pruner that has not started.
func NewPruner(p PrunerParams) *Pruner {
	if p.Interval <= 0 {
		p.Interval = time.Minute
	}
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Pruner{store: p.Store, interval: p.Interval, log: p.Logger, ctx: ctx, cancel: cancel}
}

// Start starts pruning every interval.
func (p *Pruner) Start() {
	p.wg.Add(1)
	go p.run()
}

func (p *Pruner) run() {
	defer p.wg.Done()
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
			n, err := p.store.Prune(p.ctx)
			switch {
			case errors.Is(err, ErrFull) || errors.Is(err, ErrGone):
				// Said once by the writer; pruning tries again next time.
			case err != nil && p.ctx.Err() == nil:
				p.log.Error("store: retention pruning failed", "err", err)
			case n > 0:
				p.log.Debug("store: pruned", "rows", n)
			}
		}
	}
}

// Shutdown stops the pruner and waits for it. A batch already queued is
// committed by the writer (or failed with ErrClosed).
func (p *Pruner) Shutdown() {
	p.cancel()
	p.wg.Wait()
}
