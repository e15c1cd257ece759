package workers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aura-dev/aura/internal/containment"
)

// Job is one action to run in a worker. Params and outputs are JSON-like:
// nil, bool, int64, float64, string, []any and map[string]any (ints stay
// int64 across the process boundary).
type Job struct {
	Action  string
	Params  map[string]any
	PlanDir string
	WorkDir string        // the plan's workspace, where the job may write
	Timeout time.Duration // 0: only ctx bounds the job
}

// Handler runs a job inside the worker process.
type Handler func(ctx context.Context, job Job) (any, error)

// PoolStats is a snapshot of one pool for GetStats and metrics.
type PoolStats struct {
	Name     string
	Size     int // configured workers (cpu) or slots (io)
	Live     int // worker processes up (cpu); Size for io
	Busy     int // jobs running
	Queued   int // callers waiting for a worker or slot
	Restarts uint64
	Crashes  uint64
	Jobs     uint64 // jobs finished, whatever their outcome
}

// CPUConfig configures a CPUPool. Zero fields take the documented defaults.
type CPUConfig struct {
	Size      int           // default runtime.NumCPU()
	Command   []string      // argv that starts one worker, e.g. {os.Executable(), "worker"}
	Env       []string      // the worker's whole environment; nil means an empty one
	MaxJobs   int           // recycle a worker after this many jobs (0 = never)
	MaxRSS    int64         // bytes; recycle a worker between jobs once its RSS exceeds this (0 = never)
	KillGrace time.Duration // SIGTERM to SIGKILL for a worker being stopped (default 2s)
	// RLimitAS caps each worker's address space in bytes (0 = none), set
	// with prlimit once the worker is up. An idle Go worker already
	// reserves about 1.3 GiB, so useful values start around 2 GiB; going
	// over makes the worker die "out of memory" (a *CrashError).
	RLimitAS uint64
	// RLimitCPU is the CPU time each job may use (0 = none), applied by the
	// worker to itself as a soft RLIMIT_CPU in whole seconds, rounded up.
	// A job that uses it up fails with a *JobError and its worker is
	// replaced.
	RLimitCPU time.Duration
	Logger    *slog.Logger // default: discard
	// Processes, when set, gives each worker a containment group that
	// also holds everything its actions start, killed when the worker is
	// stopped or dies. Nil: the worker's process group only.
	Processes *containment.Tree

	Stderr            *os.File      // the workers' stdout and stderr (default os.Stderr)
	StartTimeout      time.Duration // a new worker must greet within this (default 10s)
	RestartBackoff    time.Duration // first delay before replacing a crashed worker (default 50ms)
	MaxRestartBackoff time.Duration // the delay doubles per crash up to this (default 10s)
	HealthyAfter      time.Duration // a worker up this long resets the backoff (default 30s)

	// onStart, when set, sees the pid of every worker process started
	// (tests use it to check that all of them are reaped).
	onStart func(pid int)
}

