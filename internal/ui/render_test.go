package ui

import (
	"fmt"
	"io"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// BenchmarkRenderTaskList renders a task list page of 50 rows: the UI's
// own cost on top of the ListTasks call behind it.
func BenchmarkRenderTaskList(b *testing.B) {
	s, err := NewServer(Options{Authenticate: func(string) (Identity, bool) { return Identity{}, true }})
	if err != nil {
		b.Fatal(err)
	}
	in, _ := structpb.NewStruct(map[string]any{"name": "world"})
	d := &taskListData{Statuses: statuses, Plans: []string{"demo", "e2e"}}
	for i := range 50 {
		d.Rows = append(d.Rows, rowOf(&aurav1.Task{Id: fmt.Sprintf("01a22ccd-7011-70ce-a049-62d3520%05d", i), Task: "demo/hello", Inputs: in,
			Status: aurav1.TaskStatus_TASK_STATUS_SUCCEEDED, CreatedAt: timestamppb.New(time.Now()), FinishedAt: timestamppb.New(time.Now()),
			ResourceTags: []string{"device:a"}, Labels: map[string]string{"team": "qa"}}))
	}
	r := httptest.NewRequest("GET", "/tasks", nil)
	for b.Loop() {
		s.render(discard{httptest.NewRecorder()}, r, nil, 200, "tasks", d)
	}
}

// discard is a ResponseWriter that keeps headers and drops the body.
type discard struct{ *httptest.ResponseRecorder }

func (discard) Write(p []byte) (int, error) { return io.Discard.Write(p) }
