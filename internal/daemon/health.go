package daemon

import (
	"log/slog"
	"time"

	"github.com/aura-dev/aura/internal/server"
)

// storeHealthEvery is how often the store's state is carried to gRPC
// health: well inside a Kubernetes readiness probe's period.
const storeHealthEvery = time.Second

// storeHealth keeps grpc.health.v1 in step with the store: NOT_SERVING
// while it refuses writes (disk full, database file deleted or replaced, a
// failed sync), SERVING again once it accepts them. Load balancers and
// Kubernetes readiness probes ask gRPC health, not /readyz, and a daemon
// that refuses every submission must leave their rotation. Only the store
// counts here: plans and CPU workers are /readyz's business, and the
// process stays alive (a restart would not free the disk).
type storeHealth struct {
	// Immutable after construction.
	store  interface{ Writable() error }
	server *server.Server
	log    *slog.Logger
	every  time.Duration

	stop chan struct{} // closed by shutdown
	done chan struct{} // closed when the loop has returned

	// Accessed only by the loop goroutine.
	refusing error // the last reason reported, nil while writable
}

// startStoreHealth starts following st, or returns nil when st cannot tell
// (the in-memory store always accepts writes).
func startStoreHealth(st any, srv *server.Server, log *slog.Logger, every time.Duration) *storeHealth {
	w, ok := st.(interface{ Writable() error })
	if !ok {
		return nil
	}
	h := &storeHealth{store: w, server: srv, log: log, every: every, stop: make(chan struct{}), done: make(chan struct{})}
	go h.loop()
	return h
}

func (h *storeHealth) loop() {
	defer close(h.done)
	t := time.NewTicker(h.every)
	defer t.Stop()
	for {
		h.check()
		select {
		case <-t.C:
		case <-h.stop:
			return
		}
	}
}

// check reports a change of the store's state to gRPC health, and logs it.
func (h *storeHealth) check() {
	err := h.store.Writable()
	switch {
	case err != nil && h.refusing == nil:
		h.server.SetServing(false)
		h.log.Warn("gRPC health: NOT_SERVING while the store refuses writes", "reason", err)
	case err == nil && h.refusing != nil:
		h.server.SetServing(true)
		h.log.Info("gRPC health: SERVING again, the store accepts writes")
	}
	h.refusing = err
}

// shutdown stops following the store; safe on a nil storeHealth.
func (h *storeHealth) shutdown() {
	if h == nil {
		return
	}
	close(h.stop)
	<-h.done
}
