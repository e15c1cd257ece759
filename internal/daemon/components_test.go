package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aura-dev/aura/internal/store"
)

// stopRecorder is a slog handler that keeps the names in "component
// stopped" records, in order: the order Shutdown stopped the parts in.
type stopRecorder struct {
	mu      sync.Mutex
	stopped []string
}

func (r *stopRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *stopRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *stopRecorder) WithGroup(string) slog.Handler            { return r }
func (r *stopRecorder) Handle(_ context.Context, rec slog.Record) error {
	if rec.Message != "component stopped" {
		return nil
	}
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "component" {
			r.mu.Lock()
			r.stopped = append(r.stopped, a.Value.String())
			r.mu.Unlock()
		}
		return true
	})
	return nil
}

func (r *stopRecorder) names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.stopped)
}

// Parts stop in the reverse order they started, each once.
func TestComponentsShutDownInReverseOrderOfStart(t *testing.T) {
	var order []string
	c := components{log: slog.New(slog.DiscardHandler)}
	for _, name := range []string{"store", "hub", "pool", "tasks"} {
		c.add(name, func(context.Context) { order = append(order, name) })
	}
	c.shutdown(context.Background())
	if want := []string{"tasks", "pool", "hub", "store"}; !slices.Equal(order, want) {
		t.Fatalf("stopped %v; want %v", order, want)
	}
	c.shutdown(context.Background())
	if len(order) != 4 {
		t.Fatalf("a second shutdown stopped parts again: %v", order)
	}
}

// New starts the daemon's parts in an order where each finds what it
// uses already running (the store before the hub and the pruner, the
// lanes before the tasks), and Shutdown stops them in exactly the reverse
// order: the task drain first, the store after everything that writes to
// it.
func TestDaemonStopsItsPartsInReverseOrderOfStart(t *testing.T) {
	rec := &stopRecorder{}
	d, err := New(context.Background(), Config{
		PlansDir: "../../examples/plans", DataDir: t.TempDir(), CPUWorkers: -1, Resources: exampleResources(t),
		AdminListen: "127.0.0.1:0", ShutdownGrace: time.Second, Logger: slog.New(rec),
	})
	if err != nil {
		t.Fatal(err)
	}
	started := d.parts.names()
	want := []string{"actions", "store", "last states", "hub", "pruner", "admin", "action set", "io workers", "schedule state", "grpc", "tasks", "schedules", "interrupts", "store health"}
	if !slices.Equal(started, want) {
		t.Fatalf("started %v; want %v", started, want)
	}
	admin := "http://" + d.admin.listening + "/readyz"
	if resp, err := http.Get(admin); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz after New: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	d.Shutdown(context.Background())
	if resp, err := http.Get(admin); err == nil {
		resp.Body.Close()
		t.Fatal("the admin endpoints still answer after Shutdown")
	}
	slices.Reverse(started)
	if got := rec.names(); !slices.Equal(got, started) {
		t.Fatalf("stopped %v; want the reverse of the start order, %v", got, started)
	}
}

// A New that fails part-way stops what it had started: the data
// directory's lock is released (another start succeeds at once) and the
// admin port is closed.
func TestFailedNewStopsWhatItStarted(t *testing.T) {
	dir := t.TempDir()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	rec := &stopRecorder{}
	_, err = New(context.Background(), Config{
		PlansDir: "../../examples/plans", DataDir: dir, CPUWorkers: -1, Resources: exampleResources(t),
		AdminListen: busy.Addr().String(), Logger: slog.New(rec),
	})
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "--admin-listen") {
		t.Fatalf("New with a busy admin port: %v; want --admin-listen: address in use", err)
	}
	if got, want := rec.names(), []string{"pruner", "hub", "last states", "store", "actions"}; !slices.Equal(got, want) {
		t.Fatalf("stopped %v after the failed start; want %v", got, want)
	}
	st, err := store.Open(context.Background(), dir, store.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("the data directory is still held after a failed start: %v", err)
	}
	st.Close()

}
