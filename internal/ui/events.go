package ui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// heartbeat keeps an idle event stream's connection alive through
// proxies, and lets the server notice a browser that went away.
const heartbeat = 15 * time.Second

// events is the Server-Sent Events stream of task events: every task's
// (the list and Overview pages), one task's from its first event (a
// task page, ?task=ID), or those of one task's child tasks (the task
// page's list of them, ?parent=ID). Each event's id is its sequence, so a
// browser that reconnects sends Last-Event-ID and gets exactly what it
// missed. Reading needs the read role, and a task the session may see:
// the stream first asks Core, which applies the API's rules.
func (s *Server) events(w http.ResponseWriter, r *http.Request, q *request) {
	f, ok := s.newFollower(w, r, q)
	if !ok {
		return
	}
	var after *uint64
	if last := r.Header.Get("Last-Event-ID"); last != "" {
		n, err := strconv.ParseUint(last, 10, 64)
		if err != nil {
			http.Error(w, "Last-Event-ID: want an event sequence number", http.StatusBadRequest)
			return
		}
		after = &n
	} else if a := r.URL.Query().Get("after"); a != "" {
		// The sequence the page was rendered at: the first connection
		// picks up every change since, so nothing falls between the
		// page and its stream.
		n, err := strconv.ParseUint(a, 10, 64)
		if err != nil {
			http.Error(w, "after: want an event sequence number", http.StatusBadRequest)
			return
		}
		after = &n
	} else if f.task != "" {
		zero := uint64(0)
		after = &zero
	}
	write, ok := startStream(w)
	if !ok {
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(s.life, cancel)()
	var beats sync.WaitGroup
	beats.Add(1)
	go func() {
		defer beats.Done()
		t := time.NewTicker(heartbeat)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if write(": keep-alive\n\n") != nil {
					cancel()
					return
				}
			}
		}
	}()
	// The heartbeat writes to w: it must be gone before the handler returns.
	defer beats.Wait()
	defer cancel()
	err := f.follow(ctx, after, func(seq uint64, b []byte) error {
		return write(fmt.Sprintf("id: %d\nevent: task\ndata: %s\n\n", seq, b))
	})
	if errors.Is(err, ErrPruned) {
		// The page's view is older than the log: it must load afresh.
		_ = write("event: reset\ndata: {}\n\n")
	}
}

// mayFollow asks Core what the API asks of a Stream call: a task the
// session may see, or, for every task's events, what ListTasks over every
// plan asks (the read role, no plan allowlist).
func (s *Server) mayFollow(q *request, taskID string) error {
	if taskID != "" {
		_, err := s.opts.Core.GetTask(q.ctx, taskID)
		return err
	}
	_, err := s.opts.Core.ListTasks(q.ctx, &aurav1.ListTasksRequest{PageSize: 1})
	return err
}

// startStream answers w as a Server-Sent Events stream. write sends text
// whole and flushed; it may be called from more than one goroutine.
func startStream(w http.ResponseWriter) (write func(text string) error, ok bool) {
	if _, ok := w.(http.Flusher); !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return nil, false
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	var mu sync.Mutex // keeps writes whole and in order
	write = func(text string) error {
		mu.Lock()
		defer mu.Unlock()
		_ = rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.WriteString(w, text); err != nil {
			return err
		}
		return rc.Flush()
	}
	// The browser waits this long before reconnecting.
	return write, write("retry: 2000\n\n") == nil
}

// Polling, for a page that cannot hold an event stream open (no
// EventSource, or something between refuses or holds the stream back).
const (
	pollMax   = 500                    // events one answer carries at most
	pollWait  = 3 * time.Second        // the longest an answer waits for events
	pollQuiet = 100 * time.Millisecond // after an event, an answer goes once nothing came for this long
)

// pollEvents is the event stream as one JSON answer, for a page that
// polls: the events after ?after= (of ?task= only, or of the children of
// ?parent=, when set), as the stream sends them, and the sequence to ask
// after next time. It asks what the stream asks of the session. "more"
// says to ask again at once; "reset" that the log no longer holds what
// follows after: the page must load afresh.
func (s *Server) pollEvents(w http.ResponseWriter, r *http.Request, q *request) {
	after, err := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
	if err != nil {
		http.Error(w, "after: want the sequence of the last event the page has", http.StatusBadRequest)
		return
	}
	f, ok := s.newFollower(w, r, q)
	if !ok {
		return
	}
	out := struct {
		Events []json.RawMessage `json:"events"`
		Last   uint64            `json:"last"`
		More   bool              `json:"more"`
		Reset  bool              `json:"reset"`
	}{Events: []json.RawMessage{}, Last: after}
	// Everything committed by now is answered; a follower of one task,
	// or one whose last events are hook events the stream leaves out, is
	// not sent the last sequence, so an answer also goes pollQuiet after
	// an event with no other, or after pollWait in all. Which of them
	// ends an answer decides only how soon an event shows, never whether:
	// the next poll asks after the last event this one carried.
	if target := s.opts.Events.Last(); after < target {
		ctx, cancel := context.WithTimeout(r.Context(), pollWait)
		defer cancel()
		quiet := time.AfterFunc(pollWait, cancel)
		defer quiet.Stop()
		errFull := errors.New("answer full")
		err := f.follow(ctx, &after, func(seq uint64, b []byte) error {
			out.Events, out.Last = append(out.Events, b), seq
			if len(out.Events) >= pollMax {
				out.More = true
				return errFull
			}
			if seq >= target {
				return errFull
			}
			quiet.Reset(pollQuiet)
			return nil
		})
		out.Reset = errors.Is(err, ErrPruned)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// jsonCache holds the recent events as JSON: every open page follows the
// same events, so each is decoded and encoded once, not once per page.
// With it, the task the event is of and that task's parent, for the
// streams of a task's children.
type jsonCache struct {
	mu    sync.Mutex // guards slots
	slots [4096]cachedEvent
}

type cachedEvent struct {
	seq    uint64
	json   []byte
	task   string // the task the event is of
	parent string // the parent_id of the event's task snapshot, if it has one
}

func (c *jsonCache) get(seq uint64, data []byte) ([]byte, error) {
	e, err := c.entry(seq, data)
	return e.json, err
}

func (c *jsonCache) entry(seq uint64, data []byte) (cachedEvent, error) {
	slot := &c.slots[seq%uint64(len(c.slots))]
	c.mu.Lock()
	if slot.seq == seq && slot.json != nil {
		e := *slot
		c.mu.Unlock()
		return e, nil
	}
	c.mu.Unlock()
	ev, err := decodeEvent(seq, data)
	if err != nil {
		return cachedEvent{}, err
	}
	b, err := protojson.Marshal(ev)
	if err != nil {
		return cachedEvent{}, err
	}
	e := cachedEvent{seq: seq, json: b, task: ev.GetTaskId(), parent: ev.GetTask().GetParentId()}
	c.mu.Lock()
	*slot = e
	c.mu.Unlock()
	return e, nil
}

// decodeEvent reads an event as the log holds it.
func decodeEvent(seq uint64, data []byte) (*aurav1.TaskEvent, error) {
	ev := &aurav1.TaskEvent{}
	if err := proto.Unmarshal(data, ev); err != nil {
		return nil, fmt.Errorf("decoding event %d: %w", seq, err)
	}
	ev.Sequence = seq
	return ev, nil
}
