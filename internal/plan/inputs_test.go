package plan

import (
	"errors"
	"reflect"
	"testing"
)

func TestResolveInputs(t *testing.T) {
	set, err := Load("testdata/good", Options{SkipBroken: true})
	if err != nil {
		t.Fatal(err)
	}
	tk, err := set.Task("ok/hello")
	if err != nil {
		t.Fatal(err)
	}
	defaults := map[string]any{
		"i": int64(3), "f": 1.0, "b": false, "l": []any{int64(1), "x"}, "m": map[string]any{"k": "v"},
	}
	with := func(kv ...any) map[string]any {
		out := map[string]any{"s": "x"}
		for k, v := range defaults {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i].(string)] = kv[i+1]
		}
		return out
	}
	tests := []struct {
		name    string
		given   map[string]any
		want    map[string]any
		errName string // input the error must name; "" = no error
	}{
		{"defaults", map[string]any{"s": "x"}, with(), ""},
		{"int from struct float", map[string]any{"s": "x", "i": 7.0}, with("i", int64(7)), ""},
		{"int from text", map[string]any{"s": "x", "i": "42"}, with("i", int64(42)), ""},
		{"fractional int", map[string]any{"s": "x", "i": 7.5}, nil, "i"},
		{"float from int", map[string]any{"s": "x", "f": int64(2)}, with("f", 2.0), ""},
		{"bool from text", map[string]any{"s": "x", "b": "true"}, with("b", true), ""},
		{"bad bool", map[string]any{"s": "x", "b": "maybe"}, nil, "b"},
		{"list", map[string]any{"s": "x", "l": []any{"a"}}, with("l", []any{"a"}), ""},
		{"list wants list", map[string]any{"s": "x", "l": "a"}, nil, "l"},
		{"map wants map", map[string]any{"s": "x", "m": []any{}}, nil, "m"},
		{"string wants string", map[string]any{"s": 1.0}, nil, "s"},
		{"optional given", map[string]any{"s": "x", "opt": "o"}, with("opt", "o"), ""},
		{"missing required", map[string]any{}, nil, "s"},
		{"null required", map[string]any{"s": nil}, nil, "s"},
		{"unknown", map[string]any{"s": "x", "typo": 1.0}, nil, "typo"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tk.ResolveInputs(tc.given)
			if tc.errName != "" {
				var ie *InputError
				if !errors.As(err, &ie) || ie.Name != tc.errName {
					t.Fatalf("err = %v, want InputError naming %q", err, tc.errName)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %#v\nwant %#v", got, tc.want)
			}
		})
	}
}
