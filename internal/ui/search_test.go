package ui

import (
	"context"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// storeCore answers ListTasks from a slice, newest first, with the offset
// as its page token, as the store's index pages; the other calls find
// nothing.
type storeCore struct {
	Core  // nil: a call the pages should not make panics the test
	tasks []*aurav1.Task
	calls int
}

func (c *storeCore) GetTask(context.Context, string) (*aurav1.Task, error) {
	return nil, &CallError{Code: "NotFound", Message: "no such task"}
}

func (c *storeCore) ListPlans(context.Context) ([]*aurav1.Plan, error) { return nil, nil }

func (c *storeCore) ListTasks(_ context.Context, req *aurav1.ListTasksRequest) (*aurav1.ListTasksResponse, error) {
	c.calls++
	from, _ := strconv.Atoi(req.GetPageToken())
	to := min(len(c.tasks), from+int(req.GetPageSize()))
	resp := &aurav1.ListTasksResponse{Tasks: c.tasks[from:to]}
	if to < len(c.tasks) {
		resp.NextPageToken = strconv.Itoa(to)
	}
	return resp, nil
}

type noEvents struct{}

func (noEvents) Follow(ctx context.Context, _ *uint64, _ string, _ func(uint64, []byte) error) error {
	<-ctx.Done()
	return ctx.Err()
}
func (noEvents) Last() uint64 { return 0 }

// A search by input value reads a bounded slice of the index per request
// and offers "Search older tasks" from where it stopped: a match older
// than the first slice is reached by following that link, and the page
// says how far back it has looked.
func TestSearchContinuesPastTheScanBound(t *testing.T) {
	const n, bound, needle = 1000, 100, 750 // the match is in the eighth slice
	core := &storeCore{}
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		v := "hay"
		if i == needle {
			v = "the-needle"
		}
		in, _ := structpb.NewStruct(map[string]any{"name": v})
		core.tasks = append(core.tasks, &aurav1.Task{Id: fmt.Sprintf("task-%04d", i), Task: "demo/hello", Inputs: in,
			Status: aurav1.TaskStatus_TASK_STATUS_SUCCEEDED, CreatedAt: timestamppb.New(start.Add(-time.Duration(i) * time.Minute))})
	}
	s, err := NewServer(Options{Core: core, Events: noEvents{}, SearchScan: bound,
		Authenticate: func(string) (Identity, bool) { return Identity{Name: "anonymous"}, true }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	older := regexp.MustCompile(`<a rel="next" id="older" href="([^"]+)">Search older tasks</a>`)
	note := regexp.MustCompile(`<p class="note" id="searched">([^<]+)</p>`)

	next, requests, foundAt := "/tasks?q=needle", 0, 0
	var last string
	for next != "" {
		requests++
		if requests > n/bound+1 {
			t.Fatalf("still offering older tasks after %d requests", requests)
		}
		resp, err := client.Get(srv.URL + next)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		page := string(body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d\n%s", next, resp.StatusCode, page)
		}
		if strings.Contains(page, `data-id="task-0750"`) {
			foundAt = requests
		}
		if m := note.FindStringSubmatch(page); m != nil {
			last = html.UnescapeString(m[1])
		} else {
			t.Fatalf("GET %s: no note of what was searched\n%s", next, page)
		}
		if requests == 1 && !strings.Contains(last, "Searched 100 tasks") || !strings.Contains(last, "back to tasks created") {
			t.Errorf("request %d says %q", requests, last)
		}
		next = ""
		if m := older.FindStringSubmatch(page); m != nil {
			next = html.UnescapeString(m[1])
		}
	}
	if foundAt != needle/bound+1 {
		t.Errorf("the match (task %d) showed on request %d, want %d", needle, foundAt, needle/bound+1)
	}
	if requests != n/bound {
		t.Errorf("%d requests read the store to its end, want %d", requests, n/bound)
	}
	want := "back to tasks created " + when(start.Add(-(n-1)*time.Minute)) + " (1000 in all since the newest); that is every task."
	if !strings.HasSuffix(last, want) {
		t.Errorf("the last page says %q, want it to end %q", last, want)
	}
}
