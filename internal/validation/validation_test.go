package validation

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/aura-dev/aura/internal/admission"
	"github.com/aura-dev/aura/internal/plan"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// The .proto's bounds, for building requests just past them.
const (
	protoMaxLabels   = 64
	protoMaxTags     = 32
	protoMaxTagBytes = 256
	protoMaxTimeout  = 7 * 24 * time.Hour
)

func isInvalid(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

func nested(depth int) *structpb.Struct {
	v := structpb.NewStringValue("leaf")
	for range depth - 1 {
		v = structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"x": v}})
	}
	return &structpb.Struct{Fields: map[string]*structpb.Value{"x": v}}
}

func nestedLists(depth int) *structpb.Struct {
	v := structpb.NewNumberValue(1)
	for range depth - 1 {
		v = structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{v}})
	}
	return &structpb.Struct{Fields: map[string]*structpb.Value{"x": v}}
}

func manyLabels(n int) map[string]string {
	m := map[string]string{}
	for i := range n {
		m[strings.Repeat("k", 1+i%60)+string(rune('a'+i%26))+string(rune('a'+i/26))] = "v"
	}
	return m
}

func TestValidateAcceptsOrdinaryRequests(t *testing.T) {
	in, _ := structpb.NewStruct(map[string]any{"name": "you", "n": 3, "list": []any{1, map[string]any{"a": true}}})
	for _, req := range []any{
		&aurav1.SubmitRequest{Task: "demo/hello"},
		&aurav1.SubmitRequest{Task: "files/sub/dir/task-1.v2", Inputs: in, Timeout: durationpb.New(time.Hour),
			ResourceTags: []string{"device:emulator-5554:1", "api", "api:openai:5"}, ExecutionMode: aurav1.ExecutionMode_EXECUTION_MODE_CPU,
			Priority: -5, IdempotencyKey: "order-42", Labels: map[string]string{"team": "a b c", "app.kubernetes.io/name": "x"}},
		&aurav1.SubmitRequest{Task: "demo/hello", Inputs: nested(MaxInputsDepth)},
		&aurav1.SubmitRequest{Task: "demo/hello", Labels: manyLabels(protoMaxLabels)},
		&aurav1.GetTaskRequest{TaskId: "0193a5c2-7b1e-7f00-8000-000000000001"},
		&aurav1.CancelTaskRequest{TaskId: "0193a5c2-7b1e-7f00-8000-000000000001", Reason: "operator asked\nnicely"},
		// A cluster's task ids name their node, whose name may be 63 bytes.
		&aurav1.GetTaskRequest{TaskId: "farm-host-3.0193a5c2-7b1e-7f00-8000-000000000001"},
		&aurav1.CancelTaskRequest{TaskId: strings.Repeat("n", 63) + ".0193a5c2-7b1e-7f00-8000-000000000001"},
		&aurav1.StreamRequest{TaskId: "a.0193a5c2-7b1e-7f00-8000-000000000001"},
		&aurav1.StreamRequest{},
		&aurav1.ListTasksRequest{Status: aurav1.TaskStatus_TASK_STATUS_FAILED, Plan: "demo", LabelSelector: "a=b,!c", PageSize: 5000},
		&aurav1.SubscribeRequest{Hooks: []string{"before_task_run", "after_task_run"}, Plan: "demo"},
		&aurav1.InterceptReply{Msg: &aurav1.InterceptReply_Register{Register: &aurav1.InterceptRegistration{Name: "policy-bot", Hooks: []string{"before_task_run"}}}},
		&aurav1.InterceptReply{Msg: &aurav1.InterceptReply_Decision{Decision: &aurav1.InterceptDecision{CallId: "7", Reason: "no"}}},
		&aurav1.GetStatsRequest{},
	} {
		if err := Request(req); err != nil {
			t.Errorf("%T %v: %v", req, req, err)
		}
	}
}

