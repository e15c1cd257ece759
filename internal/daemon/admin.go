package daemon

import (
	"errors"
	"fmt"
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

// ServeAdmin serves AdminHandler on addr in the background and returns the
// server (Close it at the end) and the address it listens on.
func (d *Daemon) ServeAdmin(addr string) (*http.Server, net.Addr, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("--admin-listen: %w", err)
	}
	srv := &http.Server{Handler: d.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("admin server stopped", "err", err)
		}
	}()
	return srv, lis.Addr(), nil
}
