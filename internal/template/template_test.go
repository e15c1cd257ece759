package template

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

var loc = Location{File: "t.yaml", Line: 3, Col: 7}

func scope() map[string]any {
	return map[string]any{
		"inputs": map[string]any{"n": int64(2), "name": "aura", "list": []any{int64(1), int64(2)}, "f": 1.5},
		"nodes": map[string]any{
			"fetch": map[string]any{"status": "succeeded", "output": map[string]any{"code": int64(200), "body": "ok"}},
		},
		"loop": map[string]any{"item": "x", "index": int64(4)},
		"plan": map[string]any{"name": "web", "dir": "/plans/web"},
		"task": map[string]any{"id": "123", "name": "check"},
	}
}

func TestEval(t *testing.T) {
	tests := []struct {
		src  string
		want any
	}{
		{"plain text", "plain text"},
		{"{{ inputs.n }}", int64(2)},
		{"  {{ inputs.n * 3 }}  ", int64(6)},
		{"{{ inputs.f }}", 1.5},
		{"{{ inputs.list }}", []any{int64(1), int64(2)}},
		{"{{ [1, 'a', nil] }}", []any{int64(1), "a", nil}},
		{"{{ {'a': 1} }}", map[string]any{"a": int64(1)}},
		{"{{ nodes.fetch.output.code == 200 }}", true},
		{"{{ nodes.fetch.status }}", "succeeded"},
		{"{{ nodes.missing?.output }}", nil},
		{"n={{ inputs.n }} f={{ inputs.f }} ok={{ true }} nil={{ nil }}", "n=2 f=1.5 ok=true nil="},
		{"list {{ inputs.list }}", "list [1,2]"},
		{"{{ loop.item }}-{{ loop.index }}", "x-4"},
		{"{{ plan.name }}/{{ task.name }} in {{ plan.dir }}", "web/check in /plans/web"},
		{"{{ upper(inputs.name) }}", "AURA"},
		{"{{ len(inputs.list) }}", int64(2)},
		{"{{ 7 / 2 }}", 3.5},
		{"{{ 10.0 }}", 10.0},
		{"a {{ 10.0 }}", "a 10"},
		{"{{ map(inputs.list, # * 2) }}", []any{int64(2), int64(4)}},
	}
	for _, tc := range tests {
		tp, err := Compile(tc.src, loc)
		if err != nil {
			t.Errorf("Compile(%q): %v", tc.src, err)
			continue
		}
		got, err := tp.Eval(scope())
		if err != nil {
			t.Errorf("Eval(%q): %v", tc.src, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Eval(%q) = %#v, want %#v", tc.src, got, tc.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct{ src, want string }{
		{"{{ inputs.n", "without matching"},
		{"{{ }}", "empty expression"},
		{"{{ inputs.n + }}", "unexpected token"},
		{"{{ input.n }}", "unknown name input"},
		{"ok {{ 1 }} and {{ ( }}", "("},
	}
	for _, tc := range tests {
		_, err := Compile(tc.src, loc)
		var ce *CompileError
		if !errors.As(err, &ce) {
			t.Errorf("Compile(%q) err = %v, want *CompileError", tc.src, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "t.yaml:3:7:") {
			t.Errorf("Compile(%q) err = %q, want location and %q", tc.src, err, tc.want)
		}
	}
}

func TestEvalErrorNamesExpressionAndLocation(t *testing.T) {
	tp, err := Compile("x {{ nodes.fetch.output.code.deeper }}", loc)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tp.Eval(scope())
	var ee *EvalError
	if !errors.As(err, &ee) {
		t.Fatalf("err = %v, want *EvalError", err)
	}
	for _, want := range []string{"t.yaml:3:7", "nodes.fetch.output.code.deeper"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestRefs(t *testing.T) {
	tp, err := Compile(`{{ inputs.url }} {{ nodes.a.output + nodes["b-c"].status }} {{ loop.index }}`, loc)
	if err != nil {
		t.Fatal(err)
	}
	r := tp.Refs()
	want := Refs{Names: []string{"inputs", "loop", "nodes"}, Nodes: []string{"a", "b-c"}, Inputs: []string{"url"}}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("refs = %+v, want %+v", r, want)
	}
	for src, bare := range map[string]bool{
		"{{ nodes }}": true, "{{ keys(nodes) }}": true, "{{ nodes.a }}": false,
		"{{ nodes[inputs.k].output }}": false, "{{ nodes.a.output ?? nodes }}": true,
	} {
		tp, err := Compile(src, loc)
		if err != nil {
			t.Fatal(err)
		}
		if tp.Refs().BareNodes != bare {
			t.Errorf("%s: BareNodes = %v, want %v", src, !bare, bare)
		}
	}
}

func TestValueTree(t *testing.T) {
	a, _ := NewString("{{ inputs.n }}", loc)
	b, _ := NewString("plain", loc)
	v := NewMap([]string{"a", "b", "l"}, []Value{a, b, NewList([]Value{a, Const{V: "k"}})})
	got, err := v.Eval(scope())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"a": int64(2), "b": "plain", "l": []any{int64(2), "k"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v", got)
	}
	if len(Templates(v)) != 2 {
		t.Errorf("Templates found %d, want 2", len(Templates(v)))
	}
	c := NewMap([]string{"x"}, []Value{b})
	if !c.IsConst() {
		t.Errorf("a map of constants should fold to a constant")
	}
}

func TestTruthy(t *testing.T) {
	falsy := []any{nil, false, int64(0), 0.0, 0, "", []any{}, map[string]any{}, []string{}, uint8(0)}
	truthy := []any{true, int64(1), -1.5, "0", "false", []any{nil}, map[string]any{"a": nil}, math.Inf(1), struct{}{}}
	for _, v := range falsy {
		if Truthy(v) {
			t.Errorf("Truthy(%#v) = true", v)
		}
	}
	for _, v := range truthy {
		if !Truthy(v) {
			t.Errorf("Truthy(%#v) = false", v)
		}
	}
}

func TestNormalize(t *testing.T) {
	type payload struct {
		A int    `json:"a"`
		B string `json:"b"`
	}
	tests := []struct{ in, want any }{
		{3, int64(3)},
		{uint16(7), int64(7)},
		{float32(0.5), 0.5},
		{[]int{1, 2}, []any{int64(1), int64(2)}},
		{map[string]int{"a": 1}, map[string]any{"a": int64(1)}},
		{[]any{1, []any{2}}, []any{int64(1), []any{int64(2)}}},
		{payload{A: 1, B: "x"}, map[string]any{"a": int64(1), "b": "x"}},
		{&payload{A: 2}, map[string]any{"a": int64(2), "b": ""}},
		{[]byte("hi"), "hi"},
	}
	for _, tc := range tests {
		if got := Normalize(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Normalize(%#v) = %#v, want %#v", tc.in, got, tc.want)
		}
	}
	shared := []any{int64(1)}
	if got := Normalize(shared); &got.([]any)[0] != &shared[0] {
		t.Errorf("already-normal values must be returned as they are, not copied")
	}
}
