package workers

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Descriptors the parent hands a worker, beside stdin, stdout and stderr.
const (
	jobsFD    = 3 // the worker reads jobs here
	resultsFD = 4 // the worker writes results here
)

// Exit codes of WorkerMain.
const (
	exitOK          = 0 // the parent closed the job pipe: an orderly stop
	exitProtocol    = 1 // the pipes failed or carried garbage
	exitPanic       = 2 // the handler panicked (the same code as an unrecovered Go panic)
	exitNotWorker   = 3 // not started by a CPUPool
	exitCPULimit    = 4 // a job used up its CPU time limit
	maxPanicReport  = 16 << 10
	workerReadBytes = 64 << 10
)

// WorkerMain is the whole main of a worker process: it serves jobs from the
// parent CPUPool with h until the parent closes the job pipe, and returns the
// process exit code. `aurad worker` runs os.Exit(workers.WorkerMain(h)).
//
// A panic in h is reported to the parent and ends the worker (its state can
// no longer be trusted); the parent fails the job with *CrashError.
func WorkerMain(h Handler) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", "aura-worker", "pid", os.Getpid())
	for _, fd := range []int{jobsFD, resultsFD} {
		if !inheritedPipe(fd) {
			log.Error("worker started without its protocol pipes; aurad runs it, not a person", "fd", fd)
			return exitNotWorker
		}
	}
	for _, fd := range []int{jobsFD, resultsFD} {
		// The actions' own children must not hold the protocol pipes open.
		unix.CloseOnExec(fd)
	}
	closeInheritedFDs(log)
	s := &workerServer{
		handler: h,
		log:     log,
		in:      bufio.NewReaderSize(os.NewFile(jobsFD, "aura-jobs"), workerReadBytes),
		out:     os.NewFile(resultsFD, "aura-results"),
		names:   make(map[string]string),
	}
	return s.serve()
}

// inheritedPipe reports whether fd is a pipe that came through exec (the Go
// runtime opens its own descriptors close-on-exec, and may well have taken
// 3 and 4 when nobody passed them).
func inheritedPipe(fd int) bool {
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	if err != nil || flags&unix.FD_CLOEXEC != 0 {
		return false
	}
	var st unix.Stat_t
	return unix.Fstat(fd, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFIFO
}

// closeInheritedFDs closes every descriptor above the protocol pair that came
// through exec. Go opens all of its own descriptors close-on-exec, so one
// without the flag was leaked by whoever started us.
func closeInheritedFDs(log *slog.Logger) {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		log.Warn("cannot list open descriptors", "err", err)
		return
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= resultsFD {
			continue
		}
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err == nil && flags&unix.FD_CLOEXEC == 0 {
			unix.Close(fd)
		}
	}
}

// workerServer is the worker side of the protocol.
type workerServer struct {
	handler Handler
	log     *slog.Logger
	in      *bufio.Reader // read only by serve
	names   map[string]string

	mu       sync.Mutex // serialises writes: serve and the CPU-limit watcher
	out      *os.File
	wbuf     []byte
	current  uint64 // id of the job running, 0 between jobs
	answered bool   // current has its result written
}

func (s *workerServer) serve() int {
	s.mu.Lock()
	s.wbuf = appendHello(s.wbuf)
	_, err := s.out.Write(s.wbuf)
	s.mu.Unlock()
	if err != nil {
		s.log.Error("cannot greet the parent", "err", err)
		return exitProtocol
	}
	limits := newCPULimiter(s)
	defer limits.stop()

	var buf []byte
	for {
		if cap(buf) > keptBuffer {
			buf = nil
		}
		buf, err = readFrame(s.in, buf)
		if errors.Is(err, io.EOF) {
			return exitOK
		}
		if err != nil {
			s.log.Error("reading a job", "err", err)
			return exitProtocol
		}
		if buf[0] != msgJob {
			s.log.Error("unexpected message", "kind", string(buf[0]))
			return exitProtocol
		}
		f, err := decodeJob(buf, s.names)
		if err != nil {
			s.log.Error("undecodable job", "err", err)
			return exitProtocol
		}
		s.mu.Lock()
		s.current, s.answered = f.id, false
		s.mu.Unlock()
		limits.arm(f.cpuLimit)
		out, report, jobErr := s.call(f.job)
		limits.disarm()
		if report != "" {
			s.mu.Lock()
			s.wbuf = appendPanic(s.wbuf, f.id, report)
			s.out.Write(s.wbuf)
			s.mu.Unlock()
			return exitPanic
		}
		if _, err := s.answer(f.id, out, jobErr, false); err != nil {
			s.log.Error("writing a result", "err", err)
			return exitProtocol
		}
	}
}

