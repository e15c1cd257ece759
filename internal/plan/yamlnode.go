package plan

import (
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/aura-dev/aura/internal/template"
)

// yamlFile reads one YAML file's AST and collects problems against it.
type yamlFile struct {
	path     string
	problems *[]Problem
	anchors  map[string]ast.Node
}

// parseYAML parses path and returns the body of its single document, or
// nil (with a problem recorded when the file is broken).
func parseYAML(path string, problems *[]Problem) (*yamlFile, ast.Node) {
	f := &yamlFile{path: path, problems: problems, anchors: map[string]ast.Node{}}
	data, err := os.ReadFile(path)
	if err != nil {
		f.add(1, 1, "cannot read file: %v", err)
		return f, nil
	}
	file, err := parser.ParseBytes(data, 0)
	if err != nil {
		var ye yaml.Error
		if errors.As(err, &ye) && ye.GetToken() != nil {
			p := ye.GetToken().Position
			f.add(p.Line, p.Column, "YAML syntax: %s", ye.GetMessage())
		} else {
			f.add(1, 1, "YAML syntax: %v", err)
		}
		return f, nil
	}
	var body ast.Node
	for i, d := range file.Docs {
		if d.Body == nil {
			continue
		}
		if i > 0 && body != nil {
			f.addAt(d.Body, "only one YAML document is allowed per file")
			return f, nil
		}
		body = d.Body
	}
	if body != nil {
		ast.Walk(anchorCollector(f.anchors), body)
	}
	return f, body
}

type anchorCollector map[string]ast.Node

func (a anchorCollector) Visit(n ast.Node) ast.Visitor {
	if an, ok := n.(*ast.AnchorNode); ok && an.Name != nil {
		a[an.Name.GetToken().Value] = an.Value
	}
	return a
}

func (f *yamlFile) add(line, col int, format string, args ...any) {
	*f.problems = append(*f.problems, Problem{File: f.path, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)})
}

// addAt records a problem at n's position (the first key of a mapping).
func (f *yamlFile) addAt(n ast.Node, format string, args ...any) {
	line, col := f.pos(n)
	f.add(line, col, format, args...)
}

func (f *yamlFile) pos(n ast.Node) (int, int) {
	n = f.resolve(n)
	if m, ok := n.(*ast.MappingNode); ok && len(m.Values) > 0 && !m.IsFlowStyle {
		return f.pos(m.Values[0].Key)
	}
	if n == nil || n.GetToken() == nil {
		return 1, 1
	}
	p := n.GetToken().Position
	return p.Line, p.Column
}

func (f *yamlFile) loc(n ast.Node) template.Location {
	line, col := f.pos(n)
	return template.Location{File: f.path, Line: line, Col: col}
}

// resolve strips anchors and tags and follows aliases.
func (f *yamlFile) resolve(n ast.Node) ast.Node {
	for range 64 { // bounded: alias chains cannot loop forever
		switch x := n.(type) {
		case *ast.AnchorNode:
			n = x.Value
		case *ast.TagNode:
			n = x.Value
		case *ast.AliasNode:
			target, ok := f.anchors[x.Value.GetToken().Value]
			if !ok {
				return n
			}
			n = target
		default:
			return n
		}
	}
	return n
}

func isNull(n ast.Node) bool {
	_, ok := n.(*ast.NullNode)
	return n == nil || ok
}

// keyName returns a mapping key as a string.
func keyName(mv *ast.MappingValueNode) string {
	if s, ok := mv.Key.(*ast.StringNode); ok {
		return s.Value
	}
	return mv.Key.GetToken().Value
}

// entries returns a mapping's key/value pairs (merge keys expanded), or
// reports that n must be a mapping.
func (f *yamlFile) entries(n ast.Node, what string) ([]*ast.MappingValueNode, bool) {
	n = f.resolve(n)
	m, ok := n.(*ast.MappingNode)
	if !ok {
		f.addAt(n, "%s must be a mapping", what)
		return nil, false
	}
	var out []*ast.MappingValueNode
	for _, mv := range m.Values {
		if keyName(mv) == "<<" {
			merged, ok := f.entries(mv.Value, "merge value")
			if !ok {
				continue
			}
			for _, e := range merged {
				if !slices.ContainsFunc(m.Values, func(o *ast.MappingValueNode) bool { return keyName(o) == keyName(e) }) {
					out = append(out, e)
				}
			}
			continue
		}
		out = append(out, mv)
	}
	return out, true
}

// fields reads a mapping with a fixed set of keys, reporting unknown ones.
func (f *yamlFile) fields(n ast.Node, what string, allowed ...string) (map[string]*ast.MappingValueNode, bool) {
	es, ok := f.entries(n, what)
	if !ok {
		return nil, false
	}
	out := make(map[string]*ast.MappingValueNode, len(es))
	for _, mv := range es {
		k := keyName(mv)
		if !slices.Contains(allowed, k) {
			if hint, ok := keyHints[k]; ok && what == "step" {
				f.addAt(mv.Key, "%s", hint)
				continue
			}
			f.addAt(mv.Key, "unknown key %q in %s (allowed: %s)", k, what, strings.Join(allowed, ", "))
			continue
		}
		out[k] = mv
	}
	return out, true
}