func (c *CPUConfig) applyDefaults() error {
	if len(c.Command) == 0 || c.Command[0] == "" {
		return errors.New("workers: CPUConfig.Command is empty")
	}
	c.Command = append([]string(nil), c.Command...)
	if !strings.Contains(c.Command[0], "/") {
		path, err := exec.LookPath(c.Command[0])
		if err != nil {
			return fmt.Errorf("workers: worker command: %w", err)
		}
		c.Command[0] = path
	}
	if c.Size <= 0 {
		c.Size = runtime.NumCPU()
	}
	if c.KillGrace <= 0 {
		c.KillGrace = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Stderr == nil {
		c.Stderr = os.Stderr
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = 10 * time.Second
	}
	if c.RestartBackoff <= 0 {
		c.RestartBackoff = 50 * time.Millisecond
	}
	if c.MaxRestartBackoff < c.RestartBackoff {
		c.MaxRestartBackoff = max(10*time.Second, c.RestartBackoff)
	}
	if c.HealthyAfter <= 0 {
		c.HealthyAfter = 30 * time.Second
	}
	return nil
}

// CPUPool runs jobs in long-lived worker processes, one job per worker at a
// time, and keeps Size of them alive.
type CPUPool struct {
	cfg CPUConfig // immutable after NewCPUPool
	log *slog.Logger
	// stdin (/dev/null for every worker) and started are set by Start,
	// before any worker or Run, and read by Shutdown, which follows it.
	stdin   *os.File
	started bool
	wg      sync.WaitGroup
	// life ends when Shutdown begins, cutting short a worker's start-up.
	life    context.Context
	endLife context.CancelFunc
	// spawns carries start requests to the spawner goroutine.
	spawns      chan chan spawned
	spawnerDone chan struct{}

	mu       sync.Mutex
	closed   bool
	closedCh chan struct{}
	live     map[*worker]struct{} // started and not yet reaped
	idle     []*worker            // ready for a job; used as a stack so hot workers stay hot
	waiters  []*waiter            // Run calls waiting for a worker, FIFO

	busy     atomic.Int64
	restarts atomic.Uint64
	crashes  atomic.Uint64
	jobs     atomic.Uint64
}

// waiter is a Run call queued for a worker.
type waiter struct {
	ch     chan *worker // receives a worker, or nil when the pool closes
	queued bool         // still in CPUPool.waiters; guarded by CPUPool.mu
}

// waiterPool recycles waiters (and their channels, which are empty again
// whenever a waiter is put back).
var waiterPool = sync.Pool{New: func() any { return &waiter{ch: make(chan *worker, 1)} }}

// NewCPUPool returns a pool that has not started: Start starts its
// workers, Shutdown stops them.
func NewCPUPool(cfg CPUConfig) (*CPUPool, error) {
	if err := cfg.applyDefaults(); err != nil {
		return nil, err
	}
	life, endLife := context.WithCancel(context.Background())
	return &CPUPool{
		life:     life,
		endLife:  endLife,
		cfg:      cfg,
		log:      cfg.Logger.With("pool", "cpu"),
		closedCh: make(chan struct{}),
		live:     make(map[*worker]struct{}),

		spawns:      make(chan chan spawned),
		spawnerDone: make(chan struct{}),
	}, nil
}

// Start starts Size workers and returns once all of them have greeted;
// ctx bounds only this start-up. When one fails, Start stops the others
// and the pool stays unusable (Run returns ErrClosed).
func (p *CPUPool) Start(ctx context.Context) error {
	stdin, err := os.Open(os.DevNull)
	if err != nil {
		p.Shutdown()
		return fmt.Errorf("workers: %w", err)
	}
	p.stdin = stdin
	p.started = true
	type started struct {
		w   *worker
		err error
	}
	go p.runSpawner()
	results := make(chan started, p.cfg.Size)
	for range p.cfg.Size {
		go func() {
			w, err := p.spawn(ctx)
			results <- started{w, err}
		}()
	}
	var ws []*worker
	var errs []error
	for range p.cfg.Size {
		r := <-results
		if r.err != nil {
			errs = append(errs, r.err)
		} else {
			ws = append(ws, r.w)
		}
	}
	if len(errs) > 0 {
		for _, w := range ws {
			w.stop(reasonClosing, 0)
			w.reap()
		}
		p.Shutdown()
		return errors.Join(errs...)
	}
	for _, w := range ws {
		p.admit(w)
		p.wg.Add(1)
		go p.runSlot(w)
	}
	p.log.Info("cpu workers started", "size", p.cfg.Size)
	return nil
}

type spawned struct {
	w   *worker
	err error
}

// runSpawner starts every worker process of the pool from one OS thread
// that stays locked to it: the kernel delivers Pdeathsig when the *thread*
// that forked a child exits, and the Go runtime ends a thread whenever a
// goroutine exits while locked to it, which could kill healthy workers
// (golang/go#27505).
func (p *CPUPool) runSpawner() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer close(p.spawnerDone)
	for reply := range p.spawns {
		w, err := startWorker(&p.cfg, p.stdin)
		reply <- spawned{w, err}
	}
}

// spawn starts a worker and waits for its greeting.
func (p *CPUPool) spawn(ctx context.Context) (*worker, error) {
	reply := make(chan spawned, 1)
	select {
	case p.spawns <- reply:
	case <-ctx.Done():
		return nil, fmt.Errorf("workers: starting a worker: %w", context.Cause(ctx))
	}
	s := <-reply
	w, err := s.w, s.err
	if err != nil {
		return nil, err
	}
	if p.cfg.onStart != nil {
		p.cfg.onStart(w.pid)
	}
	stop := context.AfterFunc(ctx, func() { w.out.SetReadDeadline(time.Unix(1, 0)) })
	err = w.handshake(&p.cfg)
	if !stop() {
		// ctx ended during the handshake and may have spoilt the pipe's
		// deadline even if the greeting got through.
		err = fmt.Errorf("workers: starting worker %d: %w", w.pid, context.Cause(ctx))
	}
	if err != nil {
		w.stop(reasonClosing, 0)
		w.reap()
		return nil, err
	}
	return w, nil
}

