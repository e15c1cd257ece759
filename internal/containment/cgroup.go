package containment

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// cgroupDirPrefix names the directory each process with a Tree makes
	// under its own cgroup: aura-<pid>.
	cgroupDirPrefix = "aura-"
	// emptyTimeout bounds the wait for a killed cgroup to empty; SIGKILL
	// cannot be refused, so only a process stuck in the kernel (D state)
	// takes longer.
	emptyTimeout = 10 * time.Second
	emptyPoll    = 2 * time.Millisecond
)

// makeCgroupDir finds this process's cgroup v2 directory, removes what
// earlier processes left there, and makes aura-<pid> in it for this
// process's groups. An error says why cgroup mode cannot be used.
func makeCgroupDir(pid int, log *slog.Logger) (string, error) {
	own, err := ownCgroup()
	if err != nil {
		return "", err
	}
	mnt, root, err := cgroup2Mount()
	if err != nil {
		return "", err
	}
	rel := own
	if root != "/" {
		r, ok := strings.CutPrefix(own, root)
		if !ok {
			return "", fmt.Errorf("this process's cgroup %s is outside the cgroup2 mount's root %s", own, root)
		}
		rel = r
	}
	base := filepath.Join(mnt, rel)
	if _, err := os.Stat(filepath.Join(base, "cgroup.procs")); err != nil {
		return "", fmt.Errorf("this process's cgroup is not visible at %s: %w", base, err)
	}
	// clone3 is what puts a child in its cgroup before it runs; seccomp
	// profiles (Docker's default among them) refuse it with ENOSYS. Called
	// with no arguments it fails without forking either way.
	if _, _, errno := unix.Syscall(unix.SYS_CLONE3, 0, 0, 0); errno == unix.ENOSYS {
		return "", errors.New("clone3 is not available (kernel older than 5.7, or refused by a seccomp profile)")
	}
	removeStale(base, pid, log)
	dir := filepath.Join(base, cgroupDirPrefix+strconv.Itoa(pid))
	if err := os.Mkdir(dir, 0o755); err != nil {
		if !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("cannot make a cgroup under %s (run aurad as root, or give it a delegated cgroup, e.g. systemd Delegate=yes): %w", base, err)
		}
		// A process with our pid in another pid namespace, or one we
		// could not clean: start from an empty one.
		if err := removeCgroup(dir, log); err != nil {
			return "", err
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			return "", fmt.Errorf("making cgroup %s: %w", dir, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "cgroup.kill")); err != nil {
		_ = os.Remove(dir)
		return "", errors.New("cgroup.kill is missing (kernel older than 5.14)")
	}
	return dir, nil
}

// ownCgroup reads this process's cgroup v2 path from /proc/self/cgroup.
func ownCgroup() (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", fmt.Errorf("reading /proc/self/cgroup: %w", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p, nil
		}
	}
	return "", errors.New("this process is in no cgroup v2 hierarchy")
}

// cgroup2Mount returns the mount point of the cgroup2 filesystem and the
// cgroup path it shows at that point.
func cgroup2Mount() (mountPoint, root string, err error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", "", fmt.Errorf("reading /proc/self/mountinfo: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint options... - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok || !strings.HasPrefix(post, "cgroup2 ") {
			continue
		}
		f := strings.Fields(pre)
		if len(f) < 5 {
			continue
		}
		return unescapeMount(f[4]), unescapeMount(f[3]), nil
	}
	return "", "", errors.New("no cgroup2 filesystem is mounted")
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// removeStale kills and removes the aura-<pid> directories of processes
// that are gone (aurad killed with SIGKILL leaves its groups, and whatever
// still runs in them, behind).
func removeStale(base string, self int, log *slog.Logger) {
	entries, err := os.ReadDir(base)
	if err != nil {
		return
	}
	for _, e := range entries {
		n, ok := strings.CutPrefix(e.Name(), cgroupDirPrefix)
		if !e.IsDir() || !ok {
			continue
		}
		pid, err := strconv.Atoi(n)
		if err != nil || pid == self || !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			continue
		}
		dir := filepath.Join(base, e.Name())
		if err := removeCgroup(dir, log); err != nil {
			log.Warn("process containment: cannot remove a dead process's cgroup", "cgroup", dir, "err", err)
		} else {
			log.Info("process containment: removed a dead process's cgroup and what ran in it", "cgroup", dir)
		}
	}
}

// populated reads cgroup.events: whether a process runs in dir or below.
func populated(dir string) (bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
	if err != nil {
		return false, err
	}
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("populated ")); ok {
			return string(bytes.TrimSpace(v)) != "0", nil
		}
	}
	return false, fmt.Errorf("%s/cgroup.events has no populated line", dir)
}

// signalCgroup sends sig to every process in dir and below; SIGKILL goes
// through cgroup.kill, which also catches processes forked meanwhile.
func signalCgroup(dir string, sig syscall.Signal) {
	if sig == syscall.SIGKILL {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0); err == nil {
			return
		}
	}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			return nil
		}
		for _, pid := range appendPIDs(nil, b) {
			_ = syscall.Kill(pid, sig)
		}
		return nil
	})
}

// removeCgroup kills everything in dir and below, waits for it to empty and
// removes the directories, deepest first.
func removeCgroup(dir string, log *slog.Logger) error {
	pop, err := populated(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil || pop {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("killing cgroup %s: %w", dir, err)
		}
		deadline := time.Now().Add(emptyTimeout)
		for {
			pop, err := populated(dir)
			if err != nil || !pop {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("cgroup %s still has processes %s after SIGKILL", dir, emptyTimeout)
			}
			time.Sleep(emptyPoll)
		}
	}
	// An exec step's cgroup has no children: one rmdir does.
	if err := os.Remove(dir); err == nil || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	slices.Reverse(dirs)
	var errs []error
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		log.Debug("process containment: removing cgroup", "cgroup", dir, "err", errors.Join(errs...))
		return errors.Join(errs...)
	}
	return nil
}
