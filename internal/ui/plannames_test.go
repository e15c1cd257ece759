package ui

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// roleCore answers ListTasks and ListPlans to the "reader" token only, as
// the API's read role does.
type roleCore struct{ Core }

func refuseUnlessReader(ctx context.Context) error {
	if Credential(ctx) != "reader" {
		return &CallError{Code: "PermissionDenied", Message: "this token lacks the read role"}
	}
	return nil
}

func (roleCore) ListTasks(ctx context.Context, _ *aurav1.ListTasksRequest) (*aurav1.ListTasksResponse, error) {
	if err := refuseUnlessReader(ctx); err != nil {
		return nil, err
	}
	return &aurav1.ListTasksResponse{Tasks: []*aurav1.Task{{Id: "t-1", Task: "secret-plan/job"}}}, nil
}

func (roleCore) ListPlans(ctx context.Context) ([]*aurav1.Plan, error) {
	if err := refuseUnlessReader(ctx); err != nil {
		return nil, err
	}
	return []*aurav1.Plan{{Name: "secret-plan"}}, nil
}

// The task list caches plan names for its filter, but a session whose own
// list call is refused is not shown the names another session fetched.
func TestPlanNamesAreNotShownToASessionThatMayNotRead(t *testing.T) {
	s, err := NewServer(Options{Core: roleCore{}, Events: noEvents{}, AuthOn: true,
		Authenticate: func(tok string) (Identity, bool) {
			return Identity{Name: tok, Roles: map[string]bool{"read": tok == "reader"}}, tok == "reader" || tok == "submitter"
		}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	get := func(token string) (int, string) {
		t.Helper()
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar}
		resp, err := c.Get(srv.URL + "/signin")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		resp, err = c.PostForm(srv.URL+"/signin", url.Values{"token": {token}, "next": {"/tasks"}})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(body)
	}
	code, page := get("reader")
	if code != http.StatusOK || !strings.Contains(page, `<option value="secret-plan">secret-plan</option>`) {
		t.Fatalf("the reader's task list: %d, want 200 offering plan secret-plan\n%s", code, page)
	}
	code, page = get("submitter")
	if code != http.StatusForbidden {
		t.Fatalf("the submitter's task list: %d, want 403\n%s", code, page)
	}
	if strings.Contains(page, "secret-plan") {
		t.Errorf("a session that may not read was shown the plan names the reader's session fetched:\n%s", page)
	}
}
