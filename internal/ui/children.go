package ui

import (
	"context"
	"net/http"
)

// follower is what an event stream or poll asks for: ?task= (one task's
// events), ?parent= (the events of one task's child tasks: its state
// transitions and interrupt handlers, for the task page's list of them),
// or neither (every task's events).
type follower struct {
	s            *Server
	q            *request
	task, parent string
	// seen holds the children the session was found to see: a child is
	// asked about once per stream, not once per event.
	seen map[string]bool
}

// newFollower reads what r asks to follow and asks Core whether the
// session may (as the Stream RPC would); when not, it answers w and
// reports false.
func (s *Server) newFollower(w http.ResponseWriter, r *http.Request, q *request) (*follower, bool) {
	f := &follower{s: s, q: q, task: r.URL.Query().Get("task"), parent: r.URL.Query().Get("parent"), seen: map[string]bool{}}
	if f.task != "" && f.parent != "" {
		http.Error(w, "task and parent: ask for one task's events or for its children's, not both", http.StatusBadRequest)
		return nil, false
	}
	if err := s.mayFollow(q, f.task+f.parent); err != nil {
		code, msg := httpStatus(err)
		http.Error(w, msg, code)
		return nil, false
	}
	return f, true
}

// follow sends each event f asks for after *after as the stream's JSON,
// as Events.Follow does.
func (f *follower) follow(ctx context.Context, after *uint64, send func(seq uint64, json []byte) error) error {
	if f.parent == "" {
		return f.s.opts.Events.Follow(ctx, after, f.task, func(seq uint64, data []byte) error {
			b, err := f.s.eventJSON.get(seq, data)
			if err != nil {
				return err
			}
			return send(seq, b)
		})
	}
	// A child's events carry its snapshot, and with it its parent: the
	// log of every task is read, and only those kept.
	return f.s.opts.Events.Follow(ctx, after, "", func(seq uint64, data []byte) error {
		e, err := f.s.eventJSON.entry(seq, data)
		if err != nil {
			return err
		}
		if e.parent != f.parent || !f.maySee(e.task) {
			return nil
		}
		return send(seq, e.json)
	})
}

// maySee asks Core whether the session may see child task id: a child
// runs for its parent, but the stream still shows only what GetTask
// would. A refusal is not remembered, so a failed call does not hide the
// child for good.
func (f *follower) maySee(id string) bool {
	if f.seen[id] {
		return true
	}
	if _, err := f.s.opts.Core.GetTask(f.q.ctx, id); err != nil {
		return false
	}
	f.seen[id] = true
	return true
}
