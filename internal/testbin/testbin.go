// Package testbin serves tests that drive Aura for real: it builds Aura's
// commands once per test binary, into a temporary directory, with the race
// detector when the tests themselves run with it; it opens pseudo-terminals
// for them to write to; SyncBuffer catches logs written concurrently; and
// WaitFor waits for a condition with a deadline.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Build compiles the main package pkg (a path relative to the calling
// test's directory, e.g. "../cmd/aurad") into dir and returns the binary's
// path.
func Build(dir, pkg string) (string, error) {
	out := filepath.Join(dir, filepath.Base(pkg))
	args := []string{"build", "-o", out}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, pkg)...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building %s: %w", pkg, err)
	}
	return out, nil
}

// BuildModule compiles the main package at the root of moduleDir, a Go
// module of its own (an example that imports Aura through a replace
// directive), into dir and returns the binary's path. The race detector
// follows the tests', so the dependencies Aura's commands were built with
// come from the build cache.
func BuildModule(dir, moduleDir string) (string, error) {
	out, err := filepath.Abs(filepath.Join(dir, filepath.Base(moduleDir)))
	if err != nil {
		return "", err
	}
	args := []string{"build", "-o", out}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Dir = moduleDir
	// The module is built as a user's would be: on its own go.mod, not
	// as part of a workspace the developer may have.
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s: %w\n%s", moduleDir, err, msg)
	}
	return out, nil
}

// Main is a TestMain: it builds each package of bins (package path ->
// where to store the binary's path), runs the tests, fails them if
// goroutines leaked, and exits.
func Main(m *testing.M, bins map[string]*string) {
	dir, err := os.MkdirTemp("", "aura-testbin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for pkg, path := range bins {
		if *path, err = Build(dir, pkg); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := findLeaks(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// findLeaks is goleak.Find, asked again for up to ten seconds while it
// finds goroutines: an embedded etcd cluster's members keep streams to
// each other that wind down a few seconds after the members stop.
func findLeaks() error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := goleak.Find() // itself retries for about a second
		if err == nil || time.Now().After(deadline) {
			return err
		}
	}
}
