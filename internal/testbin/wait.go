package testbin

import (
	"testing"
	"time"
)

// WaitFor polls cond until it holds, and fails the test naming what it
// waited for when timeout passes first. Tests wait on a condition instead
// of sleeping for a guessed time, so a loaded machine makes them slower,
// never flaky. Call it from the test's own goroutine (it may call
// t.Fatalf).
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