// runSlot keeps one worker alive: it serves the current one until it dies,
// then replaces it (after a backoff when it crashed) until the pool closes.
func (p *CPUPool) runSlot(w *worker) {
	defer p.wg.Done()
	backoff := newRestartBackoff(p.cfg.RestartBackoff, p.cfg.MaxRestartBackoff, p.cfg.HealthyAfter)
	for {
		if w != nil {
			p.serve(w)
			switch w.stopReason() {
			case reasonClosing:
				return
			case reasonNone:
				ce := w.crashError()
				uptime := time.Since(w.started)
				delay := backoff.delay(uptime)
				p.log.Warn("cpu worker crashed", "pid", w.pid, "exit_code", ce.ExitCode, "signal", ce.Signal,
					"uptime", uptime.Round(time.Millisecond), "restart_in", delay)
				if !p.sleep(delay) {
					return
				}
			}
		}
		if p.isClosed() {
			return
		}
		nw, err := p.spawn(p.life)
		if err != nil {
			if p.isClosed() {
				return
			}
			p.crashes.Add(1)
			delay := backoff.delay(0)
			p.log.Error("cannot start a cpu worker", "err", err, "retry_in", delay)
			if !p.sleep(delay) {
				return
			}
			w = nil
			continue
		}
		p.restarts.Add(1)
		p.admit(nw)
		w = nw
	}
}

// sleep waits d unless the pool closes first; it reports whether to go on.
func (p *CPUPool) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.closedCh:
		return false
	}
}

func (p *CPUPool) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// admit makes a greeted worker available, or stops it if the pool has
// closed meanwhile.
func (p *CPUPool) admit(w *worker) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		w.stop(reasonClosing, 0)
		return
	}
	p.live[w] = struct{}{}
	p.releaseLocked(w)
	p.mu.Unlock()
}

// serve reads an admitted worker's results until it goes away, then reaps it.
func (p *CPUPool) serve(w *worker) {
	p.readResults(w)
	w.mu.Lock()
	// The child closed its result pipe; if it lingers it is broken.
	w.armKillLocked(p.cfg.KillGrace)
	w.mu.Unlock()
	w.wait()
	if w.cleanupErr != nil {
		p.log.Error("cpu worker's processes could not all be killed", "pid", w.pid, "err", w.cleanupErr)
	}

	// The books are updated before exited is closed, so a Run that sees
	// its worker die also sees the pool count the crash.
	p.mu.Lock()
	delete(p.live, w)
	for i, iw := range p.idle {
		if iw == w {
			p.idle = append(p.idle[:i], p.idle[i+1:]...)
			break
		}
	}
	if w.stopReason() == reasonNone {
		p.crashes.Add(1)
	}
	p.mu.Unlock()
	close(w.exited)
}

// readResults passes each result of w to the Run holding it until the pipe
// ends.
func (p *CPUPool) readResults(w *worker) {
	var buf []byte
	var err error
	for {
		if cap(buf) > keptBuffer {
			buf = nil // do not hold on to one huge output for the worker's life
		}
		buf, err = readFrame(w.r, buf)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) && w.stopReason() == reasonNone {
				p.log.Error("cpu worker broke the protocol; killing it", "pid", w.pid, "err", err)
				w.stop(reasonNone, 0)
			}
			return
		}
		switch buf[0] {
		case msgResult:
			res := decodeResult(buf)
			if res.exiting {
				w.setReason(reasonLimit)
			}
			select {
			case w.resp <- res:
			default:
				p.log.Error("cpu worker sent a result nobody asked for; killing it", "pid", w.pid)
				w.stop(reasonNone, 0)
				return
			}
		case msgPanic:
			w.detail, _ = decodePanic(buf)
		default:
			// Nothing it sends from here on can be trusted.
			p.log.Error("cpu worker sent an unknown message; killing it", "pid", w.pid, "kind", string(buf[0]))
			w.stop(reasonNone, 0)
			return
		}
	}
}

// releaseLocked hands w to the longest-waiting Run, or makes it idle.
func (p *CPUPool) releaseLocked(w *worker) {
	if len(p.waiters) > 0 {
		wt := p.waiters[0]
		// Shift down rather than reslice, so the queue reuses its array.
		n := copy(p.waiters, p.waiters[1:])
		p.waiters[n] = nil
		p.waiters = p.waiters[:n]
		wt.queued = false
		wt.ch <- w
		return
	}
	p.idle = append(p.idle, w)
}

// release returns a worker after a job.
func (p *CPUPool) release(w *worker) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		w.stop(reasonClosing, p.cfg.KillGrace)
		return
	}
	if w.dead() {
		return
	}
	p.releaseLocked(w)
}

