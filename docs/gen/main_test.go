package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// docs/api.md must be what the generator makes of today's .proto files.
func TestAPIDocIsCurrent(t *testing.T) {
	want, err := render("../../proto/aura/v1")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../api.md")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatal("docs/api.md is stale: run `go run ./docs/gen` from the repository root")
	}
}

func TestRenderCoversTheProtos(t *testing.T) {
	out, err := render("../../proto/aura/v1")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"## ExecutionService", "## HookService",
		"| `Submit` | [`SubmitRequest`](#submitrequest) | [`SubmitResponse`](#submitresponse) | Submit accepts one task and returns after it is durably recorded. Besides UNAUTHENTICATED",
		"| `Stream` | [`StreamRequest`](#streamrequest) | stream [`TaskEvent`](#taskevent) |",
		"| `Intercept` | stream [`InterceptReply`](#interceptreply) | stream [`InterceptCall`](#interceptcall) |",
		"| `labels` | map<`string`, `string`> | 8 |",
		"| `after_sequence` | optional `uint64` | 2 |",
		"| `register` | [`InterceptRegistration`](#interceptregistration) | 1 | One of `msg`.",
		"| `TASK_STATUS_INTERRUPTED` | 9 | The daemon stopped or died while the task ran. |",
		"### ListPlansRequest\n\nNo fields.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("api.md lacks %q", want)
		}
	}
}

func TestParseRejectsWhatItCannotRead(t *testing.T) {
	for name, src := range map[string]string{
		"nested message": "message A {\n  message B {\n  }\n}\n",
		"unclosed":       "message A {\n  string x = 1;\n",
		"extension":      "extend Foo {\n}\n",
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "x.proto"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := render(dir); err == nil {
			t.Errorf("%s: no error; an unreadable declaration must not vanish from the docs silently", name)
		}
	}
}
