package ui

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

func TestFormInputsLeaveTypeChecksToTheServer(t *testing.T) {
	ti := &aurav1.TaskInfo{Inputs: []*aurav1.InputSpec{
		{Name: "n", Type: "int"}, {Name: "word", Type: "string"}, {Name: "list", Type: "list"}, {Name: "unset", Type: "int"},
	}}
	form := map[string]string{"input.n": "abc", "input.word": "42", "input.list": `[1, "a"]`}
	got, err := formInputs(ti, func(k string) string { return form[k] })
	if err != nil {
		t.Fatal(err)
	}
	f := got.GetFields()
	if f["n"].GetStringValue() != "abc" {
		t.Errorf("n = %v: text that is not JSON must go to the server as a string, for it to refuse", f["n"])
	}
	if f["word"].GetStringValue() != "42" {
		t.Errorf("word = %v: a string input's text is the string", f["word"])
	}
	if l := f["list"].GetListValue().GetValues(); len(l) != 2 || l[0].GetNumberValue() != 1 {
		t.Errorf("list = %v, want [1, \"a\"]", f["list"])
	}
	if _, ok := f["unset"]; ok {
		t.Error("an empty field was sent: its default would not apply")
	}
}

func TestStepLayersFollowDependencies(t *testing.T) {
	ti := &aurav1.TaskInfo{Steps: []*aurav1.StepInfo{
		{Id: "fetch"}, {Id: "check", DependsOn: []string{"fetch"}}, {Id: "report", DependsOn: []string{"fetch", "check"}}, {Id: "alone"},
	}}
	layers := stepLayers(ti, []*aurav1.StepState{{Id: "fetch", Status: aurav1.StepStatus_STEP_STATUS_SUCCEEDED}})
	var got []string
	for _, l := range layers {
		var ids []string
		for _, n := range l {
			ids = append(ids, n.ID+":"+n.Status)
		}
		got = append(got, strings.Join(ids, ","))
	}
	want := []string{"fetch:SUCCEEDED,alone:PENDING", "check:PENDING", "report:PENDING"}
	if strings.Join(got, " | ") != strings.Join(want, " | ") {
		t.Errorf("layers %q, want %q", got, want)
	}
	seq := stepLayers(&aurav1.TaskInfo{Sequential: true, Steps: []*aurav1.StepInfo{{Id: "a"}, {Id: "b"}}}, nil)
	if len(seq) != 2 {
		t.Errorf("a sequential task's steps are in %d layers, want one each", len(seq))
	}
}

func TestStateGraphDrawsEveryTransition(t *testing.T) {
	g := stateGraph(&aurav1.StateMap{
		States:      []*aurav1.State{{Name: "a"}, {Name: "b"}, {Name: "c"}},
		Transitions: []*aurav1.Transition{{From: "a", To: "b", Task: "p/go"}, {From: "b", To: "a", Task: "p/back"}, {From: "x", To: "a"}},
	})
	if len(g.Nodes) != 3 || len(g.Edges) != 2 {
		t.Fatalf("%d nodes, %d edges; want 3 and 2 (a transition from an unknown state is left out)", len(g.Nodes), len(g.Edges))
	}
	if g.Edges[0].Path == g.Edges[1].Path {
		t.Error("a→b and b→a are drawn on top of each other")
	}
	for _, n := range g.Nodes {
		if n.CX-n.RX < 0 || n.CY-n.RY < 0 || n.CX+n.RX > g.Width || n.CY+n.RY > g.Height {
			t.Errorf("state %s at (%d,%d) falls outside the %dx%d drawing", n.Name, n.CX, n.CY, g.Width, g.Height)
		}
	}
	if stateGraph(nil) != nil {
		t.Error("a plan without a state map got a graph")
	}
}

