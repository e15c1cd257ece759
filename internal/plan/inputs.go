package plan

import (
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/aura-dev/aura/internal/template"
)

// InputError describes one bad task input.
type InputError struct {
	Name string // the input's name
	Msg  string
}

func (e *InputError) Error() string { return fmt.Sprintf("input %q: %s", e.Name, e.Msg) }

// ResolveInputs checks given (as decoded from google.protobuf.Struct)
// against the task's inputs, converts values to the declared types and
// applies defaults. Unknown and missing required inputs are errors; all
// errors are *InputError naming the input.
func (t *Task) ResolveInputs(given map[string]any) (map[string]any, error) {
	out := make(map[string]any, len(t.Inputs))
	for name := range given {
		if !t.hasInput(name) {
			return nil, &InputError{Name: name, Msg: fmt.Sprintf("unknown input (task %s takes %s)", t.ID, t.inputNames())}
		}
	}
	for _, in := range t.Inputs {
		v, ok := given[in.Name]
		if !ok || v == nil {
			switch {
			case in.HasDefault:
				out[in.Name] = in.Default
			case in.Required:
				return nil, &InputError{Name: in.Name, Msg: "required input is missing"}
			}
			continue
		}
		cv, err := coerce(in.Type, v, true)
		if err != nil {
			return nil, &InputError{Name: in.Name, Msg: err.Error()}
		}
		out[in.Name] = cv
	}
	return out, nil
}

func (t *Task) hasInput(name string) bool {
	for _, in := range t.Inputs {
		if in.Name == name {
			return true
		}
	}
	return false
}

func (t *Task) inputNames() string {
	if len(t.Inputs) == 0 {
		return "no inputs"
	}
	s := ""
	for i, in := range t.Inputs {
		if i > 0 {
			s += ", "
		}
		s += in.Name
	}
	return s
}

// coerce converts v to the input type typ. With fromText, strings are also
// parsed for int, float and bool (command-line inputs arrive as text).
func coerce(typ string, v any, fromText bool) (any, error) {
	v = template.Normalize(v)
	s, isString := v.(string)
	switch typ {
	case "string":
		if isString {
			return s, nil
		}
	case "int":
		switch x := v.(type) {
		case int64:
			return x, nil
		case float64:
			if x == math.Trunc(x) && math.Abs(x) <= 1<<53 {
				return int64(x), nil
			}
			return nil, fmt.Errorf("want an integer, got %v", x)
		}
		if isString && fromText {
			if n, err := strconv.ParseInt(s, 10, 64); err == nil {
				return n, nil
			}
		}
	case "float":
		switch x := v.(type) {
		case int64:
			return float64(x), nil
		case float64:
			return x, nil
		}
		if isString && fromText {
			if f, err := strconv.ParseFloat(s, 64); err == nil {
				return f, nil
			}
		}
	case "bool":
		if b, ok := v.(bool); ok {
			return b, nil
		}
		if isString && fromText {
			if b, err := strconv.ParseBool(s); err == nil {
				return b, nil
			}
		}
	case "list":
		if l, ok := v.([]any); ok {
			return l, nil
		}
	case "map":
		if m, ok := v.(map[string]any); ok {
			return m, nil
		}
	default:
		return nil, errors.New("unknown type " + typ)
	}
	return nil, fmt.Errorf("want %s, got %s", typ, typeName(v))
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case bool:
		return "bool"
	case int64:
		return "int"
	case float64:
		return "float"
	case []any:
		return "list"
	case map[string]any:
		return "map"
	}
	return fmt.Sprintf("%T", v)
}