// acquire takes an idle worker, waiting in FIFO order for one.
func (p *CPUPool) acquire(ctx context.Context) (*worker, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	for n := len(p.idle); n > 0; n = len(p.idle) {
		w := p.idle[n-1]
		p.idle = p.idle[:n-1]
		if !w.dead() {
			p.mu.Unlock()
			return w, nil
		}
	}
	wt := waiterPool.Get().(*waiter)
	wt.queued = true
	p.waiters = append(p.waiters, wt)
	p.mu.Unlock()

	select {
	case w := <-wt.ch:
		waiterPool.Put(wt)
		if w == nil {
			return nil, ErrClosed
		}
		return w, nil
	case <-ctx.Done():
		p.mu.Lock()
		if wt.queued {
			p.waiters = slices.DeleteFunc(p.waiters, func(x *waiter) bool { return x == wt })
			p.mu.Unlock()
		} else {
			// A worker was handed over as ctx ended: pass it on.
			p.mu.Unlock()
			if w := <-wt.ch; w != nil {
				p.release(w)
			}
		}
		waiterPool.Put(wt)
		return nil, fmt.Errorf("workers: waiting for a cpu worker: %w", context.Cause(ctx))
	}
}

// Run runs job in a worker. The action's failure comes back as *JobError, a
// worker that dies under the job as *CrashError, a job past its Timeout as
// an error wrapping ErrJobTimeout, and when ctx ends first an error wrapping
// context.Cause(ctx); in the last two cases the worker is killed (and
// replaced) before Run returns.
func (p *CPUPool) Run(ctx context.Context, job Job) (any, error) {
	if ctx.Err() != nil {
		return nil, fmt.Errorf("workers: job %q not started: %w", job.Action, context.Cause(ctx))
	}
	for {
		w, err := p.acquire(ctx)
		if err != nil {
			return nil, err
		}
		out, retry, err := p.runOn(ctx, w, job)
		if !retry {
			return out, err
		}
	}
}

// smallFrame is the largest job message written without deadlines: a pipe
// holds at least one page and is empty between jobs, so it cannot block.
const smallFrame = 4096

// runOn runs job on w, which the caller holds. retry reports that the job
// never reached the worker (it had died idle) and may go to another.
func (p *CPUPool) runOn(ctx context.Context, w *worker, job Job) (out any, retry bool, err error) {
	w.nextID++
	id := w.nextID
	w.wbuf, err = appendJob(w.wbuf, id, job, p.cfg.RLimitCPU)
	if err != nil {
		p.release(w)
		return nil, false, err
	}
	p.busy.Add(1)
	defer p.busy.Add(-1)
	start := time.Now()

	var n int
	if len(w.wbuf) <= smallFrame {
		n, err = w.in.Write(w.wbuf)
	} else {
		n, err = p.writeLarge(ctx, w, job)
	}
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, false, p.abort(ctx, w, job)
		}
		w.stop(reasonNone, p.cfg.KillGrace)
		<-w.exited
		if n == 0 && (errors.Is(err, syscall.EPIPE) || errors.Is(err, os.ErrClosed)) && w.stopReason() == reasonNone {
			return nil, true, nil
		}
		return nil, false, p.deathError(w)
	}

	var timeout <-chan time.Time
	if job.Timeout > 0 {
		w.timer.Reset(job.Timeout - time.Since(start))
		timeout = w.timer.C
	}
	select {
	case res := <-w.resp:
		w.timer.Stop()
		out, err := p.finish(w, id, job, start, res)
		return out, false, err
	case <-w.exited:
		w.timer.Stop()
		select {
		case res := <-w.resp:
			// It answered, then died: the answer stands.
			out, err := p.finish(w, id, job, start, res)
			return out, false, err
		default:
		}
		return nil, false, p.deathError(w)
	case <-ctx.Done():
		w.timer.Stop()
		return nil, false, p.abort(ctx, w, job)
	case <-timeout:
		return nil, false, p.abort(ctx, w, job)
	}
}

// writeLarge writes a job message that may not fit the pipe, bounded by the
// job's timeout and ctx.
func (p *CPUPool) writeLarge(ctx context.Context, w *worker, job Job) (int, error) {
	var deadline time.Time
	if job.Timeout > 0 {
		deadline = time.Now().Add(job.Timeout)
	}
	w.in.SetWriteDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { w.in.SetWriteDeadline(time.Unix(1, 0)) })
	n, err := w.in.Write(w.wbuf)
	if stop() {
		w.in.SetWriteDeadline(time.Time{})
	}
	return n, err
}

