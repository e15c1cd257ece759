package actions

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
)

// ParamError reports a missing, unknown or ill-typed action parameter.
type ParamError struct {
	Action string
	Param  string
	Msg    string
}

func (e *ParamError) Error() string {
	return fmt.Sprintf("%s: param %q: %s", e.Action, e.Param, e.Msg)
}

// paramSet reads one call's parameters; every accessor returns a *ParamError
// naming the action and the parameter.
type paramSet struct {
	action string
	m      map[string]any
}

// newParams checks that m holds only the allowed names.
func newParams(action string, m map[string]any, allowed []string) (paramSet, error) {
	// Report the alphabetically first unknown name so the error is stable.
	var unknown []string
	for k := range m {
		if !slices.Contains(allowed, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return paramSet{}, &ParamError{Action: action, Param: unknown[0], Msg: "unknown parameter"}
	}
	return paramSet{action: action, m: m}, nil
}

func (p paramSet) errorf(name, format string, args ...any) error {
	return &ParamError{Action: p.action, Param: name, Msg: fmt.Sprintf(format, args...)}
}

// has reports whether name is present with a non-nil value.
func (p paramSet) has(name string) bool {
	v, ok := p.m[name]
	return ok && v != nil
}

func (p paramSet) str(name, def string) (string, error) {
	v, ok := p.m[name]
	if !ok || v == nil {
		return def, nil
	}
	s, ok := v.(string)
	if !ok {
		return "", p.errorf(name, "must be a string, got %s", typeName(v))
	}
	return s, nil
}

func (p paramSet) requiredStr(name string) (string, error) {
	if !p.has(name) {
		return "", p.errorf(name, "is required")
	}
	s, err := p.str(name, "")
	if err != nil {
		return "", err
	}
	if s == "" {
		return "", p.errorf(name, "must not be empty")
	}
	return s, nil
}

func (p paramSet) boolean(name string, def bool) (bool, error) {
	v, ok := p.m[name]
	if !ok || v == nil {
		return def, nil
	}
	b, ok := v.(bool)
	if !ok {
		return false, p.errorf(name, "must be a bool, got %s", typeName(v))
	}
	return b, nil
}

// duration accepts a Go duration string ("250ms", "2s"); negative is refused.
func (p paramSet) duration(name string, def time.Duration) (time.Duration, error) {
	v, ok := p.m[name]
	if !ok || v == nil {
		return def, nil
	}
	s, ok := v.(string)
	if !ok {
		return 0, p.errorf(name, "must be a duration string such as \"250ms\" or \"2s\", got %s", typeName(v))
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, p.errorf(name, "must be a duration string such as \"250ms\" or \"2s\": %v", err)
	}
	if d < 0 {
		return 0, p.errorf(name, "must not be negative")
	}
	return d, nil
}

// scalarList reads a list of strings, numbers or bools, formatting the
// non-strings as JSON would, so a template that yields a number can be an
// argv element.
func (p paramSet) scalarList(name, what string) ([]string, error) {
	v, ok := p.m[name]
	if !ok || v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, p.errorf(name, "must be %s, got %s", what, typeName(v))
	}
	out := make([]string, len(list))
	for i, e := range list {
		s, ok := scalarString(e)
		if !ok {
			return nil, p.errorf(name, "must be %s, item %d is %s", what, i, typeName(e))
		}
		out[i] = s
	}
	return out, nil
}

// stringMap reads a map whose values are scalars; numbers and bools are
// formatted as they would print in JSON.
func (p paramSet) stringMap(name string) (map[string]string, error) {
	v, ok := p.m[name]
	if !ok || v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, p.errorf(name, "must be a map of strings, got %s", typeName(v))
	}
	out := make(map[string]string, len(m))
	for k, e := range m {
		s, ok := scalarString(e)
		if !ok {
			return nil, p.errorf(name, "must be a map of strings, key %q is %s", k, typeName(e))
		}
		out[k] = s
	}
	return out, nil
}

// intList accepts a single integer or a list of integers.
func (p paramSet) intList(name string, def []int64) ([]int64, error) {
	v, ok := p.m[name]
	if !ok || v == nil {
		return def, nil
	}
	if n, ok := toInt(v); ok {
		return []int64{n}, nil
	}
	list, ok := v.([]any)
	if !ok || len(list) == 0 {
		return nil, p.errorf(name, "must be an integer or a non-empty list of integers")
	}
	out := make([]int64, len(list))
	for i, e := range list {
		n, ok := toInt(e)
		if !ok {
			return nil, p.errorf(name, "must be an integer or a non-empty list of integers, item %d is %s", i, typeName(e))
		}
		out[i] = n
	}
	return out, nil
}

// toInt accepts int64, int and integral float64 values.
func toInt(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case float64:
		if n != math.Trunc(n) || math.IsInf(n, 0) || n > math.MaxInt64 || n < math.MinInt64 {
			return 0, false
		}
		return int64(n), true
	}
	return 0, false
}

func scalarString(v any) (string, bool) {
	switch s := v.(type) {
	case string:
		return s, true
	case bool:
		return strconv.FormatBool(s), true
	case int64:
		return strconv.FormatInt(s, 10), true
	case int:
		return strconv.Itoa(s), true
	case float64:
		return strconv.FormatFloat(s, 'g', -1, 64), true
	}
	return "", false
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a bool"
	case int64, int, float64:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "a list"
	case map[string]any:
		return "a map"
	}
	return fmt.Sprintf("%T", v)
}
