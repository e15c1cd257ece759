package ui

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// someTasksCore is storeCore that finds the tasks named in see.
type someTasksCore struct {
	storeCore
	see []string
}

func (c *someTasksCore) GetTask(_ context.Context, id string) (*aurav1.Task, error) {
	if !slices.Contains(c.see, id) {
		return nil, &CallError{Code: "NotFound", Message: "no such task"}
	}
	return &aurav1.Task{Id: id}, nil
}

// The task page's list of child tasks follows ?parent=: the events whose
// task snapshot names the task as its parent, of children the session may
// see, and nothing of other tasks; a parent the session may not see is the
// API's refusal.
func TestEventsOfATasksChildren(t *testing.T) {
	snap := func(id, parent, status string) *aurav1.Task {
		return &aurav1.Task{Id: id, ParentId: parent, Status: aurav1.TaskStatus(aurav1.TaskStatus_value[status])}
	}
	log := logEvents{events: []*aurav1.TaskEvent{
		{Sequence: 1, TaskId: "p", Type: "task.started", Task: snap("p", "", "TASK_STATUS_RUNNING")},
		{Sequence: 2, TaskId: "c1", Type: "task.queued", Task: snap("c1", "p", "TASK_STATUS_QUEUED")},
		{Sequence: 3, TaskId: "c1", Type: "task.log", Message: "no snapshot"},
		{Sequence: 4, TaskId: "o", Type: "task.queued", Task: snap("o", "x", "TASK_STATUS_QUEUED")},
		{Sequence: 5, TaskId: "hidden", Type: "task.queued", Task: snap("hidden", "p", "TASK_STATUS_QUEUED")},
		{Sequence: 6, TaskId: "c1", Type: "task.finished", Task: snap("c1", "p", "TASK_STATUS_SUCCEEDED")},
	}}
	s, err := NewServer(Options{Core: &someTasksCore{see: []string{"p", "c1", "o"}}, Events: log,
		Authenticate: func(string) (Identity, bool) { return Identity{Name: "anonymous"}, true }})
	if err != nil {
		t.Fatal(err)
	}
	ask := func(query string) (int, []string) {
		t.Helper()
		w := httptest.NewRecorder()
		s.ServeHTTP(w, httptest.NewRequest("GET", "/api/events?"+query, nil))
		if w.Code != http.StatusOK {
			return w.Code, nil
		}
		var a struct {
			Events []struct {
				Sequence, TaskID, Type string
				Task                   struct{ Status string }
			}
		}
		if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil {
			t.Fatalf("%s: %v\n%s", query, err, w.Body)
		}
		var out []string
		for _, e := range a.Events {
			out = append(out, e.Sequence+" "+e.TaskID+" "+e.Task.Status)
		}
		return w.Code, out
	}
	want := []string{"2 c1 TASK_STATUS_QUEUED", "6 c1 TASK_STATUS_SUCCEEDED"}
	if code, got := ask("parent=p&after=0"); code != http.StatusOK || !slices.Equal(got, want) {
		t.Errorf("children of p: %d %q, want %q", code, got, want)
	}
	if code, got := ask("parent=p&after=2"); code != http.StatusOK || !slices.Equal(got, want[1:]) {
		t.Errorf("children of p after 2: %d %q, want %q", code, got, want[1:])
	}
	if code, _ := ask("parent=x&after=0"); code != http.StatusNotFound {
		t.Errorf("children of a task the session may not see: %d, want the API's refusal (404)", code)
	}
	if code, _ := ask("parent=p&task=p&after=0"); code != http.StatusBadRequest {
		t.Errorf("parent and task together: %d, want 400", code)
	}
}