func TestValidateRefusesBadRequestsNamingTheField(t *testing.T) {
	long := strings.Repeat("a", 300)
	bigInputs, _ := structpb.NewStruct(map[string]any{"blob": strings.Repeat("x", maxInputsBytes)})
	cases := []struct {
		name  string
		req   any
		field string
	}{
		{"no task", &aurav1.SubmitRequest{}, "task"},
		{"one segment", &aurav1.SubmitRequest{Task: "hello"}, "task"},
		{"dot-dot", &aurav1.SubmitRequest{Task: "demo/../etc"}, "task"},
		{"absolute", &aurav1.SubmitRequest{Task: "/demo/hello"}, "task"},
		{"space", &aurav1.SubmitRequest{Task: "demo/hel lo"}, "task"},
		{"long name", &aurav1.SubmitRequest{Task: "demo/" + long}, "task"},
		{"zero limit tag", &aurav1.SubmitRequest{Task: "demo/a", ResourceTags: []string{"ok", "device:0"}}, "resource_tags[1]"},
		{"empty tag", &aurav1.SubmitRequest{Task: "demo/a", ResourceTags: []string{""}}, "resource_tags[0]"},
		{"empty segment tag", &aurav1.SubmitRequest{Task: "demo/a", ResourceTags: []string{"a::b"}}, "resource_tags[0]"},
		{"long tag", &aurav1.SubmitRequest{Task: "demo/a", ResourceTags: []string{long}}, "resource_tags[0]"},
		{"too many tags", &aurav1.SubmitRequest{Task: "demo/a", ResourceTags: make([]string, protoMaxTags+1)}, "resource_tags"},
		{"zero timeout", &aurav1.SubmitRequest{Task: "demo/a", Timeout: durationpb.New(0)}, "timeout"},
		{"negative timeout", &aurav1.SubmitRequest{Task: "demo/a", Timeout: durationpb.New(-time.Second)}, "timeout"},
		{"huge timeout", &aurav1.SubmitRequest{Task: "demo/a", Timeout: durationpb.New(protoMaxTimeout + time.Second)}, "timeout"},
		{"malformed timeout", &aurav1.SubmitRequest{Task: "demo/a", Timeout: &durationpb.Duration{Seconds: 1, Nanos: -1}}, "timeout"},
		{"unknown mode", &aurav1.SubmitRequest{Task: "demo/a", ExecutionMode: 9}, "execution_mode"},
		{"spaced idempotency key", &aurav1.SubmitRequest{Task: "demo/a", IdempotencyKey: "a b"}, "idempotency_key"},
		{"too many labels", &aurav1.SubmitRequest{Task: "demo/a", Labels: manyLabels(protoMaxLabels + 1)}, "labels"},
		{"bad label key", &aurav1.SubmitRequest{Task: "demo/a", Labels: map[string]string{"a=b": "c"}}, "labels"},
		{"long label key", &aurav1.SubmitRequest{Task: "demo/a", Labels: map[string]string{long: "c"}}, "labels"},
		{"long label value", &aurav1.SubmitRequest{Task: "demo/a", Labels: map[string]string{"k": long}}, "labels[k]"},
		{"control char label", &aurav1.SubmitRequest{Task: "demo/a", Labels: map[string]string{"k": "a\x00b"}}, "labels[k]"},
		{"internal label", &aurav1.SubmitRequest{Task: "demo/a", Labels: map[string]string{"aura.parent": "0190a0b2-0000-7000-8000-000000000000"}}, "labels[aura.parent]"},
		{"internal label prefix", &aurav1.SubmitRequest{Task: "demo/a", Labels: map[string]string{"aura.owner": "x"}}, "labels[aura.owner]"},
		{"bidi override label", &aurav1.SubmitRequest{Task: "demo/a", Labels: map[string]string{"k": "invoice\u202Efdp.exe"}}, "labels[k]"},
		{"bidi isolate label", &aurav1.SubmitRequest{Task: "demo/a", Labels: map[string]string{"k": "a\u2067b"}}, "labels[k]"},
		{"zero-width label", &aurav1.SubmitRequest{Task: "demo/a", Labels: map[string]string{"team": "ops\u200B"}}, "labels[team]"},
		{"byte order mark label", &aurav1.SubmitRequest{Task: "demo/a", Labels: map[string]string{"k": "\uFEFFx"}}, "labels[k]"},
		{"deep inputs", &aurav1.SubmitRequest{Task: "demo/a", Inputs: nested(MaxInputsDepth + 1)}, "inputs"},
		{"deep list inputs", &aurav1.SubmitRequest{Task: "demo/a", Inputs: nestedLists(MaxInputsDepth + 2)}, "inputs"},
		{"big inputs", &aurav1.SubmitRequest{Task: "demo/a", Inputs: bigInputs}, "inputs"},
		{"no task id", &aurav1.GetTaskRequest{}, "task_id"},
		{"path task id", &aurav1.GetTaskRequest{TaskId: "../x"}, "task_id"},
		{"upper-case node in task id", &aurav1.GetTaskRequest{TaskId: "Node.0193a5c2-7b1e-7f00-8000-000000000001"}, "task_id"},
		{"task id of two dots", &aurav1.GetTaskRequest{TaskId: "a.b.c"}, "task_id"},
		{"task id without its node", &aurav1.CancelTaskRequest{TaskId: ".0193a5c2"}, "task_id"},
		{"task id without its local part", &aurav1.StreamRequest{TaskId: "node."}, "task_id"},
		{"cancel without id", &aurav1.CancelTaskRequest{}, "task_id"},
		{"long reason", &aurav1.CancelTaskRequest{TaskId: "x", Reason: strings.Repeat("r", maxTextBytes+1)}, "reason"},
		{"stream bad id", &aurav1.StreamRequest{TaskId: long}, "task_id"},
		{"negative page", &aurav1.ListTasksRequest{PageSize: -1}, "page_size"},
		{"unknown status", &aurav1.ListTasksRequest{Status: 99}, "status"},
		{"bad plan filter", &aurav1.ListTasksRequest{Plan: "../x"}, "plan"},
		{"unknown hook", &aurav1.SubscribeRequest{Hooks: []string{"before_everything"}}, "hooks[0]"},
		{"too many hooks", &aurav1.SubscribeRequest{Hooks: make([]string, 5)}, "hooks"},
		{"nameless interceptor", &aurav1.InterceptReply{Msg: &aurav1.InterceptReply_Register{Register: &aurav1.InterceptRegistration{}}}, "register.name"},
		{"interceptor bad hook", &aurav1.InterceptReply{Msg: &aurav1.InterceptReply_Register{Register: &aurav1.InterceptRegistration{Name: "p", Hooks: []string{"x"}}}}, "register.hooks[0]"},
		{"long call id", &aurav1.InterceptReply{Msg: &aurav1.InterceptReply_Decision{Decision: &aurav1.InterceptDecision{CallId: long}}}, "decision.call_id"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Request(c.req)
			if !isInvalid(err) {
				t.Fatalf("%v; want an *Error", err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, c.field+": ") {
				t.Fatalf("message %q does not start with the field %q", msg, c.field)
			}
			if len(msg) > 512 || !utf8.ValidString(msg) {
				t.Fatalf("message is %d bytes or not UTF-8: a bad value must not be echoed whole", len(msg))
			}
		})
	}
}

