package ui

import (
	"html"
	"html/template"
	"strings"
	"testing"
)

// rowsTemplate is how tasks.html wrote the rows with a {{range}}: the
// reference RowsHTML must match.
var rowsTemplate = template.Must(template.New("rows").Parse(`{{range .}}<tr data-id="{{.ID}}"><td><span class="badge s-{{.Status}}">{{.Status}}</span></td><td>{{.Task}}</td><td><a href="/tasks/{{.ID}}">{{.ID}}</a></td><td>{{.Created}}</td><td>{{.Took}}</td><td>{{range .Tags}}<span class="tag">{{.}}</span> {{end}}</td><td>{{range .Labels}}<span class="tag">{{.}}</span> {{end}}</td></tr>
{{end}}`))

func referenceRows(t *testing.T, rows []taskRow) string {
	t.Helper()
	var b strings.Builder
	if err := rowsTemplate.Execute(&b, rows); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestRowsHTMLIsWhatTheTemplateWrote(t *testing.T) {
	rows := []taskRow{
		{ID: "01a22ccd-7011-70ce-a049-62d352000001", Task: "demo/hello", Status: "SUCCEEDED", Created: "2026-11-30 15:04:05Z",
			Started: "2026-11-30 15:04:05Z", Took: "1.234s", Tags: []string{"device:a", "cpu"}, Labels: []string{"env=prod", "team=qa"}},
		{ID: "01a22ccd-7011-70ce-a049-62d352000002", Task: "demo/wait", Status: "RUNNING", Created: "2026-11-30 15:04:06Z"},
	}
	got := string((&taskListData{Rows: rows}).RowsHTML())
	if want := referenceRows(t, rows); got != want {
		t.Fatalf("rows differ from the template's\n got: %s\nwant: %s", got, want)
	}
	if got := (&taskListData{}).RowsHTML(); got != "" {
		t.Fatalf("no rows wrote %q", got)
	}
}

func TestRowsHTMLEscapesEveryValue(t *testing.T) {
	evil := []string{`<script>alert(1)</script>`, `"><img src=x onerror=alert(1)>`, `' onmouseover='alert(1)`, "a&b\x00c"}
	for _, e := range evil {
		r := taskRow{ID: e, Task: e, Status: e, Created: e, Took: e, Tags: []string{e}, Labels: []string{"k=" + e}}
		got := string((&taskListData{Rows: []taskRow{r}}).RowsHTML())
		for _, raw := range []string{"<script", "<img", "' on", "\x00"} {
			if strings.Contains(got, raw) {
				t.Errorf("value %q: the rows hold %q unescaped:\n%s", e, raw, got)
			}
		}
		// Read back as a browser would, each field is the value as text.
		text := html.UnescapeString(got)
		if n := strings.Count(text, strings.ReplaceAll(e, "\x00", "\uFFFD")); n < 7 {
			t.Errorf("value %q: found %d times as text, want 7 (id twice, task, status twice, created, took, tag, label):\n%s", e, n, got)
		}
		// The template escapes an attribute value and text alike; the
		// link must still lead to this task.
		want := referenceRows(t, []taskRow{r})
		if strings.Count(got, "<") != strings.Count(want, "<") || strings.Count(got, `"`) != strings.Count(want, `"`) {
			t.Errorf("value %q: the markup differs from the template's\n got: %s\nwant: %s", e, got, want)
		}
	}
}
