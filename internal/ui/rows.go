package ui

import (
	"html/template"
	"net/url"
	"strconv"
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

// StatusOptions is the status filter's choices, the chosen one selected.
func (d *taskListData) StatusOptions() template.HTML {
	out := make([]option, 0, len(d.Statuses))
	for _, st := range d.Statuses {
		v := strings.ToLower(st)
		out = append(out, option{Value: v, Label: st, Selected: v == strings.ToLower(d.Status)})
	}
	return optionsHTML(out)
}

// PlanOptions is the plan filter's choices, the chosen one selected.
func (d *taskListData) PlanOptions() template.HTML {
	out := make([]option, 0, len(d.Plans))
	for _, p := range d.Plans {
		out = append(out, option{Value: p, Label: p, Selected: p == d.Plan})
	}
	return optionsHTML(out)
}

// NodeOptions is the node filter's choices: the cluster's live nodes,
// and the chosen one even when it has left (its tasks stay).
func (d *taskListData) NodeOptions() template.HTML {
	out := make([]option, 0, len(d.Nodes)+1)
	found := d.Node == ""
	for _, n := range d.Nodes {
		out = append(out, option{Value: n, Label: n, Selected: n == d.Node})
		found = found || n == d.Node
	}
	if !found {
		out = append(out, option{Value: d.Node, Label: d.Node + " (not live)", Selected: true})
	}
	return optionsHTML(out)
}

// optionsHTML writes a <select>'s options, escaped as the template would,
// for the reason RowsHTML gives: a {{range}} of three actions an option
// cost more than the rest of the form.
func optionsHTML(opts []option) template.HTML {
	var b strings.Builder
	for _, o := range opts {
		b.WriteString(`<option value="`)
		b.WriteString(template.HTMLEscapeString(o.Value))
		b.WriteString(`"`)
		if o.Selected {
			b.WriteString(` selected`)
		}
		b.WriteString(`>`)
		b.WriteString(template.HTMLEscapeString(o.Label))
		b.WriteString(`</option>`)
	}
	return template.HTML(b.String())
}

// ListURL is the task list with this page's filters, from its newest
// task: the pager's "Newest" link.
func (d *taskListData) ListURL() string { return d.pageURL("", false) }

// OlderURL continues the list (or, filtered, the search) from d.Next.
func (d *taskListData) OlderURL() string { return d.pageURL(d.Next, d.Filtered) }

func (d *taskListData) pageURL(page string, scanned bool) string {
	v := url.Values{}
	for _, f := range [...]struct{ k, v string }{{"status", d.Status}, {"plan", d.Plan}, {"node", d.Node}, {"task", d.Task},
		{"label", d.Label}, {"tag", d.Tag}, {"q", d.Q}, {"page", page}} {
		if f.v != "" {
			v.Set(f.k, f.v)
		}
	}
	if scanned {
		v.Set("scanned", strconv.Itoa(d.ScannedTotal))
	}
	return "/tasks?" + v.Encode()
}