// FuzzTaskName: the task-name grammar never panics, and whatever it accepts
// is a safe "plan/task" name (no empty, "." or ".." segment, no absolute
// path, nothing but letters, digits, _ . - and /).
func FuzzTaskName(f *testing.F) {
	for _, s := range []string{"demo/hello", "files/sub/dir/t", "a/b", "", "/", "a", "a/", "/a", "a//b", "a/../b", "../a",
		"a/./b", "a/b/..", ".a/b.", "a/b\x00", "a/ b", "ä/b", "a\\b", "a/b/c/d/e/f", "-/_", strings.Repeat("x/", 200)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := Request(&aurav1.SubmitRequest{Task: name})
		_, _, splitErr := plan.SplitTaskID(name)
		if err != nil {
			if !isInvalid(err) {
				t.Fatalf("%q: %v; want an *Error", name, err)
			}
			return
		}
		if splitErr != nil {
			t.Fatalf("accepted %q that plan.SplitTaskID refuses: %v", name, splitErr)
		}
		if len(name) > maxTaskNameBytes || strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/") {
			t.Fatalf("accepted %q", name)
		}
		segs := strings.Split(name, "/")
		if len(segs) < 2 {
			t.Fatalf("accepted %q without a plan", name)
		}
		for _, seg := range segs {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("accepted %q with segment %q", name, seg)
			}
			for _, r := range seg {
				if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-') {
					t.Fatalf("accepted %q with character %q", name, r)
				}
			}
		}
	})
}

// FuzzResourceTag: the tag grammar never panics, and what it accepts has a
// non-empty key, a positive limit, no whitespace, and a canonical form that
// parses back to the same tag.
func FuzzResourceTag(f *testing.F) {
	for _, s := range []string{"device:emulator-5554:1", "api:openai:5", "api", "gpu:2", "", ":", "a:", ":1", "a:0", "a:-1", "a:+3",
		"a::b", "a:b:c", "a:99999999999999999999", " a ", "a b", "a\tb", "\x00", "ключ:3", "a:1:2", strings.Repeat("k", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tag string) {
		err := Request(&aurav1.SubmitRequest{Task: "demo/a", ResourceTags: []string{tag}})
		if err != nil {
			if !isInvalid(err) {
				t.Fatalf("%q: %v; want an *Error", tag, err)
			}
			return
		}
		if len(tag) > protoMaxTagBytes {
			t.Fatalf("accepted a %d-byte tag", len(tag))
		}
		parsed, perr := admission.ParseTag(tag)
		if perr != nil {
			t.Fatalf("accepted %q that admission refuses: %v", tag, perr)
		}
		if parsed.Key == "" || parsed.Limit < 1 || strings.ContainsAny(parsed.Key, " \t\r\n") {
			t.Fatalf("accepted %q as %+v", tag, parsed)
		}
		again, err := admission.ParseTag(parsed.String())
		if err != nil || again != parsed {
			t.Fatalf("%q: canonical %q parses to %+v, %v; want %+v", tag, parsed.String(), again, err, parsed)
		}
	})
}

