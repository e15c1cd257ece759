package store

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		// Re-executed by TestKill9KeepsAcknowledgedTasks: be the victim.
		os.Exit(crashChild(dir))
	}
	goleak.VerifyTestMain(m)
}

// fakeClock is a settable clock for Options.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type backend struct {
	name string
	open func(t testing.TB, opts Options) DB
}

// backends lists both implementations so behaviour tests run against each.
func backends() []backend {
	return []backend{
		{"sqlite", func(t testing.TB, opts Options) DB {
			// Behaviour tests do not need fsync; the durability tests use SyncAlways.
			opts.Sync = SyncOff
			return openSQLite(t, t.TempDir(), opts)
		}},
		{"memory", func(t testing.TB, opts Options) DB {
			m := NewMemory(opts)
			t.Cleanup(func() { _ = m.Close() })
			return m
		}},
	}
}

// alwaysBackend is SQLite with --sync always: commits answered by the
// syncer after the WAL is fsynced. Tests of ordering and answering run
// against it too.
func alwaysBackend() backend {
	return backend{"sqlite-always", func(t testing.TB, opts Options) DB {
		opts.Sync = SyncAlways
		return openSQLite(t, t.TempDir(), opts)
	}}
}

func openSQLite(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger
	}
	s, err := Open(context.Background(), dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

var quietLogger = slog.New(slog.DiscardHandler)