// call runs the handler, turning a panic into a report.
func (s *workerServer) call(job Job) (out any, report string, err error) {
	defer func() {
		if r := recover(); r != nil {
			report = fmt.Sprintf("panic: %v\n\n%s", r, debug.Stack())
			if len(report) > maxPanicReport {
				report = report[:maxPanicReport]
			}
			// As an unrecovered panic would, leave the report in the log too.
			fmt.Fprint(os.Stderr, report)
		}
	}()
	ctx := context.Background()
	if job.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, job.Timeout)
		defer cancel()
	}
	out, err = s.handler(ctx, job)
	return out, "", err
}

// answer writes the result of job id unless it already has one, and says
// whether it wrote it.
func (s *workerServer) answer(id uint64, out any, jobErr error, exiting bool) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current != id || s.answered {
		return false, nil
	}
	var err error
	s.wbuf, err = appendResult(s.wbuf, id, out, jobErr, exiting)
	if err != nil {
		// The action produced something the protocol cannot carry: fail
		// the job rather than the worker.
		msg := fmt.Errorf("the action's output cannot be sent back: %w", err)
		if s.wbuf, err = appendResult(s.wbuf, id, nil, msg, exiting); err != nil {
			return false, err
		}
	}
	s.answered = true
	_, err = s.out.Write(s.wbuf)
	if cap(s.wbuf) > keptBuffer {
		s.wbuf = nil
	}
	return true, err
}

// cpuLimiter applies a per-job CPU time limit with the soft RLIMIT_CPU: the
// kernel sends SIGXCPU once the process has used the limit, and the worker
// fails the job and exits (the job's goroutine cannot be stopped otherwise).
type cpuLimiter struct {
	s     *workerServer
	sigs  chan os.Signal
	done  chan struct{}
	wg    sync.WaitGroup
	orig  unix.Rlimit  // immutable after newCPULimiter
	limit atomic.Int64 // the armed limit, for the failure message
	armed bool         // touched only by serve's goroutine
}

func newCPULimiter(s *workerServer) *cpuLimiter {
	l := &cpuLimiter{s: s, sigs: make(chan os.Signal, 1), done: make(chan struct{})}
	if err := unix.Getrlimit(unix.RLIMIT_CPU, &l.orig); err != nil {
		l.orig = unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
	}
	signal.Notify(l.sigs, unix.SIGXCPU)
	l.wg.Add(1)
	go l.watch()
	return l
}

func (l *cpuLimiter) watch() {
	defer l.wg.Done()
	for {
		select {
		case <-l.done:
			return
		case <-l.sigs:
			l.s.mu.Lock()
			id := l.s.current
			l.s.mu.Unlock()
			msg := fmt.Errorf("job used up its CPU time limit of %s", time.Duration(l.limit.Load()))
			wrote, err := l.s.answer(id, nil, msg, true)
			if err != nil {
				l.s.log.Error("writing a result", "err", err)
			}
			if wrote {
				os.Exit(exitCPULimit)
			}
			// The job finished just before the signal: its limit is
			// being lifted, nothing to do.
		}
	}
}

func (l *cpuLimiter) arm(limit time.Duration) {
	if limit <= 0 {
		return
	}
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		l.s.log.Warn("cannot read CPU usage; job runs without a CPU limit", "err", err)
		return
	}
	used := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	// RLIMIT_CPU counts whole seconds of the process's lifetime usage.
	secs := uint64(math.Ceil((used + limit).Seconds()))
	rl := unix.Rlimit{Cur: min(secs, l.orig.Max), Max: l.orig.Max}
	l.limit.Store(int64(limit))
	if err := unix.Setrlimit(unix.RLIMIT_CPU, &rl); err != nil {
		l.s.log.Warn("cannot set the CPU limit", "err", err)
		return
	}
	l.armed = true
}

func (l *cpuLimiter) disarm() {
	if !l.armed {
		return
	}
	l.armed = false
	if err := unix.Setrlimit(unix.RLIMIT_CPU, &l.orig); err != nil {
		l.s.log.Warn("cannot lift the CPU limit", "err", err)
	}
}

func (l *cpuLimiter) stop() {
	signal.Stop(l.sigs)
	close(l.done)
	l.wg.Wait()
}