// FuzzSubmitRequest feeds arbitrary wire bytes through the decoder and the
// validator: no panic, and every request accepted has a safe task name,
// tags admission accepts, and inputs within the size and depth bounds.
func FuzzSubmitRequest(f *testing.F) {
	in, _ := structpb.NewStruct(map[string]any{"a": []any{1, map[string]any{"b": "c"}}})
	for _, r := range []*aurav1.SubmitRequest{
		{Task: "demo/hello"},
		{Task: "demo/hello", Inputs: in, Timeout: durationpb.New(time.Minute), ResourceTags: []string{"device:x:1"}, Labels: map[string]string{"k": "v"}},
		{Task: "../etc/passwd", ResourceTags: []string{"a:0"}},
		{Task: "demo/hello", Inputs: nested(40)},
	} {
		b, err := proto.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, wire []byte) {
		var req aurav1.SubmitRequest
		if proto.Unmarshal(wire, &req) != nil {
			return
		}
		if err := Request(&req); err != nil {
			if !isInvalid(err) {
				t.Fatalf("%v; want an *Error", err)
			}
			return
		}
		if _, _, err := plan.SplitTaskID(req.GetTask()); err != nil {
			t.Fatalf("accepted task %q: %v", req.GetTask(), err)
		}
		for _, tag := range req.GetResourceTags() {
			if _, err := admission.ParseTag(tag); err != nil {
				t.Fatalf("accepted tag %q: %v", tag, err)
			}
		}
		if in := req.GetInputs(); in != nil && (proto.Size(in) > maxInputsBytes || depthExceeds(in, MaxInputsDepth)) {
			t.Fatalf("accepted inputs beyond the bounds")
		}
		if d := req.GetTimeout(); d != nil && (d.AsDuration() <= 0 || d.AsDuration() > protoMaxTimeout) {
			t.Fatalf("accepted timeout %s", d.AsDuration())
		}
	})
}

// BenchmarkValidateSubmit is the per-request cost of validating a typical
// submission.
func BenchmarkValidateSubmit(b *testing.B) {
	in, _ := structpb.NewStruct(map[string]any{"url": "https://example.com/report", "tries": 3, "opts": map[string]any{"a": []any{1, 2, 3}}})
	req := &aurav1.SubmitRequest{Task: "reports/daily", Inputs: in, Timeout: durationpb.New(5 * time.Minute),
		ResourceTags: []string{"device:emulator-5554:1", "api:openai:5"}, IdempotencyKey: "daily-2026-11-28",
		Labels: map[string]string{"team": "data", "env": "prod"}}
	for b.Loop() {
		if err := Request(req); err != nil {
			b.Fatal(err)
		}
	}
}

// The rules written in the .proto files are enforced on their own (the
// generated descriptors carry them): each case breaks one annotation.
func TestProtoRulesAreEnforced(t *testing.T) {
	cases := []struct {
		req   proto.Message
		field string
	}{
		{&aurav1.SubmitRequest{Task: "no-slash"}, "task"},
		{&aurav1.SubmitRequest{Task: "demo/a", Timeout: durationpb.New(-time.Second)}, "timeout"},
		{&aurav1.SubmitRequest{Task: "demo/a", Timeout: durationpb.New(8 * 24 * time.Hour)}, "timeout"},
		{&aurav1.SubmitRequest{Task: "demo/a", ExecutionMode: 9}, "execution_mode"},
		{&aurav1.SubmitRequest{Task: "demo/a", ResourceTags: []string{""}}, "resource_tags[0]"},
		{&aurav1.SubmitRequest{Task: "demo/a", Labels: map[string]string{"": "v"}}, "labels[]"},
		{&aurav1.ListTasksRequest{PageSize: -1}, "page_size"},
		{&aurav1.CancelTaskRequest{}, "task_id"},
		{&aurav1.SubscribeRequest{Hooks: []string{"nope"}}, "hooks[0]"},
	}
	for _, c := range cases {
		err := checkRules(c.req)
		if !isInvalid(err) || !strings.HasPrefix(err.Error(), c.field+": ") {
			t.Errorf("%v: got %v, want an *Error naming %s", c.req, err, c.field)
		}
	}
	// A task name that is not PLAN/TASK is explained, not answered with the
	// rule's regex.
	msg := checkRules(&aurav1.SubmitRequest{Task: "post_message"}).Error()
	if strings.Contains(msg, "regex") || !strings.Contains(msg, `"post_message" is not a task name: want PLAN/TASK`) {
		t.Errorf("a task name without a plan: %q", msg)
	}
	if err := checkRules(&aurav1.SubmitRequest{Task: "demo/hello", Timeout: durationpb.New(time.Minute), ResourceTags: []string{"device:1"}}); err != nil {
		t.Fatalf("a good request: %v", err)
	}
}
