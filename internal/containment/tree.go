package containment

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Mode says how a Tree keeps its groups' processes.
type Mode string

const (
	// ModeAuto picks ModeCgroup where a writable cgroup v2 hierarchy and
	// clone3 are available and ModeSubreaper elsewhere, logging which.
	ModeAuto Mode = "auto"
	// ModeCgroup makes each Group a cgroup v2 group: nothing in it can
	// leave it (short of writing cgroup files, which takes the rights of
	// the cgroup's owner), and killing it kills all of it.
	ModeCgroup Mode = "cgroup"
	// ModeSubreaper finds a Group's processes by their parent links under
	// a child subreaper: a process that outlives its parent is adopted
	// and killed at the next sweep.
	ModeSubreaper Mode = "subreaper"
)

// ParseMode reads a --process-containment value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeAuto, ModeCgroup, ModeSubreaper:
		return m, nil
	case "":
		return ModeAuto, nil
	}
	return "", fmt.Errorf("process containment %q: want auto, cgroup or subreaper", s)
}

// Config configures a Tree.
type Config struct {
	Mode   Mode         // default ModeAuto
	Logger *slog.Logger // default: discard
}

// Tree is one process's containment of the processes it starts. Every child
// of a process that has a Tree must be started through one of its Groups:
// any other child is taken for an adopted orphan.
type Tree struct {
	// Immutable after New.
	log  *slog.Logger
	mode Mode   // ModeCgroup or ModeSubreaper
	dir  string // the cgroup directory holding this process's groups; "" in subreaper mode
	pid  int
	seq  atomic.Uint64

	// startMu is held for reading while a child is started and entered in
	// own, and for writing while a sweep takes its census of children, so
	// a child just forked is never mistaken for an adopted one.
	startMu sync.RWMutex
	mu      sync.Mutex // guards own
	// own counts, per pid, the children started through a Group and not
	// yet forgotten (os/exec reaps them). A count, not a set: a pid freed
	// by os/exec can be given to the next child before its old group
	// forgets it.
	own map[int]int

	sigs      chan os.Signal // SIGCHLD
	wake      chan struct{}  // a sweep is asked for; capacity 1
	quit      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// New makes this process a child subreaper, picks the mode and starts the
// goroutine that reaps (and in subreaper mode kills) adopted orphans. It
// logs which guarantee holds. Close it when the process stops starting
// children.
func New(cfg Config) (*Tree, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mode := cfg.Mode
	if mode == "" {
		mode = ModeAuto
	}
	if _, err := ParseMode(string(mode)); err != nil {
		return nil, err
	}
	t := &Tree{
		log:  log,
		pid:  os.Getpid(),
		own:  make(map[int]int),
		sigs: make(chan os.Signal, 1),
		wake: make(chan struct{}, 1),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	// Without it orphans go to init, which may never reap them and which
	// this process cannot ask to kill them.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		if mode == ModeSubreaper {
			return nil, fmt.Errorf("process containment: becoming a child subreaper: %w", err)
		}
		log.Warn("process containment: cannot become a child subreaper (Linux older than 3.4?); "+
			"orphaned processes go to init, which may leave them unreaped", "err", err)
	}
	if mode != ModeSubreaper {
		dir, err := makeCgroupDir(t.pid, log)
		switch {
		case err == nil:
			t.mode, t.dir = ModeCgroup, dir
		case mode == ModeCgroup:
			return nil, fmt.Errorf("process containment: cgroup mode asked for but unavailable: %w", err)
		default:
			log.Warn("process containment: cgroup v2 unavailable, falling back to subreaper mode: "+
				"processes that detach from their exec step are killed when aurad notices them, not held until the step ends "+
				"(docs/operations.md, Process containment)",
				"reason", err.Error())
		}
	}
	if t.mode == "" {
		t.mode = ModeSubreaper
	}
	if t.mode == ModeCgroup {
		log.Info("process containment: one cgroup v2 group per exec step and per cpu worker; everything a step starts is killed with it",
			"mode", t.mode, "cgroup", t.dir)
	} else {
		log.Info("process containment: child subreaper; a step's process tree is killed with it and orphans are killed when adopted",
			"mode", t.mode)
	}
	signal.Notify(t.sigs, syscall.SIGCHLD)
	go t.run()
	return t, nil
}

// Mode is the mode in force: ModeCgroup or ModeSubreaper.
func (t *Tree) Mode() Mode { return t.mode }