// abort kills the worker of a job that timed out or whose ctx ended and
// waits until it is gone.
func (p *CPUPool) abort(ctx context.Context, w *worker, job Job) error {
	w.stop(reasonKilled, p.cfg.KillGrace)
	<-w.exited
	p.jobs.Add(1)
	if ctx.Err() != nil {
		p.log.Info("cpu job cancelled; worker killed", "action", job.Action, "pid", w.pid)
		return fmt.Errorf("workers: job %q cancelled: %w", job.Action, context.Cause(ctx))
	}
	p.log.Info("cpu job timed out; worker killed", "action", job.Action, "pid", w.pid, "timeout", job.Timeout)
	return fmt.Errorf("workers: job %q ran past its %s timeout: %w", job.Action, job.Timeout, ErrJobTimeout)
}

// deathError explains a worker that went away under a job.
func (p *CPUPool) deathError(w *worker) error {
	p.jobs.Add(1)
	if w.stopReason() == reasonClosing {
		return ErrClosed
	}
	return w.crashError()
}

// finish turns a result into Run's return values and puts the worker back
// (or recycles it).
func (p *CPUPool) finish(w *worker, id uint64, job Job, start time.Time, res result) (any, error) {
	p.jobs.Add(1)
	if res.id != id {
		w.stop(reasonNone, 0)
		<-w.exited
		return nil, fmt.Errorf("workers: worker %d answered job %d, want %d", w.pid, res.id, id)
	}
	w.jobs++
	if !res.exiting && !w.dead() {
		p.recycleOrRelease(w)
	}
	switch {
	case res.err != nil:
		return nil, res.err
	case res.failed:
		if job.Timeout > 0 && time.Since(start) >= job.Timeout {
			// The action saw its own deadline just before we did.
			return nil, fmt.Errorf("workers: job %q ran past its %s timeout: %w", job.Action, job.Timeout, ErrJobTimeout)
		}
		return nil, &JobError{Msg: res.msg, Output: res.out}
	}
	return res.out, nil
}

func (p *CPUPool) recycleOrRelease(w *worker) {
	if p.cfg.MaxJobs > 0 && w.jobs >= p.cfg.MaxJobs {
		p.log.Debug("recycling cpu worker", "pid", w.pid, "jobs", w.jobs)
		w.retire(reasonRecycled, p.cfg.KillGrace)
		return
	}
	if p.cfg.MaxRSS > 0 {
		rss, err := w.rss()
		if err != nil {
			p.log.Warn("cannot read cpu worker memory", "pid", w.pid, "err", err)
		} else if rss > p.cfg.MaxRSS {
			p.log.Info("recycling cpu worker over its memory limit", "pid", w.pid, "rss", rss, "max_rss", p.cfg.MaxRSS)
			w.retire(reasonRecycled, p.cfg.KillGrace)
			return
		}
	}
	p.release(w)
}

// Stats returns a snapshot of the pool.
func (p *CPUPool) Stats() PoolStats {
	p.mu.Lock()
	live, queued := len(p.live), len(p.waiters)
	p.mu.Unlock()
	return PoolStats{
		Name:     "cpu",
		Size:     p.cfg.Size,
		Live:     live,
		Busy:     int(p.busy.Load()),
		Queued:   queued,
		Restarts: p.restarts.Load(),
		Crashes:  p.crashes.Load(),
		Jobs:     p.jobs.Load(),
	}
}

// PIDs returns the process ids of the live workers.
func (p *CPUPool) PIDs() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	pids := make([]int, 0, len(p.live))
	for w := range p.live {
		pids = append(pids, w.pid)
	}
	return pids
}

// Shutdown stops every worker (SIGTERM, then SIGKILL after KillGrace),
// fails queued and running jobs with ErrClosed, and returns once every
// worker process has been reaped. Later calls return at once.
func (p *CPUPool) Shutdown() {
	p.mu.Lock()
	first := !p.closed
	var ws []*worker
	if first {
		p.closed = true
		close(p.closedCh)
		for _, wt := range p.waiters {
			wt.queued = false
			wt.ch <- nil
		}
		p.waiters = nil
		p.idle = nil
		for w := range p.live {
			ws = append(ws, w)
		}
	}
	p.mu.Unlock()
	p.endLife()
	for _, w := range ws {
		w.stop(reasonClosing, p.cfg.KillGrace)
	}
	p.wg.Wait()
	if first && p.started {
		close(p.spawns)
		<-p.spawnerDone
		p.stdin.Close()
		p.log.Info("cpu workers stopped")
	}
}
