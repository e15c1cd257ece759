package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// server is one server process the harness started (aurad, redis-server or
// postgres) and owns until stop.
type server struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan error // Wait's result, once the process has exited
}

// startServer starts argv as a process of its own, its output in logPath.
// asUser, when set, runs it as that user (postgres refuses to run as root).
func startServer(name, logPath string, asUser *user.User, argv ...string) (*server, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if asUser != nil {
		cred, err := credential(asUser)
		if err != nil {
			lf.Close()
			return nil, err
		}
		cmd.SysProcAttr.Credential = cred
	}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	s := &server{name: name, cmd: cmd, log: lf, done: make(chan error, 1)}
	go func() { s.done <- cmd.Wait() }()
	return s, nil
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// exited reports whether the process has already ended (it failed to start).
func (s *server) exited() bool {
	select {
	case err := <-s.done:
		s.done <- err
		return true
	default:
		return false
	}
}

// stop asks the process to end with sig (each server's own "shut down
// now" signal), waits up to 30 s, then kills its whole process group.
func (s *server) stop(sig syscall.Signal) error {
	defer s.log.Close()
	if s.exited() {
		return nil
	}
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
		return nil
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
		return fmt.Errorf("%s did not stop within 30s of %v: killed", s.name, sig)
	}
}

// logTail returns the last lines of the server's log, for error messages.
func (s *server) logTail() string {
	b, err := os.ReadFile(s.log.Name())
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-8):], "\n")
}

// waitReady calls ready until it succeeds, the process exits or 60 s pass.
func (s *server) waitReady(ctx context.Context, ready func(context.Context) error) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := ready(ctx)
		if err == nil {
			return nil
		}
		if s.exited() {
			return fmt.Errorf("%s exited while starting:\n%s", s.name, s.logTail())
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s not ready after 60s: %v\n%s", s.name, err, s.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func credential(u *user.User) (*syscall.Credential, error) {
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// treeMemory returns the proportional set size (Pss: shared pages divided
// among the processes that map them) of pid and all its descendants, in
// bytes. Summing RSS instead would count PostgreSQL's shared buffers once
// per backend.
func treeMemory(pid int) (int64, error) {
	var total int64
	for _, p := range append([]int{pid}, descendants(pid)...) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", p))
		if err != nil {
			if p == pid {
				return 0, err
			}
			continue // a child that just exited
		}
		kb, err := pssKB(string(b))
		if err != nil {
			return 0, fmt.Errorf("pid %d: %w", p, err)
		}
		total += kb << 10
	}
	return total, nil
}

// pssKB reads the Pss line of /proc/PID/smaps_rollup.
func pssKB(rollup string) (int64, error) {
	for _, line := range strings.Split(rollup, "\n") {
		rest, ok := strings.CutPrefix(line, "Pss:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("smaps_rollup: unexpected line %q", line)
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	return 0, errors.New("smaps_rollup: no Pss line")
}

// descendants lists the processes below pid, read from /proc.
func descendants(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	children := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		if pp, ok := parentPID(string(b)); ok {
			children[pp] = append(children[pp], p)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		out = append(out, children[p]...)
		queue = append(queue, children[p]...)
	}
	sort.Ints(out)
	return out
}

// parentPID reads the ppid field of /proc/PID/stat; the command name
// before it is in parentheses and may hold spaces.
func parentPID(stat string) (int, bool) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 2 {
		return 0, false
	}
	pp, err := strconv.Atoi(f[1])
	return pp, err == nil
}

// treeCPU returns the CPU time (user and system) pid and its live
// descendants have used so far.
func treeCPU(pid int) (time.Duration, error) {
	var ticks int64
	for _, p := range append([]int{pid}, descendants(pid)...) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			if p == pid {
				return 0, err
			}
			continue
		}
		t, ok := cpuTicks(string(b))
		if !ok {
			return 0, fmt.Errorf("/proc/%d/stat: no utime and stime", p)
		}
		ticks += t
	}
	// Linux reports these in USER_HZ, 100 a second on every architecture
	// Go runs Linux on.
	return time.Duration(ticks) * (time.Second / 100), nil
}

// cpuTicks reads utime + stime from /proc/PID/stat.
func cpuTicks(stat string) (int64, bool) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, false
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	return u + s, err1 == nil && err2 == nil
}

// selfCPU returns the CPU time this process has used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// memorySampler records the largest treeMemory of pid seen every 100 ms
// until stopped.
type memorySampler struct {
	stopc chan struct{}
	peak  chan int64
}

func sampleMemory(pid int) *memorySampler {
	m := &memorySampler{stopc: make(chan struct{}), peak: make(chan int64, 1)}
	go func() {
		var peak int64
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if v, err := treeMemory(pid); err == nil {
				peak = max(peak, v)
			}
			select {
			case <-m.stopc:
				m.peak <- peak
				return
			case <-t.C:
			}
		}
	}()
	return m
}

func (m *memorySampler) stop() int64 {
	close(m.stopc)
	return <-m.peak
}
