package plan

import (
	"errors"
	"slices"

	"github.com/goccy/go-yaml/ast"

	"github.com/aura-dev/aura/internal/template"
)

// resourceTags reads meta.resource_tags. A tag written with {{ }} is a
// template over the task's inputs, rendered at submit: here it must
// compile and read nothing else. A literal tag is checked now with
// Options.ResourceTagValid (the daemon's declared pools), so a tag that
// would fail every submission fails plan check instead.
func (l *taskLoader) resourceTags(n ast.Node) {
	f, m := l.f, &l.t.Meta
	tags, ok := f.stringList(n, "meta.resource_tags")
	if !ok {
		return
	}
	seq, _ := f.resolve(n).(*ast.SequenceNode)
	m.ResourceTags = tags
	for i, tag := range tags {
		item := seq.Values[i]
		if !template.IsTemplate(tag) {
			if l.tagValid != nil {
				if err := l.tagValid(tag); err != nil {
					f.addAt(item, "meta.resource_tags: %v", err)
				}
			}
			continue
		}
		tmpl, err := template.Compile(tag, f.loc(item))
		if err != nil {
			var ce *template.CompileError
			if errors.As(err, &ce) {
				f.addAt(item, "meta.resource_tags: bad template %q: %v", ce.Expr, ce.Err)
			} else {
				f.addAt(item, "meta.resource_tags: bad template: %v", err)
			}
			continue
		}
		if refs := tmpl.Refs(); len(refs.Names) > 1 || (len(refs.Names) == 1 && refs.Names[0] != "inputs") {
			f.addAt(item, "meta.resource_tags: %q may read only inputs (tags are rendered at submit, before anything runs)", tag)
			continue
		}
		if m.ResourceTagTemplates == nil {
			m.ResourceTagTemplates = make([]*template.Template, len(tags))
		}
		m.ResourceTagTemplates[i] = tmpl
	}
}

// checkTagInputs reports templated tags that read an input the task does
// not declare (run after the inputs are read).
func (l *taskLoader) checkTagInputs() {
	for _, tmpl := range l.t.Meta.ResourceTagTemplates {
		if tmpl == nil {
			continue
		}
		for _, name := range tmpl.Refs().Inputs {
			if !slices.ContainsFunc(l.t.Inputs, func(in Input) bool { return in.Name == name }) {
				loc := tmpl.Location()
				l.f.add(loc.Line, loc.Col, "meta.resource_tags: %q reads inputs.%s, which the task does not declare", tmpl.Source(), name)
			}
		}
	}
}
