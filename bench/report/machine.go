package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
)

// Machine describes where the figures were measured.
type Machine struct {
	CPU       string // model name
	Cores     int
	MemBytes  int64
	Kernel    string
	GoVersion string
	LoadAvg   string // the first three fields of /proc/loadavg, at the start
}

// readMachine reads the machine's description from /proc and the go
// command; a part it cannot read is "unknown".
func readMachine(ctx context.Context, root string) Machine {
	m := Machine{CPU: "unknown CPU", Cores: runtime.NumCPU(), Kernel: "unknown", GoVersion: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if model, cores := parseCPUInfo(string(b)); model != "" {
			m.CPU, m.Cores = model, cores
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if n, err := parseMemTotal(string(b)); err == nil {
			m.MemBytes = n
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.LoadAvg = loadAverage()
	if v, err := output(ctx, root, "go", "env", "GOVERSION"); err == nil {
		m.GoVersion = v
	}
	return m
}

// loadAverage returns the 1, 5 and 15 minute load averages.
func loadAverage() string {
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			return strings.Join(f[:3], ", ")
		}
	}
	return "unknown"
}

// parseCPUInfo returns the first "model name" of /proc/cpuinfo and the
// number of processors listed.
func parseCPUInfo(s string) (model string, cores int) {
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(key) {
		case "processor":
			cores++
		case "model name":
			if model == "" {
				model = strings.Join(strings.Fields(val), " ")
			}
		}
	}
	return model, cores
}

// parseMemTotal returns MemTotal of /proc/meminfo in bytes.
func parseMemTotal(s string) (int64, error) {
	for _, line := range strings.Split(s, "\n") {
		rest, ok := strings.CutPrefix(line, "MemTotal:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("meminfo: unexpected line %q", line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("meminfo: %w", err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("meminfo: no MemTotal line")
}

// gitCommit describes the checked-out commit, and says so when the
// working tree differs from it (the figures then measure more than the
// commit). It only reads: --no-optional-locks keeps git status from
// refreshing the index.
func gitCommit(ctx context.Context, root string) string {
	hash, err := output(ctx, root, "git", "rev-parse", "--short=12", "HEAD")
	if err != nil {
		return "unknown (not a git checkout)"
	}
	subject, _ := output(ctx, root, "git", "log", "-1", "--format=%s")
	desc := fmt.Sprintf("%s (%s)", hash, truncate(subject, 80))
	if st, err := output(ctx, root, "git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"); err == nil && st != "" {
		desc += ", with uncommitted changes in the working tree"
	}
	return desc
}

func truncate(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// output runs a command in dir and returns its trimmed stdout.
func output(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	b, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(b)), nil
}
