package ui

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"google.golang.org/protobuf/proto"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// logEvents is an event log of fixed events: Follow replays those after
// *after (of one task, when asked), then waits for ever, as the hub does
// once a follower has caught up.
type logEvents struct {
	events []*aurav1.TaskEvent // Sequence 1, 2, ...
	pruned uint64              // the log holds nothing at or before this
}

func (l logEvents) Follow(ctx context.Context, after *uint64, taskID string, send func(uint64, []byte) error) error {
	if after != nil && *after < l.pruned {
		return ErrPruned
	}
	for _, ev := range l.events {
		if (after != nil && ev.Sequence <= *after) || (taskID != "" && ev.TaskId != taskID) {
			continue
		}
		b, _ := proto.Marshal(ev)
		if err := send(ev.Sequence, b); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return ctx.Err()
}

func (l logEvents) Last() uint64 { return uint64(len(l.events)) }

// oneTaskCore is storeCore that finds one task.
type oneTaskCore struct {
	storeCore
	id string
}

func (c *oneTaskCore) GetTask(_ context.Context, id string) (*aurav1.Task, error) {
	if id != c.id {
		return nil, &CallError{Code: "NotFound", Message: "no such task"}
	}
	return &aurav1.Task{Id: id}, nil
}

type pollAnswer struct {
	Events []struct {
		Sequence string `json:"sequence"`
		TaskID   string `json:"taskId"`
	} `json:"events"`
	Last  uint64 `json:"last"`
	More  bool   `json:"more"`
	Reset bool   `json:"reset"`
}

// A page that cannot hold an event stream open polls /api/events: it gets
// the events after the sequence it has, and the sequence to ask after
// next, so polling misses nothing either.
func TestPollingAnswersTheEventsAfterASequence(t *testing.T) {
	log := logEvents{pruned: 1}
	for i := range 7 {
		task := []string{"a", "b"}[i%2]
		log.events = append(log.events, &aurav1.TaskEvent{Sequence: uint64(i + 1), TaskId: task, Type: "task.log"})
	}
	s, err := NewServer(Options{Core: &oneTaskCore{id: "b"}, Events: log, Authenticate: func(string) (Identity, bool) { return Identity{Name: "anonymous"}, true }})
	if err != nil {
		t.Fatal(err)
	}
	ask := func(query string) (int, pollAnswer) {
		t.Helper()
		w := httptest.NewRecorder()
		s.ServeHTTP(w, httptest.NewRequest("GET", "/api/events?"+query, nil))
		var a pollAnswer
		if w.Code == http.StatusOK {
			if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil {
				t.Fatalf("%s: %v\n%s", query, err, w.Body)
			}
		}
		return w.Code, a
	}
	seqs := func(a pollAnswer) (out []string) {
		for _, e := range a.Events {
			out = append(out, e.Sequence+e.TaskID)
		}
		return out
	}
	if code, a := ask("after=4"); code != 200 || len(a.Events) != 3 || a.Last != 7 || a.More || a.Reset {
		t.Errorf("after=4: %d %+v, want events 5, 6, 7 and last 7", code, seqs(a))
	}
	if code, a := ask("after=7"); code != 200 || len(a.Events) != 0 || a.Last != 7 {
		t.Errorf("after=7 (nothing new): %d %+v last %d, want no events and last 7", code, seqs(a), a.Last)
	}
	// One task's events: the answer goes when no more come, and the next
	// poll asks after the last one it carried.
	if code, a := ask("task=b&after=1"); code != 200 || len(a.Events) != 3 || a.Events[0].Sequence != "2" || a.Last != 6 {
		t.Errorf("task b after 1: %d %+v last %d, want 2b 4b 6b and last 6", code, seqs(a), a.Last)
	}
	if code, _ := ask("task=a&after=1"); code != http.StatusNotFound {
		t.Errorf("a task the session may not see: %d, want the API's refusal (404)", code)
	}
	if _, a := ask("after=0"); !a.Reset || len(a.Events) != 0 {
		t.Errorf("after a pruned sequence: %+v, want reset", a)
	}
	if code, _ := ask("after=x"); code != http.StatusBadRequest {
		t.Errorf("after=x: %d, want 400", code)
	}
}
