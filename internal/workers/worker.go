package workers

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aura-dev/aura/internal/containment"
)

// drainPoll is how often a stopped worker's group is checked for processes
// still running in their grace period.
const drainPoll = 10 * time.Millisecond

// stopReason records why the pool ended a worker; a worker that dies while
// its reason is reasonNone crashed.
type stopReason int

const (
	reasonNone     stopReason = iota
	reasonRecycled            // MaxJobs or MaxRSS reached
	reasonLimit               // the worker reported a per-job limit and exits
	reasonKilled              // its job timed out or was cancelled
	reasonClosing             // the pool is closing
)

// worker is one child process as the parent sees it.
type worker struct {
	// Immutable after startWorker.
	pid     int
	proc    *os.Process
	in      *os.File // jobs to the child
	out     *os.File // results from the child; read only by the slot goroutine
	r       *bufio.Reader
	statm   *os.File // /proc/<pid>/statm, open only when MaxRSS is set
	group   *containment.Group
	started time.Time

	// Owned by whoever holds the worker: the slot goroutine until it is
	// first made idle, then the Run call that took it from the idle list.
	wbuf   []byte
	timer  *time.Timer
	nextID uint64
	jobs   int

	resp   chan result   // slot goroutine → holder; capacity 1
	exited chan struct{} // closed by the slot goroutine once the child is reaped

	// Written by the slot goroutine before exited is closed.
	status     syscall.WaitStatus
	detail     string
	cleanupErr error // the containment group could not be emptied

	mu     sync.Mutex // guards the fields below
	reason stopReason
	reaped bool
	kill   *time.Timer // pending SIGKILL of a worker being stopped
	// termEnds is when the grace given with a SIGTERM to the whole group
	// ends; zero when no SIGTERM was sent.
	termEnds time.Time
}

// startWorker starts one child process. It does not wait for its hello.
func startWorker(cfg *CPUConfig, stdin *os.File) (*worker, error) {
	jobsR, jobsW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("workers: job pipe: %w", err)
	}
	resR, resW, err := os.Pipe()
	if err != nil {
		jobsR.Close()
		jobsW.Close()
		return nil, fmt.Errorf("workers: result pipe: %w", err)
	}
	// A nil Env would hand the child our whole environment.
	env := append(make([]string, 0, len(cfg.Env)), cfg.Env...)
	attr := &os.ProcAttr{
		Env:   env,
		Files: []*os.File{stdin, cfg.Stderr, cfg.Stderr, jobsR, resW},
		Sys: &syscall.SysProcAttr{
			Setpgid:   true,            // one group per worker, killed as a whole
			Pdeathsig: syscall.SIGKILL, // dies with aurad
		},
	}
	// The worker's group holds its actions' processes too, wherever they
	// move, so they end with the worker.
	group, err := cfg.Processes.NewGroup("worker")
	var proc *os.Process
	if err == nil {
		proc, err = group.StartProcess(cfg.Command[0], cfg.Command, attr)
	}
	jobsR.Close()
	resW.Close()
	if err != nil {
		jobsW.Close()
		resR.Close()
		if group != nil {
			group.Close()
		}
		return nil, fmt.Errorf("workers: starting %s: %w", cfg.Command[0], err)
	}
	w := &worker{
		group:   group,
		pid:     proc.Pid,
		proc:    proc,
		in:      jobsW,
		out:     resR,
		r:       bufio.NewReaderSize(resR, 64<<10),
		started: time.Now(),
		wbuf:    make([]byte, 0, 4096),
		timer:   time.NewTimer(time.Hour),
		resp:    make(chan result, 1),
		exited:  make(chan struct{}),
	}
	w.timer.Stop()
	if cfg.MaxRSS > 0 {
		if w.statm, err = os.Open("/proc/" + strconv.Itoa(w.pid) + "/statm"); err != nil {
			w.stop(reasonClosing, 0)
			w.reap()
			return nil, fmt.Errorf("workers: watching worker memory: %w", err)
		}
	}
	return w, nil
}

// handshake waits for the child's hello and applies the address-space limit.
func (w *worker) handshake(cfg *CPUConfig) error {
	w.out.SetReadDeadline(time.Now().Add(cfg.StartTimeout))
	p, err := readFrame(w.r, nil)
	w.out.SetReadDeadline(time.Time{})
	if err != nil {
		return fmt.Errorf("workers: worker %d did not greet: %w", w.pid, err)
	}
	if err := checkHello(p); err != nil {
		return err
	}
	if cfg.RLimitAS > 0 {
		lim := unix.Rlimit{Cur: cfg.RLimitAS, Max: cfg.RLimitAS}
		if err := unix.Prlimit(w.pid, unix.RLIMIT_AS, &lim, nil); err != nil {
			return fmt.Errorf("workers: limiting worker %d address space: %w", w.pid, err)
		}
	}
	return nil
}