// Close stops the reaper, kills what is left in this process's cgroup
// directory and removes it, and sweeps one last time. Groups should be
// closed first; a group still open is killed with the rest.
func (t *Tree) Close() error {
	t.closeOnce.Do(func() {
		signal.Stop(t.sigs)
		close(t.quit)
		<-t.done
		if t.dir != "" {
			if err := removeCgroup(t.dir, t.log); err != nil {
				t.log.Warn("process containment: cannot remove the cgroup", "cgroup", t.dir, "err", err)
			}
		}
		// Reaps what removeCgroup just killed, too.
		t.sweep()
		// Orphans adopted from now on would never be reaped.
		_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	})
	return nil
}

// run sweeps whenever a child changes state or a sweep is asked for.
func (t *Tree) run() {
	defer close(t.done)
	for {
		select {
		case <-t.quit:
			return
		case <-t.sigs:
		case <-t.wake:
		}
		t.sweep()
	}
}

// kick asks for a sweep without waiting for it.
func (t *Tree) kick() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// Sweep reaps adopted orphans now; in subreaper mode it first kills them and
// everything under them, since no group can be told to.
func (t *Tree) Sweep() { t.sweep() }

func (t *Tree) sweep() {
	t.startMu.Lock()
	kids := children(t.pid)
	t.mu.Lock()
	adopted := kids[:0]
	for _, pid := range kids {
		if _, ok := t.own[pid]; !ok {
			adopted = append(adopted, pid)
		}
	}
	t.mu.Unlock()
	t.startMu.Unlock()

	for _, pid := range adopted {
		if t.mode == ModeSubreaper {
			// Descendants first would leave a window for the orphan to
			// fork again; killing it first makes its children ours, and
			// they are found at the next sweep anyway. Both, now.
			for _, d := range descendants(pid) {
				_ = syscall.Kill(d, syscall.SIGKILL)
			}
			if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
				t.log.Debug("process containment: killed an adopted orphan", "pid", pid)
			}
		}
		// Only this pid: a wait for any child would race os/exec for the
		// exit status of children it started.
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); err != nil && !errors.Is(err, unix.ECHILD) {
			t.log.Warn("process containment: reaping an adopted orphan", "pid", pid, "err", err)
		}
	}
}

// register and forget keep own: a child is registered between its start
// and the sweep's next census, and forgotten once os/exec has reaped it.
func (t *Tree) register(pid int) {
	t.mu.Lock()
	t.own[pid]++
	t.mu.Unlock()
}

func (t *Tree) forget(pid int) {
	t.mu.Lock()
	if t.own[pid]--; t.own[pid] <= 0 {
		delete(t.own, pid)
	}
	t.mu.Unlock()
}

// children lists pid's children from /proc/<pid>/task/*/children, falling
// back to a scan of every process's parent where the kernel lacks those
// files.
func children(pid int) []int {
	base := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(base)
	if err != nil {
		return nil
	}
	var out []int
	for _, task := range tasks {
		b, err := os.ReadFile(base + "/" + task.Name() + "/children")
		if errors.Is(err, os.ErrNotExist) {
			if _, serr := os.Stat(base + "/" + task.Name()); serr == nil {
				return childrenByScan(pid)
			}
			continue // the thread ended
		}
		out = appendPIDs(out, b)
	}
	return out
}

// descendants lists every process below pid, breadth first.
func descendants(pid int) []int {
	out := children(pid)
	for i := 0; i < len(out); i++ {
		out = append(out, children(out[i])...)
	}
	return out
}

func appendPIDs(out []int, b []byte) []int {
	start := -1
	for i := 0; i <= len(b); i++ {
		if i < len(b) && b[i] >= '0' && b[i] <= '9' {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			if n, err := strconv.Atoi(string(b[start:i])); err == nil {
				out = append(out, n)
			}
			start = -1
		}
	}
	return out
}

// childrenByScan reads every /proc/<pid>/stat for its parent.
func childrenByScan(parent int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, ok := parentOf(pid); ok && ppid == parent {
			out = append(out, pid)
		}
	}
	return out
}

// parentOf reads the fourth field of /proc/<pid>/stat, after the command
// name in parentheses (which may itself hold spaces and parentheses).
func parentOf(pid int) (int, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+4 > len(b) {
		return 0, false
	}
	var fields []int
	fields = appendPIDs(fields, b[i+4:]) // skip ") S "
	if len(fields) == 0 {
		return 0, false
	}
	return fields[0], true
}
