package ui

import (
	"html/template"
	"net/url"
	"strings"
)

// RowsHTML is the task list's table rows. They are written here rather
// than by a {{range}} in tasks.html because html/template calls its
// escapers through reflection once per action: about fifteen actions a
// row cost more than the ListTasks call behind the page. Every value is
// escaped all the same, with html/template's own HTMLEscapeString (text
// and double-quoted attribute values alike) and, in the task link, a
// path-escaped id; the markup is what the {{range}} wrote.
func (d *taskListData) RowsHTML() template.HTML {
	var b strings.Builder
	b.Grow(len(d.Rows) * 480)
	for _, r := range d.Rows {
		writeTaskRow(&b, r)
	}
	return template.HTML(b.String())
}

func writeTaskRow(b *strings.Builder, r taskRow) {
	esc := func(s string) { b.WriteString(template.HTMLEscapeString(s)) }
	b.WriteString(`<tr data-id="`)
	esc(r.ID)
	b.WriteString(`"><td><span class="badge s-`)
	esc(r.Status)
	b.WriteString(`">`)
	esc(r.Status)
	b.WriteString(`</span></td><td>`)
	esc(r.Task)
	b.WriteString(`</td><td><a href="/tasks/`)
	esc(url.PathEscape(r.ID))
	b.WriteString(`">`)
	esc(r.ID)
	b.WriteString(`</a></td><td>`)
	esc(r.Created)
	b.WriteString(`</td><td>`)
	esc(r.Took)
	b.WriteString(`</td><td>`)
	for _, t := range r.Tags {
		b.WriteString(`<span class="tag">`)
		esc(t)
		b.WriteString(`</span> `)
	}
	b.WriteString(`</td><td>`)
	for _, l := range r.Labels {
		b.WriteString(`<span class="tag">`)
		esc(l)
		b.WriteString(`</span> `)
	}
	b.WriteString("</td></tr>\n")
}

// option is one choice of a filter's <select>.
type option struct {
	Value, Label string
	Selected     bool
}

// StatusOptions are the status filter's choices, the chosen one selected:
// worked out here once rather than with three calls of lower a status in
// the template.
func (d *taskListData) StatusOptions() []option {
	out := make([]option, 0, len(d.Statuses))
	for _, st := range d.Statuses {
		v := strings.ToLower(st)
		out = append(out, option{Value: v, Label: st, Selected: v == strings.ToLower(d.Status)})
	}
	return out
}

// PlanOptions are the plan filter's choices, the chosen one selected.
func (d *taskListData) PlanOptions() []option {
	out := make([]option, 0, len(d.Plans))
	for _, p := range d.Plans {
		out = append(out, option{Label: p, Selected: p == d.Plan})
	}
	return out
}
