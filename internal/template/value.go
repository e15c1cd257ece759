package template

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"time"
)

// Value is a compiled YAML value that may hold templates anywhere inside
// it (step params, returns, loop lists). It is immutable and safe for
// concurrent use.
type Value interface {
	// Eval produces the JSON-like value for scope.
	Eval(scope map[string]any) (any, error)
	// Refs reports what the value's templates read.
	Refs() Refs
	// IsConst reports whether Eval ignores scope.
	IsConst() bool
}

// Const is a Value without templates. Its value is shared between
// evaluations, so callers must not mutate what Eval returns.
type Const struct{ V any }

func (c Const) Eval(map[string]any) (any, error) { return c.V, nil }
func (c Const) Refs() Refs                       { return Refs{} }
func (c Const) IsConst() bool                    { return true }

// Eval makes *Template a Value.
var _ Value = (*Template)(nil)

// Map is a mapping whose values may hold templates.
type Map struct {
	Keys   []string
	Values []Value
}

func (m *Map) Eval(scope map[string]any) (any, error) {
	out := make(map[string]any, len(m.Keys))
	for i, k := range m.Keys {
		v, err := m.Values[i].Eval(scope)
		if err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, nil
}

func (m *Map) Refs() Refs    { return mergeRefs(m.Values) }
func (m *Map) IsConst() bool { return false }

// List is a sequence whose items may hold templates.
type List struct{ Items []Value }

func (l *List) Eval(scope map[string]any) (any, error) {
	out := make([]any, len(l.Items))
	for i, it := range l.Items {
		v, err := it.Eval(scope)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

func (l *List) Refs() Refs    { return mergeRefs(l.Items) }
func (l *List) IsConst() bool { return false }

// NewMap builds a Map, folding it into a Const when nothing inside is a
// template so that evaluating it costs nothing.
func NewMap(keys []string, values []Value) Value {
	if allConst(values) {
		m := make(map[string]any, len(keys))
		for i, k := range keys {
			m[k] = values[i].(Const).V
		}
		return Const{V: m}
	}
	return &Map{Keys: keys, Values: values}
}

// NewList builds a List, folding it into a Const when possible.
func NewList(items []Value) Value {
	if allConst(items) {
		l := make([]any, len(items))
		for i, it := range items {
			l[i] = it.(Const).V
		}
		return Const{V: l}
	}
	return &List{Items: items}
}

// NewString compiles s, returning a Const when it holds no template.
func NewString(s string, loc Location) (Value, error) {
	if !IsTemplate(s) {
		return Const{V: s}, nil
	}
	return Compile(s, loc)
}

func allConst(vs []Value) bool {
	for _, v := range vs {
		if _, ok := v.(Const); !ok {
			return false
		}
	}
	return true
}

func mergeRefs(vs []Value) Refs {
	var r Refs
	for _, v := range vs {
		vr := v.Refs()
		r.Names = append(r.Names, vr.Names...)
		r.Nodes = append(r.Nodes, vr.Nodes...)
		r.Inputs = append(r.Inputs, vr.Inputs...)
		r.BareNodes = r.BareNodes || vr.BareNodes
	}
	r.normalize()
	return r
}

// Truthy reports whether v counts as true: false, 0, "", nil and empty
// lists or maps are falsy; everything else is truthy.
func Truthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case string:
		return x != ""
	case int64:
		return x != 0
	case float64:
		return x != 0
	case int:
		return x != 0
	case []any:
		return len(x) != 0
	case map[string]any:
		return len(x) != 0
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int() != 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return rv.Uint() != 0
	case reflect.Float32, reflect.Float64:
		return rv.Float() != 0
	case reflect.Slice, reflect.Map, reflect.Array, reflect.String:
		return rv.Len() != 0
	case reflect.Pointer, reflect.Interface:
		return !rv.IsNil()
	}
	return true
}

// Normalize converts v to JSON-like types (nil, bool, int64, float64,
// string, []any, map[string]any) so results can travel through
// google.protobuf.Struct. Unknown types become their string form.
func Normalize(v any) any {
	switch x := v.(type) {
	case nil, bool, int64, float64, string:
		return v
	case int:
		return int64(x)
	case []byte:
		return string(x)
	case []any:
		if isNormal(x) {
			return x // shared values are never written to
		}
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = Normalize(e)
		}
		return out
	case map[string]any:
		if isNormal(x) {
			return x
		}
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = Normalize(e)
		}
		return out
	case time.Duration:
		return x.String()
	case time.Time:
		return x.Format(time.RFC3339Nano)
	case fmt.Stringer:
		return x.String()
	case error:
		return x.Error()
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Bool:
		return rv.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		u := rv.Uint()
		if u > math.MaxInt64 {
			return float64(u)
		}
		return int64(u)
	case reflect.Float32, reflect.Float64:
		return rv.Float()
	case reflect.String:
		return rv.String()
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			return []any{}
		}
		out := make([]any, rv.Len())
		for i := range out {
			out[i] = Normalize(rv.Index(i).Interface())
		}
		return out
	case reflect.Map:
		out := make(map[string]any, rv.Len())
		it := rv.MapRange()
		for it.Next() {
			out[fmt.Sprint(it.Key().Interface())] = Normalize(it.Value().Interface())
		}
		return out
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return nil
		}
		return Normalize(rv.Elem().Interface())
	case reflect.Struct:
		// Round-trip through JSON to honour field tags.
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Sprint(v)
		}
		var out any
		if err := json.Unmarshal(b, &out); err != nil {
			return fmt.Sprint(v)
		}
		return normalizeJSON(out)
	}
	return fmt.Sprint(v)
}

// isNormal reports whether v already holds only JSON-like types.
func isNormal(v any) bool {
	switch x := v.(type) {
	case nil, bool, int64, float64, string:
		return true
	case []any:
		for _, e := range x {
			if !isNormal(e) {
				return false
			}
		}
		return true
	case map[string]any:
		for _, e := range x {
			if !isNormal(e) {
				return false
			}
		}
		return true
	}
	return false
}

// normalizeJSON turns integral float64s from encoding/json into int64.
func normalizeJSON(v any) any {
	switch x := v.(type) {
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int64(x)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = normalizeJSON(e)
		}
	case map[string]any:
		for k, e := range x {
			x[k] = normalizeJSON(e)
		}
	}
	return v
}

// Stringify renders v for string interpolation: nil is empty, strings are
// as-is, integral floats have no fraction, lists and maps are JSON.
func Stringify(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// Templates returns every template inside v, in order.
func Templates(v Value) []*Template {
	var out []*Template
	var walk func(Value)
	walk = func(v Value) {
		switch x := v.(type) {
		case *Template:
			out = append(out, x)
		case *Map:
			for _, e := range x.Values {
				walk(e)
			}
		case *List:
			for _, e := range x.Items {
				walk(e)
			}
		}
	}
	if v != nil {
		walk(v)
	}
	return out
}