// stop asks the worker's process group to end: SIGTERM now, SIGKILL after
// grace (at once when grace is 0). The first reason given sticks.
func (w *worker) stop(reason stopReason, grace time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.reaped {
		return
	}
	if w.reason == reasonNone {
		w.reason = reason
	}
	if grace <= 0 {
		w.termEnds = time.Time{}
		w.signalLocked(syscall.SIGKILL)
		return
	}
	if w.termEnds.IsZero() {
		w.termEnds = time.Now().Add(grace)
	}
	w.signalLocked(syscall.SIGTERM)
	w.armKillLocked(grace)
}

// retire ends an idle worker gently: closing its job pipe makes WorkerMain
// return; SIGKILL follows after grace if it does not.
func (w *worker) retire(reason stopReason, grace time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.reason == reasonNone {
		w.reason = reason
	}
	w.in.Close()
	w.armKillLocked(grace)
}

func (w *worker) setReason(reason stopReason) {
	w.mu.Lock()
	if w.reason == reasonNone {
		w.reason = reason
	}
	w.mu.Unlock()
}

func (w *worker) stopReason() stopReason {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.reason
}

func (w *worker) armKillLocked(grace time.Duration) {
	if w.kill != nil || w.reaped {
		return
	}
	w.kill = time.AfterFunc(grace, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.signalLocked(syscall.SIGKILL)
	})
}

// signalLocked signals the worker's whole containment group, so an
// action's own children go with the worker even when they left its process
// group. Never after the reap: the pid could be reused.
func (w *worker) signalLocked(sig syscall.Signal) {
	if !w.reaped {
		w.group.Signal(sig)
	}
}

// reap waits for the child to exit, kills whatever is left of its
// containment group, releases its descriptors and closes exited.
func (w *worker) reap() {
	w.wait()
	close(w.exited)
}

// wait is reap without announcing the exit, for the slot goroutine to update
// the pool's books first.
func (w *worker) wait() {
	state, err := w.proc.Wait()
	w.mu.Lock()
	w.reaped = true
	if w.kill != nil {
		w.kill.Stop()
	}
	termEnds := w.termEnds
	w.mu.Unlock()
	// The worker itself dies at once on SIGTERM; its actions' processes
	// got the same SIGTERM and keep the rest of the grace to exit on their
	// own (an exec step's SIGTERM-then-SIGKILL, as on the io lane).
	for time.Now().Before(termEnds) && w.group.Running() {
		time.Sleep(drainPoll)
	}
	// Whatever the worker's actions started dies with it, wherever it
	// went: its process group, its cgroup, or its orphans adopted here.
	if cerr := w.group.Close(); cerr != nil {
		w.cleanupErr = cerr
	}
	if err == nil {
		w.status, _ = state.Sys().(syscall.WaitStatus)
	}
	w.in.Close()
	w.out.Close()
	if w.statm != nil {
		w.statm.Close()
	}
}

// dead reports whether the worker has been reaped.
func (w *worker) dead() bool {
	select {
	case <-w.exited:
		return true
	default:
		return false
	}
}

// crashError describes a reaped worker's death.
func (w *worker) crashError() *CrashError {
	e := &CrashError{PID: w.pid, ExitCode: w.status.ExitStatus(), Detail: w.detail}
	if w.status.Signaled() {
		e.ExitCode = -1
		e.Signal = unix.SignalName(w.status.Signal())
		if e.Signal == "" {
			e.Signal = w.status.Signal().String()
		}
	}
	return e
}

// rss returns the worker's resident set size in bytes.
func (w *worker) rss() (int64, error) {
	var buf [128]byte
	n, err := w.statm.ReadAt(buf[:], 0)
	if n == 0 {
		return 0, fmt.Errorf("workers: reading statm of %d: %w", w.pid, err)
	}
	fields := bytes.Fields(buf[:n])
	if len(fields) < 2 {
		return 0, fmt.Errorf("workers: malformed statm of %d", w.pid)
	}
	pages, err := strconv.ParseInt(string(fields[1]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("workers: malformed statm of %d: %w", w.pid, err)
	}
	return pages * int64(os.Getpagesize()), nil
}
