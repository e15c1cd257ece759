package execmgr

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// An in-process submitter meets the same rules as a gRPC client: a bad
// request is an *InvalidError naming the field, and no task is recorded.
func TestInProcessSubmitIsValidatedLikeGRPC(t *testing.T) {
	m, _ := newManager(t, 1)
	many := map[string]string{}
	for i := range 65 {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	cases := []struct {
		name  string
		req   *aurav1.SubmitRequest
		field string
	}{
		{"no task", &aurav1.SubmitRequest{}, "task"},
		{"dot-dot task", &aurav1.SubmitRequest{Task: "bench/../noop"}, "task"},
		{"reserved label", &aurav1.SubmitRequest{Task: "bench/noop", Labels: map[string]string{"aura.parent": "x"}}, "labels[aura.parent]"},
		{"bidi label", &aurav1.SubmitRequest{Task: "bench/noop", Labels: map[string]string{"k": "invoice\u202Efdp.exe"}}, "labels[k]"},
		{"too many labels", &aurav1.SubmitRequest{Task: "bench/noop", Labels: many}, "labels"},
		{"bad tag", &aurav1.SubmitRequest{Task: "bench/noop", ResourceTags: []string{"device:0"}}, "resource_tags[0]"},
		{"too many tags", &aurav1.SubmitRequest{Task: "bench/noop", ResourceTags: make([]string, 33)}, "resource_tags"},
		{"spaced key", &aurav1.SubmitRequest{Task: "bench/noop", IdempotencyKey: "a b"}, "idempotency_key"},
		{"8-day timeout", &aurav1.SubmitRequest{Task: "bench/noop", Timeout: durationpb.New(8 * 24 * time.Hour)}, "timeout"},
		{"unknown mode", &aurav1.SubmitRequest{Task: "bench/noop", ExecutionMode: 9}, "execution_mode"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := m.Submit(context.Background(), c.req)
			var inv *InvalidError
			if !errors.As(err, &inv) || !strings.HasPrefix(err.Error(), c.field+": ") {
				t.Fatalf("got %v, want an InvalidError naming %s", err, c.field)
			}
		})
	}
	list, err := m.List(context.Background(), &aurav1.ListTasksRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetTasks()) != 0 {
		t.Fatalf("refused submissions were recorded: %v", list.GetTasks())
	}
}