func TestSafeNextStaysOnSite(t *testing.T) {
	for in, want := range map[string]string{
		"/tasks?status=failed": "/tasks?status=failed", "": "/", "https://evil.example/": "/",
		"//evil.example/": "/", `/\evil.example`: "/", "tasks": "/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCommandsQuoteForTheShell(t *testing.T) {
	in, _ := structpb.NewStruct(map[string]any{"name": "it's <b>"})
	task := &aurav1.Task{Task: "demo/hello", Inputs: in, ResourceTags: []string{"device:a"}}
	auractl, grpcurl := commands(task, "10.0.0.1:7070")
	want := `auractl --addr 10.0.0.1:7070 submit demo/hello --inputs-json '{"name":"it'\''s <b>"}' --tag device:a`
	if auractl != want {
		t.Errorf("auractl command\n%s\nwant\n%s", auractl, want)
	}
	if !strings.HasPrefix(grpcurl, "grpcurl -plaintext -d '{") || !strings.HasSuffix(grpcurl, " 10.0.0.1:7070 aura.v1.ExecutionService/Submit") {
		t.Errorf("grpcurl command %s", grpcurl)
	}
}

func TestMatchesSearchesInputsLabelsAndID(t *testing.T) {
	in, _ := structpb.NewStruct(map[string]any{"serial": "EMU-5554", "n": 7})
	task := &aurav1.Task{Id: "01abc", Task: "farm/flash", Inputs: in, ResourceTags: []string{"device:emu"}, Labels: map[string]string{"team": "qa"}}
	for _, c := range []struct {
		task, tag, text string
		want            bool
	}{
		{"", "", "emu-55", true}, {"", "", "team=qa", true}, {"", "", "01AB", true}, {"", "", "7", true},
		{"", "", "nothing", false}, {"farm/flash", "device:emu", "", true}, {"farm/other", "", "", false}, {"", "device:x", "", false},
	} {
		if got := matches(task, "", c.task, c.tag, c.text); got != c.want {
			t.Errorf("matches(task %q, tag %q, text %q) = %v", c.task, c.tag, c.text, got)
		}
	}
}

func TestMatchesTheNodeATaskIDNames(t *testing.T) {
	for _, c := range []struct {
		id, node string
		want     bool
	}{
		{"n1.01abc", "n1", true}, {"n1.01abc", "n2", false}, {"n10.01abc", "n1", false},
		{"01abc", "n1", false}, {"01abc", "", true}, {"n1.01abc", "", true},
	} {
		if got := matches(&aurav1.Task{Id: c.id}, c.node, "", "", ""); got != c.want {
			t.Errorf("matches(id %q, node %q) = %v, want %v", c.id, c.node, got, c.want)
		}
	}
}

func TestSessionsExpireAndStayBounded(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	s := newSessions()
	s.now = func() time.Time { return now }
	first := s.start("tok", Identity{Name: "a"})
	if !first.validCSRF(first.csrf) || first.validCSRF("") || first.validCSRF(first.csrf+"x") {
		t.Error("CSRF check is wrong")
	}
	for range maxSessions + 10 {
		s.start("tok", Identity{})
	}
	if len(s.byID) > maxSessions {
		t.Errorf("%d sessions kept, want at most %d", len(s.byID), maxSessions)
	}
	if _, ok := s.byID[first.id]; ok {
		t.Error("the oldest session survived past the bound")
	}
	now = now.Add(sessionTTL + time.Second)
	s.start("tok", Identity{})
	if len(s.byID) != 1 {
		t.Errorf("%d sessions after every other expired, want 1", len(s.byID))
	}
}

func TestThroughputSummarisesTheLastHour(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	tp := newThroughput(func() time.Time { return now })
	now = now.Add(2 * time.Hour)
	finish := func(status aurav1.TaskStatus, took time.Duration) {
		tp.record(&aurav1.Task{Status: status, CreatedAt: timestamppb.New(now.Add(-took)), FinishedAt: timestamppb.New(now)})
	}
	finish(aurav1.TaskStatus_TASK_STATUS_SUCCEEDED, time.Second)
	now = now.Add(61 * time.Minute) // the first falls out of the window
	finish(aurav1.TaskStatus_TASK_STATUS_SUCCEEDED, 2*time.Second)
	finish(aurav1.TaskStatus_TASK_STATUS_FAILED, 4*time.Second)
	s := tp.summary()
	if s.Finished != 2 || s.Failed != 1 || s.P50 != "4s" || s.Window != "the last hour" {
		t.Errorf("summary %+v, want 2 finished, 1 failed, median 4s over the last hour", s)
	}
}
