package template

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"
)

// scopeNames are the top-level names a template may use.
// "trigger" is set only for a schedule's after trigger (the task that ended).
var scopeNames = []string{"inputs", "nodes", "loop", "plan", "task", "resources", "trigger"}

// compileEnv declares the scope's shape to the expr type checker so that a
// misspelt top-level name (say "input.url") is a load-time error.
var compileEnv = func() map[string]any {
	env := make(map[string]any, len(scopeNames))
	for _, n := range scopeNames {
		env[n] = map[string]any{}
	}
	return env
}()

// Location says where a template was written.
type Location struct {
	File      string
	Line, Col int
}

func (l Location) String() string { return fmt.Sprintf("%s:%d:%d", l.File, l.Line, l.Col) }

// CompileError reports a template that does not compile.
type CompileError struct {
	Loc  Location
	Expr string // the offending expression (or the whole source when unbalanced)
	Err  error
}

func (e *CompileError) Error() string {
	return fmt.Sprintf("%s: bad template %q: %v", e.Loc, e.Expr, e.Err)
}

func (e *CompileError) Unwrap() error { return e.Err }

// EvalError reports a template whose evaluation failed.
type EvalError struct {
	Loc  Location
	Expr string
	Err  error
}

func (e *EvalError) Error() string {
	return fmt.Sprintf("%s: evaluating {{ %s }}: %v", e.Loc, e.Expr, e.Err)
}

func (e *EvalError) Unwrap() error { return e.Err }

// ErrUnbalanced is wrapped by CompileError when "{{" has no matching "}}".
var ErrUnbalanced = errors.New(`"{{" without matching "}}"`)

// Template is a compiled template string. It is immutable and safe for
// concurrent use.
type Template struct {
	src   string
	loc   Location
	whole *part  // set when the source is exactly one {{ }}: the result keeps its type
	parts []part // otherwise literal text and expressions, joined as a string
	refs  Refs
}

type part struct {
	lit  string
	expr string
	prog *vm.Program // nil for literal text
}

// Refs lists what a template reads from its scope.
type Refs struct {
	Names  []string // top-level scope names used ("inputs", "nodes", ...)
	Nodes  []string // step ids used as nodes.<id> or nodes["id"]
	Inputs []string // input names used as inputs.<name>
	// BareNodes is set when "nodes" is used other than as nodes.<id> or
	// nodes[key]. The plan loader rejects that: the live nodes table must
	// not leak into action params.
	BareNodes bool
}

func (r *Refs) normalize() {
	for _, l := range []*[]string{&r.Names, &r.Nodes, &r.Inputs} {
		slices.Sort(*l)
		*l = slices.Compact(*l)
	}
}

// Has reports whether a top-level scope name is used.
func (r Refs) Has(name string) bool { return slices.Contains(r.Names, name) }

// IsTemplate reports whether s contains template syntax.
func IsTemplate(s string) bool { return strings.Contains(s, "{{") }

// Compile compiles src. A string without "{{" compiles to a constant.
func Compile(src string, loc Location) (*Template, error) {
	t := &Template{src: src, loc: loc}
	rest := src
	for rest != "" {
		i := strings.Index(rest, "{{")
		if i < 0 {
			t.parts = append(t.parts, part{lit: rest})
			break
		}
		if i > 0 {
			t.parts = append(t.parts, part{lit: rest[:i]})
		}
		rest = rest[i+2:]
		j := strings.Index(rest, "}}")
		if j < 0 {
			return nil, &CompileError{Loc: loc, Expr: src, Err: ErrUnbalanced}
		}
		code := strings.TrimSpace(rest[:j])
		rest = rest[j+2:]
		if code == "" {
			return nil, &CompileError{Loc: loc, Expr: src, Err: errors.New("empty expression")}
		}
		prog, err := expr.Compile(code, expr.Env(compileEnv))
		if err != nil {
			return nil, &CompileError{Loc: loc, Expr: code, Err: errors.New(firstLine(err.Error()))}
		}
		t.parts = append(t.parts, part{expr: code, prog: prog})
		collectRefs(prog.Node(), &t.refs)
	}
	if t.exprCount() == 1 && onlySpaceAround(t.parts) {
		for _, p := range t.parts {
			if p.prog != nil {
				t.whole = &p
			}
		}
		t.parts = nil
	}
	t.refs.normalize()
	return t, nil
}

func (t *Template) exprCount() int {
	n := 0
	for _, p := range t.parts {
		if p.prog != nil {
			n++
		}
	}
	return n
}

// onlySpaceAround reports whether every literal part is white space, so the
// source is a single {{ }} and keeps the expression's type.
func onlySpaceAround(parts []part) bool {
	for _, p := range parts {
		if p.prog == nil && strings.TrimSpace(p.lit) != "" {
			return false
		}
	}
	return true
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Source returns the template as written.
func (t *Template) Source() string { return t.src }

// Location returns where the template was written.
func (t *Template) Location() Location { return t.loc }

// Refs reports what the template reads.
func (t *Template) Refs() Refs { return t.refs }

// IsConst reports whether the template has no expressions.
func (t *Template) IsConst() bool { return t.whole == nil && t.exprCount() == 0 }

// Eval evaluates the template in scope, whose keys are scopeNames. A
// template that is exactly one {{ }} yields the expression's value
// (normalized to JSON-like types); otherwise the result is a string.
func (t *Template) Eval(scope map[string]any) (any, error) {
	if t.whole != nil {
		v, err := vm.Run(t.whole.prog, scope)
		if err != nil {
			return nil, &EvalError{Loc: t.loc, Expr: t.whole.expr, Err: errors.New(firstLine(err.Error()))}
		}
		return Normalize(v), nil
	}
	if len(t.parts) == 1 && t.parts[0].prog == nil {
		return t.parts[0].lit, nil
	}
	var b strings.Builder
	for _, p := range t.parts {
		if p.prog == nil {
			b.WriteString(p.lit)
			continue
		}
		v, err := vm.Run(p.prog, scope)
		if err != nil {
			return nil, &EvalError{Loc: t.loc, Expr: p.expr, Err: errors.New(firstLine(err.Error()))}
		}
		b.WriteString(Stringify(Normalize(v)))
	}
	return b.String(), nil
}

// collectRefs records top-level identifiers and nodes.<id> accesses.
func collectRefs(root ast.Node, r *Refs) {
	v := &refVisitor{r: r}
	ast.Walk(&root, v)
	if v.nodeIdents > v.nodeMembers {
		r.BareNodes = true
	}
}

type refVisitor struct {
	r                       *Refs
	nodeIdents, nodeMembers int
}

func (v *refVisitor) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.IdentifierNode:
		if slices.Contains(scopeNames, n.Value) {
			v.r.Names = append(v.r.Names, n.Value)
		}
		if n.Value == "nodes" {
			v.nodeIdents++
		}
	case *ast.MemberNode:
		id, ok := n.Node.(*ast.IdentifierNode)
		if !ok {
			return
		}
		if id.Value == "nodes" {
			v.nodeMembers++
		}
		s, ok := n.Property.(*ast.StringNode)
		if !ok {
			return
		}
		switch id.Value {
		case "nodes":
			v.r.Nodes = append(v.r.Nodes, s.Value)
		case "inputs":
			v.r.Inputs = append(v.r.Inputs, s.Value)
		}
	}
}
