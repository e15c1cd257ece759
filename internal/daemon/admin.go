package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// AdminHandler serves /metrics, /healthz (the process is alive), /readyz
// (plans loaded, store writable: disk not full, database file still there,
// no failed sync; CPU workers up, not draining) and
// /debug/pprof.
func (d *Daemon) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(d.Metrics.Registry, promhttp.HandlerOpts{Registry: d.Metrics.Registry}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := d.Ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// Ready says why the daemon should not get traffic, or nil.
func (d *Daemon) Ready() error {
	if !d.up.Load() {
		return errors.New("starting")
	}
	if d.Manager.Draining() {
		return errors.New("draining")
	}
	if st, ok := d.Store.(interface{ Writable() error }); ok {
		if err := st.Writable(); err != nil {
			return fmt.Errorf("the store refuses writes: %w", err)
		}
	}
	if len(d.Manager.Plans().Plans()) == 0 {
		return errors.New("no plans loaded")
	}
	if d.cpu != nil {
		if st := d.cpu.Stats(); st.Live == 0 {
			return errors.New("no CPU worker is up")
		}
	}
	return nil
}

// adminServerParams configure an adminServer.
type adminServerParams struct {
	Addr    string // host:port (--admin-listen)
	Handler http.Handler
	Logger  *slog.Logger
}

// adminServer serves the admin endpoints over HTTP in the background.
type adminServer struct {
	// Immutable after construction.
	addr string
	log  *slog.Logger
	srv  *http.Server

	listening string        // the address it listens on; set by start
	served    chan struct{} // closed when the serving goroutine has returned
}

func newAdminServer(p adminServerParams) *adminServer {
	return &adminServer{addr: p.Addr, log: p.Logger, served: make(chan struct{}),
		srv: &http.Server{Handler: p.Handler, ReadHeaderTimeout: 10 * time.Second}}
}

// start listens and serves until shutdown.
func (a *adminServer) start() error {
	lis, err := net.Listen("tcp", a.addr)
	if err != nil {
		return fmt.Errorf("--admin-listen: %w", err)
	}
	go func() {
		defer close(a.served)
		if err := a.srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("admin server stopped", "err", err)
		}
	}()
	a.listening = lis.Addr().String()
	a.log.Info("admin endpoints serving", "listen", a.listening)
	return nil
}

// shutdown closes the listener and every connection, and waits for the
// serving goroutine.
func (a *adminServer) shutdown() {
	if err := a.srv.Close(); err != nil {
		a.log.Warn("closing the admin endpoints", "err", err)
	}
	<-a.served
}