// keyHints explain keys that are valid in the other step form.
var keyHints = map[string]string{
	"depends_on": "depends_on needs the steps written as a mapping (a graph); a list of steps runs in order",
}

func (f *yamlFile) str(n ast.Node, what string) (string, bool) {
	switch x := f.resolve(n).(type) {
	case *ast.StringNode:
		return x.Value, true
	case *ast.LiteralNode:
		return x.Value.Value, true
	}
	f.addAt(n, "%s must be a string", what)
	return "", false
}

func (f *yamlFile) integer(n ast.Node, what string) (int64, bool) {
	if x, ok := f.resolve(n).(*ast.IntegerNode); ok {
		switch v := x.Value.(type) {
		case int64:
			return v, true
		case uint64:
			if v <= math.MaxInt64 {
				return int64(v), true
			}
		}
	}
	f.addAt(n, "%s must be an integer", what)
	return 0, false
}

func (f *yamlFile) number(n ast.Node, what string) (float64, bool) {
	switch x := f.resolve(n).(type) {
	case *ast.IntegerNode:
		v, _ := f.integer(x, what)
		return float64(v), true
	case *ast.FloatNode:
		return x.Value, true
	}
	f.addAt(n, "%s must be a number", what)
	return 0, false
}

func (f *yamlFile) boolean(n ast.Node, what string) (bool, bool) {
	if x, ok := f.resolve(n).(*ast.BoolNode); ok {
		return x.Value, true
	}
	f.addAt(n, "%s must be true or false", what)
	return false, false
}

// duration reads a Go duration string such as "500ms" or "1m30s".
func (f *yamlFile) duration(n ast.Node, what string) (time.Duration, bool) {
	s, ok := f.str(n, what)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		f.addAt(n, "%s: bad duration %q (want e.g. 500ms, 10s, 5m)", what, s)
		return 0, false
	}
	if d < 0 {
		f.addAt(n, "%s must not be negative", what)
		return 0, false
	}
	return d, true
}

// stringList reads a list of strings.
func (f *yamlFile) stringList(n ast.Node, what string) ([]string, bool) {
	seq, ok := f.resolve(n).(*ast.SequenceNode)
	if !ok {
		f.addAt(n, "%s must be a list of strings", what)
		return nil, false
	}
	out := make([]string, 0, len(seq.Values))
	good := true
	for _, it := range seq.Values {
		s, ok := f.str(it, what+" item")
		good = good && ok
		out = append(out, s)
	}
	return out, good
}

// plain converts n to a JSON-like Go value (no templates).
func (f *yamlFile) plain(n ast.Node) any {
	switch x := f.resolve(n).(type) {
	case nil, *ast.NullNode:
		return nil
	case *ast.StringNode:
		return x.Value
	case *ast.LiteralNode:
		return x.Value.Value
	case *ast.BoolNode:
		return x.Value
	case *ast.IntegerNode:
		switch v := x.Value.(type) {
		case int64:
			return v
		case uint64:
			if v <= math.MaxInt64 {
				return int64(v)
			}
			return float64(v)
		}
		return nil
	case *ast.FloatNode:
		return x.Value
	case *ast.InfinityNode:
		return x.Value
	case *ast.NanNode:
		return math.NaN()
	case *ast.SequenceNode:
		out := make([]any, len(x.Values))
		for i, it := range x.Values {
			out[i] = f.plain(it)
		}
		return out
	case *ast.MappingNode:
		es, _ := f.entries(x, "value")
		out := make(map[string]any, len(es))
		for _, mv := range es {
			out[keyName(mv)] = f.plain(mv.Value)
		}
		return out
	case *ast.AliasNode:
		f.addAt(x, "unknown alias %q", x.Value.GetToken().Value)
		return nil
	default:
		f.addAt(n, "unsupported YAML value")
		return nil
	}
}

// value converts n to a template.Value, compiling every string that
// holds {{ }} and reporting bad templates.
func (f *yamlFile) value(n ast.Node) template.Value {
	switch x := f.resolve(n).(type) {
	case *ast.StringNode:
		return f.tmpl(x, x.Value)
	case *ast.LiteralNode:
		return f.tmpl(x, x.Value.Value)
	case *ast.SequenceNode:
		items := make([]template.Value, len(x.Values))
		for i, it := range x.Values {
			items[i] = f.value(it)
		}
		return template.NewList(items)
	case *ast.MappingNode:
		es, _ := f.entries(x, "value")
		keys := make([]string, len(es))
		vals := make([]template.Value, len(es))
		for i, mv := range es {
			keys[i] = keyName(mv)
			vals[i] = f.value(mv.Value)
		}
		return template.NewMap(keys, vals)
	default:
		return template.Const{V: f.plain(n)}
	}
}

func (f *yamlFile) tmpl(n ast.Node, s string) template.Value {
	v, err := template.NewString(s, f.loc(n))
	if err != nil {
		var ce *template.CompileError
		if errors.As(err, &ce) {
			f.addAt(n, "bad template %q: %v", ce.Expr, ce.Err)
		} else {
			f.addAt(n, "bad template: %v", err)
		}
		return template.Const{V: s}
	}
	return v
}
