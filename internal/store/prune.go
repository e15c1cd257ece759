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

	rows, err = w.st.eventPrefix.Query(pruneBatch)
	if err != nil {
		return fmt.Errorf("select events to prune: %w", err)
	}
	var upTo int64
	n := 0
	for rows.Next() {
		var seq, ts int64
		if err := rows.Scan(&seq, &ts); err != nil {
			_ = rows.Close()
			return fmt.Errorf("select events to prune: %w", err)
		}
		if ts >= cutoff {
			break
		}
		upTo = seq
		n++
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("select events to prune: %w", err)
	}
	if n > 0 {
		if _, err := w.st.deleteEvents.Exec(upTo); err != nil {
			return fmt.Errorf("prune events: %w", err)
		}
	}
	o.pruned = len(arrivals) + n
	o.more = len(arrivals) == pruneBatch || n == pruneBatch
	return nil
}

// pruneAll queues prune batches until one comes back not full. Each batch is
// an ordinary queued operation, so submissions interleave with pruning.
func (w *writer) pruneAll(ctx context.Context) (int, error) {
	total := 0
	for {
		o := w.newOp(opPrune, nil, nil)
		if err := w.do(ctx, o); err != nil {
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

type pruneParams struct {
	w        *writer
	interval time.Duration
	log      *slog.Logger
}

// pruner runs retention pruning every interval in the background.
type pruner struct {
	// Immutable after construction.
	w        *writer
	interval time.Duration
	log      *slog.Logger
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

func newPruner(p pruneParams) *pruner {
	ctx, cancel := context.WithCancel(context.Background())
	return &pruner{w: p.w, interval: p.interval, log: p.log, ctx: ctx, cancel: cancel}
}

func (p *pruner) start() {
	p.wg.Add(1)
	go p.run()
}

func (p *pruner) run() {
	defer p.wg.Done()
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
			n, err := p.w.pruneAll(p.ctx)
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

// shutdown stops the pruner and waits for it. A batch already queued is
// committed by the writer (or failed with ErrClosed).
func (p *pruner) shutdown() {
	p.cancel()
	p.wg.Wait()
}
