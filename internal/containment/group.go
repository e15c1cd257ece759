package containment

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
)

// Group is the processes of one exec step or one CPU worker: the first
// process started through it and everything that process starts. A Group
// made from a nil *Tree holds only its first process's process group.
type Group struct {
	t   *Tree    // nil: process group only
	dir string   // this group's cgroup; "" unless the tree is in cgroup mode
	fd  *os.File // dir, open for CLONE_INTO_CGROUP until the start

	mu     sync.Mutex
	leader *os.Process // the first process; nil until started
	pid    int
	closed bool
}

// NewGroup makes an empty group named after kind ("exec", "worker"). A nil
// Tree gives a group that only knows its first process's process group.
func (t *Tree) NewGroup(kind string) (*Group, error) {
	if t == nil {
		return &Group{}, nil
	}
	g := &Group{t: t}
	if t.dir == "" {
		return g, nil
	}
	g.dir = filepath.Join(t.dir, kind+"-"+strconv.FormatUint(t.seq.Add(1), 10))
	if err := os.Mkdir(g.dir, 0o755); err != nil {
		return nil, fmt.Errorf("process containment: making a cgroup for %s: %w", kind, err)
	}
	fd, err := os.Open(g.dir)
	if err != nil {
		_ = os.Remove(g.dir)
		return nil, fmt.Errorf("process containment: opening cgroup %s: %w", g.dir, err)
	}
	g.fd = fd
	return g, nil
}

// Dir is the group's cgroup directory ("" when it is not a cgroup).
func (g *Group) Dir() string { return g.dir }

// Start starts cmd as the group's first process. cmd.SysProcAttr is kept;
// in cgroup mode the child is cloned straight into the group's cgroup, so
// not even its first instruction runs outside it.
func (g *Group) Start(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	return g.start(cmd.SysProcAttr, func() (*os.Process, error) {
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		return cmd.Process, nil
	})
}

// StartProcess is os.StartProcess as the group's first process.
func (g *Group) StartProcess(name string, argv []string, attr *os.ProcAttr) (*os.Process, error) {
	if attr.Sys == nil {
		attr.Sys = &syscall.SysProcAttr{}
	}
	var proc *os.Process
	err := g.start(attr.Sys, func() (*os.Process, error) {
		var err error
		proc, err = os.StartProcess(name, argv, attr)
		return proc, err
	})
	return proc, err
}

// start runs start with sys aimed at the group's cgroup and enters the new
// process in the tree before any sweep can take it for an adopted orphan.
func (g *Group) start(sys *syscall.SysProcAttr, start func() (*os.Process, error)) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.leader != nil || g.closed {
		return errors.New("process containment: a group starts one process")
	}
	if g.fd != nil {
		sys.UseCgroupFD = true
		sys.CgroupFD = int(g.fd.Fd())
	}
	if g.t != nil {
		g.t.startMu.RLock()
		defer g.t.startMu.RUnlock()
	}
	proc, err := start()
	if g.fd != nil {
		g.fd.Close()
		g.fd = nil
	}
	if err != nil {
		return err
	}
	g.leader, g.pid = proc, proc.Pid
	if g.t != nil {
		g.t.register(proc.Pid)
	}
	return nil
}

// Signal sends sig to every process of the group: the first process's
// process group, and then every process in the cgroup (SIGKILL through
// cgroup.kill) or, in subreaper mode, every process under the first one
// while it lives.
func (g *Group) Signal(sig syscall.Signal) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.leader == nil {
		return
	}
	_ = syscall.Kill(-g.pid, sig)
	// In case it moved to another process group; through a pidfd, so
	// harmless once it is reaped.
	_ = g.leader.Signal(sig)
	switch {
	case g.dir != "":
		signalCgroup(g.dir, sig)
	case g.t != nil && g.leaderAliveLocked():
		// The first process is not reaped, so its pid still names it.
		for _, pid := range descendants(g.pid) {
			_ = syscall.Kill(pid, sig)
		}
	}
}

// leaderAliveLocked reports whether the first process has not been reaped;
// os.Process.Signal asks through a pidfd, so a reused pid cannot answer.
func (g *Group) leaderAliveLocked() bool {
	return g.leader.Signal(syscall.Signal(0)) == nil
}

// Running reports whether any process of the group may still run.
func (g *Group) Running() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.leader == nil {
		return false
	}
	if g.dir != "" {
		pop, err := populated(g.dir)
		return err != nil || pop
	}
	if err := syscall.Kill(-g.pid, 0); err == nil || !errors.Is(err, syscall.ESRCH) {
		return true
	}
	return g.t != nil && g.leaderAliveLocked() && len(descendants(g.pid)) > 0
}

// Close kills whatever is left of the group and releases it. Call it once
// the first process has been waited for (os/exec's Wait, os.Process.Wait):
// until then its pid is not free to be forgotten. In cgroup mode it returns
// once the cgroup is empty and removed; in subreaper mode once the orphans
// adopted so far are killed.
func (g *Group) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	g.closed = true
	if g.fd != nil {
		g.fd.Close()
		g.fd = nil
	}
	if g.leader != nil {
		// Descendants keep the process group, and so the pid, alive:
		// sweeping it now cannot hit an unrelated process.
		_ = syscall.Kill(-g.pid, syscall.SIGKILL)
		if g.t != nil {
			g.t.forget(g.pid)
		}
	}
	var err error
	switch {
	case g.dir != "":
		err = removeCgroup(g.dir, g.t.log)
		// The killed processes that had been reparented to us are
		// zombies now.
		g.t.kick()
	case g.t != nil:
		g.t.sweep()
	}
	return err
}
