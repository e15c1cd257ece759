package ui

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// hooksEvery is how often an open Hooks page's stream looks at the hub's
// followers, sending what changed: who connected or left, and their lag.
const hooksEvery = time.Second

// hooksData is what the Hooks page shows this session: the counts and lag
// to anyone who may read, who follows and intercepts only to an admin of
// every plan (no RPC shows it to a read or plan-limited token either).
func (s *Server) hooksData(q *request) (HookStats, error) {
	// GetStats first: it is what checks that this session may read.
	if _, err := s.opts.Core.GetStats(q.ctx); err != nil {
		return HookStats{}, err
	}
	var hs HookStats
	if s.opts.Hooks != nil {
		hs = s.opts.Hooks.HookStats()
	}
	if id := q.sess.identity; s.opts.AuthOn && (!id.Can("admin") || id.Scoped) {
		hs.Followers, hs.Intercepting, hs.Hidden = nil, nil, true
	}
	return hs, nil
}

func (s *Server) hooksPage(w http.ResponseWriter, r *http.Request, q *request) {
	hs, err := s.hooksData(q)
	if err != nil {
		s.fail(w, r, q, err)
		return
	}
	s.render(w, r, q, http.StatusOK, "hooks", hs)
}

// hooksJSON is the Hooks page's figures as its script shows them.
func hooksJSON(hs HookStats) ([]byte, error) {
	type interceptor struct {
		HookInterceptor
		Timeout string
	}
	out := struct {
		HookStats
		Intercepting []interceptor
	}{HookStats: hs, Intercepting: []interceptor{}}
	if out.Followers == nil {
		out.Followers = []HookFollower{}
	}
	for _, ic := range hs.Intercepting {
		out.Intercepting = append(out.Intercepting, interceptor{ic, ic.Timeout.String()})
	}
	return json.Marshal(out)
}

// hooksAPI answers the Hooks page's figures once: how a page without an
// event stream polls them.
func (s *Server) hooksAPI(w http.ResponseWriter, _ *http.Request, q *request) {
	hs, err := s.hooksData(q)
	if err != nil {
		code, msg := httpStatus(err)
		http.Error(w, msg, code)
		return
	}
	b, err := hooksJSON(hs)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// hooksEvents is the Hooks page's event stream: the page's figures as a
// "hooks" event now, and again whenever they change, looked at every
// hooksEvery, so a subscriber that connects or leaves, and lag that grows
// or shrinks, show without a reload. The session's right to read is asked
// again each time (a revoked token ends the stream).
func (s *Server) hooksEvents(w http.ResponseWriter, r *http.Request, q *request) {
	hs, err := s.hooksData(q)
	if err != nil {
		code, msg := httpStatus(err)
		http.Error(w, msg, code)
		return
	}
	write, ok := startStream(w)
	if !ok {
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(s.life, cancel)()
	t := time.NewTicker(hooksEvery)
	defer t.Stop()
	var sent []byte
	idle := time.Now()
	for {
		b, err := hooksJSON(hs)
		if err != nil {
			return
		}
		if !bytes.Equal(b, sent) {
			if write("event: hooks\ndata: "+string(b)+"\n\n") != nil {
				return
			}
			sent, idle = b, time.Now()
		} else if time.Since(idle) >= heartbeat {
			if write(": keep-alive\n\n") != nil {
				return
			}
			idle = time.Now()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if hs, err = s.hooksData(q); err != nil {
			return
		}
	}
}
