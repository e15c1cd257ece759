package main

import (
	"slices"
	"strings"
	"testing"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

func TestParseInputsByDeclaredType(t *testing.T) {
	schema := &aurav1.TaskInfo{Id: "p/t", Inputs: []*aurav1.InputSpec{
		{Name: "s", Type: "string"}, {Name: "n", Type: "int"}, {Name: "f", Type: "float"},
		{Name: "b", Type: "bool"}, {Name: "l", Type: "list"}, {Name: "m", Type: "map"},
	}}
	got, err := parseInputs([]string{"s=123", "n=42", "f=0.5", "b=true", `l=["a",1]`, `m={"k":"v"}`}, "", schema)
	if err != nil {
		t.Fatal(err)
	}
	m := got.AsMap()
	if m["s"] != "123" || m["n"] != float64(42) || m["f"] != 0.5 || m["b"] != true ||
		len(m["l"].([]any)) != 2 || m["m"].(map[string]any)["k"] != "v" {
		t.Fatalf("inputs %v", m)
	}
	// A string input keeps whatever text was given, "=" included.
	got, _ = parseInputs([]string{"s=a=b", "s=0042"}, "", schema)
	if got.AsMap()["s"] != "0042" {
		t.Fatalf("last --input wins and stays text: %v", got.AsMap())
	}
	for _, tc := range []struct {
		kv   string
		want string
	}{
		{"n=1.5", "n is an int input: want a whole number"},
		{"n=9007199254740993", "too large"},
		{"f=half", "f is a float input: want a number"},
		{"b=yes", "b is a bool input: want true or false"},
		{"l=a,b", "l is a list input: want a JSON list"},
		{"m=k=v", "m is a map input: want a JSON object"},
		{"nn=1", `task p/t has no input "nn" (did you mean "n"?); its inputs are s, n, f, b, l, m`},
		{"=1", "want name=value"},
		{"s", "want name=value"},
	} {
		if _, err := parseInputs([]string{tc.kv}, "", schema); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--input %s: %v, want %q", tc.kv, err, tc.want)
		}
	}
	if _, err := parseInputs([]string{"x=1"}, "", &aurav1.TaskInfo{Id: "p/none"}); err == nil || !strings.Contains(err.Error(), "takes no inputs") {
		t.Errorf("input for a task without inputs: %v", err)
	}
}

// Without the schema, values go as text (aurad converts text to the
// declared int, float or bool), except JSON lists and objects.
func TestParseInputsWithoutSchema(t *testing.T) {
	got, err := parseInputs([]string{"a=123", "b=true", `c=[1,2]`, `d={"k":1}`, "e=[not json"}, `{"z": 1}`, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := got.AsMap()
	if m["a"] != "123" || m["b"] != "true" || len(m["c"].([]any)) != 2 || m["d"] == nil || m["e"] != "[not json" || m["z"] != float64(1) {
		t.Fatalf("inputs %v", m)
	}
	if in, err := parseInputs(nil, "", nil); in != nil || err != nil {
		t.Fatalf("no inputs: %v %v", in, err)
	}
}

func TestExtraTagsLeaveTheDefinitionsOwn(t *testing.T) {
	got := extraTags([]string{"device:1", "api", "extra:3", "api"}, []string{"device:1", "api"})
	if !slices.Equal(got, []string{"extra:3", "api"}) {
		t.Fatalf("extraTags = %v", got)
	}
	if got := extraTags([]string{"a"}, nil); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("extraTags without own tags = %v", got)
	}
}

func TestExplainNamesAMissingDaemon(t *testing.T) {
	why, ok := dialFailure(`connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:1: connect: connection refused"`)
	if !ok || why != "connection refused" {
		t.Fatalf("dialFailure = %q, %v", why, ok)
	}
	if _, ok := dialFailure("the daemon is shutting down"); ok {
		t.Fatal("a draining daemon is not a missing one")
	}
}
