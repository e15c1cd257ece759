package validation

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// requestUnviewed is Request for a SubmitRequest with the .proto rules run
// on the whole request: what every submission must still be answered.
func requestUnviewed(m *aurav1.SubmitRequest) error {
	if err := checkRules(m); err != nil {
		return err
	}
	return checkSubmit(m)
}

func sameAnswer(t *testing.T, req *aurav1.SubmitRequest) {
	t.Helper()
	got, want := Request(req), requestUnviewed(req)
	if (got == nil) != (want == nil) || (got != nil && got.Error() != want.Error()) {
		t.Errorf("%v:\n got  %v\n want %v (the .proto rules on the whole request)", req, got, want)
	}
}

// The shortcut is on for the rules the .proto states today; without it
// every submission pays for walking its inputs again.
func TestSubmitViewShortcutIsOn(t *testing.T) {
	if !submitView.inputs || !submitView.timeout || !submitView.tags {
		t.Fatalf("the .proto rules' view of a submission leaves nothing out: %+v", submitView)
	}
}

// Every field the view does not leave out reaches the .proto rules
// unchanged, including a field added to SubmitRequest later.
func TestSubmitViewKeepsEveryOtherField(t *testing.T) {
	in, _ := structpb.NewStruct(map[string]any{"a": 1})
	full := &aurav1.SubmitRequest{Task: "demo/hello", Inputs: in, Timeout: durationpb.New(time.Minute),
		ResourceTags: []string{"device:1"}, ExecutionMode: aurav1.ExecutionMode(1), Priority: 7,
		IdempotencyKey: "k-1", Labels: map[string]string{"team": "data"}, SkipPlanning: true,
		Preempt: true, Preemptible: true}
	fields := full.ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		if fd := fields.Get(i); !full.ProtoReflect().Has(fd) {
			t.Fatalf("field %s is not set in this test: set it here, and carry it in submitViewer.of", fd.Name())
		}
	}
	want := proto.Clone(full).(*aurav1.SubmitRequest)
	for _, name := range []protoreflect.Name{"inputs", "timeout", "resource_tags"} {
		want.ProtoReflect().Clear(fields.ByName(name))
	}
	if got := submitView.of(full); !proto.Equal(got, want) {
		t.Fatalf("view:\n got  %v\n want %v", got, want)
	}
	// Parts not certainly inside their bounds stay in the view.
	out := &aurav1.SubmitRequest{Task: "demo/hello", Timeout: durationpb.New(8 * 24 * time.Hour), ResourceTags: []string{""}}
	if got := submitView.of(out); !proto.Equal(got, out) {
		t.Fatalf("a timeout and a tag out of bounds left out of the view: %v", got)
	}
}

// A request is answered exactly as when the .proto rules see all of it:
// at each bound of the timeout and the tags, on either side, with tags of
// several-byte characters and of bytes that are not UTF-8.
func TestSubmitViewAnswersAsTheWholeRequest(t *testing.T) {
	wide := strings.Repeat("é", 256) // 256 characters, 512 bytes
	var tooMany []string
	for range protoMaxTags + 1 {
		tooMany = append(tooMany, "device:1")
	}
	for _, d := range []*durationpb.Duration{
		{}, {Nanos: 1}, {Nanos: -1}, durationpb.New(protoMaxTimeout), durationpb.New(protoMaxTimeout + time.Nanosecond),
		{Seconds: 1, Nanos: -1}, {Seconds: 0, Nanos: 1e9}, {Seconds: 1 << 40}, {Seconds: -(1 << 40)},
	} {
		sameAnswer(t, &aurav1.SubmitRequest{Task: "demo/hello", Timeout: d})
	}
	for _, tags := range [][]string{
		{"device:1"}, {""}, {"device:1", ""}, {wide}, {wide + "é"}, {strings.Repeat("a", protoMaxTagBytes+1)},
		{"\xff"}, {"device:\xff"}, {strings.Repeat("\xff", protoMaxTagBytes)}, tooMany, tooMany[:protoMaxTags],
	} {
		sameAnswer(t, &aurav1.SubmitRequest{Task: "demo/hello", ResourceTags: tags})
		sameAnswer(t, &aurav1.SubmitRequest{Task: "demo/hello", ResourceTags: tags, Timeout: durationpb.New(-time.Second)})
	}
	sameAnswer(t, &aurav1.SubmitRequest{Task: "no-slash", Inputs: nested(MaxInputsDepth + 1), Timeout: durationpb.New(time.Minute)})
	sameAnswer(t, &aurav1.SubmitRequest{Task: "demo/hello", Inputs: nested(MaxInputsDepth + 1), ResourceTags: []string{"x"}})
	sameAnswer(t, &aurav1.SubmitRequest{Task: "demo/hello", Inputs: nested(MaxInputsDepth), ExecutionMode: 9, ResourceTags: []string{"device:1"}})
}

// FuzzSubmitView: for any request on the wire, Request answers as the
// .proto rules on the whole request would.
func FuzzSubmitView(f *testing.F) {
	in, _ := structpb.NewStruct(map[string]any{"a": []any{1, map[string]any{"b": "c"}}})
	for _, r := range []*aurav1.SubmitRequest{
		{Task: "demo/hello", Inputs: in, Timeout: durationpb.New(time.Minute), ResourceTags: []string{"device:x:1"}, Labels: map[string]string{"k": "v"}},
		{Task: "demo/hello", Timeout: durationpb.New(protoMaxTimeout), ResourceTags: []string{"", strings.Repeat("é", 257)}},
		{Task: "demo", Timeout: &durationpb.Duration{Seconds: 1, Nanos: -1}, ExecutionMode: 5},
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
		sameAnswer(t, &req)
	})
}
