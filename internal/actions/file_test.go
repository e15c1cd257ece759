package actions

import (
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

func TestFileWriteReadRoundTrip(t *testing.T) {
	tp := newTestPlan(t)
	out := mustRun(t, tp.env, "file.write", map[string]any{"path": "out/reports/day.txt", "content": "hello"})
	if !reflect.DeepEqual(out, map[string]any{"path": "out/reports/day.txt", "size": int64(5)}) {
		t.Fatalf("write output = %#v", out)
	}
	out = mustRun(t, tp.env, "file.write", map[string]any{"path": "out/reports/day.txt", "content": " world", "append": true})
	if out.(map[string]any)["size"] != int64(11) {
		t.Fatalf("append output = %#v", out)
	}
	if b, err := os.ReadFile(filepath.Join(tp.work, "out/reports/day.txt")); err != nil || string(b) != "hello world" {
		t.Fatalf("file on disk = %q, %v", b, err)
	}
	out = mustRun(t, tp.env, "file.read", map[string]any{"path": "./out/../out/reports/day.txt"})
	if !reflect.DeepEqual(out, map[string]any{"content": "hello world", "size": int64(11)}) {
		t.Fatalf("read output = %#v", out)
	}
	// Overwrite truncates.
	mustRun(t, tp.env, "file.write", map[string]any{"path": "out/reports/day.txt", "content": "x"})
	out = mustRun(t, tp.env, "file.read", map[string]any{"path": "out/reports/day.txt"})
	if out.(map[string]any)["content"] != "x" {
		t.Fatalf("after overwrite: %#v", out)
	}
}

func TestFileBinaryContentNeedsBase64(t *testing.T) {
	tp := newTestPlan(t)
	raw := []byte{0xff, 0x00, 0xfe}
	enc := base64.StdEncoding.EncodeToString(raw)
	mustRun(t, tp.env, "file.write", map[string]any{"path": "blob.bin", "content": enc, "encoding": "base64"})
	if b, _ := os.ReadFile(filepath.Join(tp.work, "blob.bin")); !reflect.DeepEqual(b, raw) {
		t.Fatalf("written bytes = %v", b)
	}
	_, err := run(t, tp.env, "file.read", map[string]any{"path": "blob.bin"})
	if err == nil || !strings.Contains(err.Error(), "base64") {
		t.Fatalf("reading binary as text: %v", err)
	}
	out := mustRun(t, tp.env, "file.read", map[string]any{"path": "blob.bin", "encoding": "base64"})
	if out.(map[string]any)["content"] != enc || out.(map[string]any)["size"] != int64(3) {
		t.Fatalf("base64 read = %#v", out)
	}
}

func TestFileReadErrors(t *testing.T) {
	tp := newTestPlan(t)
	_, err := run(t, tp.env, "file.read", map[string]any{"path": "missing.txt"})
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), `"missing.txt"`) {
		t.Fatalf("missing file: %v", err)
	}
	_, err = run(t, tp.env, "file.read", map[string]any{"path": "."})
	if err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("reading a directory: %v", err)
	}
	_, err = run(t, tp.env, "file.read", map[string]any{})
	asParamError(t, err, "path")
	_, err = run(t, tp.env, "file.read", map[string]any{"path": "a", "encoding": "utf-16"})
	asParamError(t, err, "encoding")
}

func TestFileExists(t *testing.T) {
	tp := newTestPlan(t)
	writeFile(t, filepath.Join(tp.dir, "here.txt"), "x")
	for path, want := range map[string]bool{"here.txt": true, ".": true, "nothere.txt": false, "here.txt/sub": false} {
		if got := mustRun(t, tp.env, "file.exists", map[string]any{"path": path}); got != want {
			t.Errorf("exists %q = %v, want %v", path, got, want)
		}
	}
}

func TestFileList(t *testing.T) {
	tp := newTestPlan(t)
	for _, n := range []string{"b.log", "a.log", "c.txt", "sub/d.log"} {
		writeFile(t, filepath.Join(tp.dir, "logs", n), "x")
	}
	out := mustRun(t, tp.env, "file.list", map[string]any{"path": "logs"})
	if want := []any{"a.log", "b.log", "c.txt", "sub"}; !reflect.DeepEqual(out, want) {
		t.Fatalf("list = %#v, want %#v", out, want)
	}
	out = mustRun(t, tp.env, "file.list", map[string]any{"path": "logs", "glob": "*.log"})
	if want := []any{"a.log", "b.log"}; !reflect.DeepEqual(out, want) {
		t.Fatalf("glob list = %#v, want %#v", out, want)
	}
	out = mustRun(t, tp.env, "file.list", map[string]any{})
	if want := []any{"logs"}; !reflect.DeepEqual(out, want) {
		t.Fatalf("plan dir list = %#v", out)
	}
	_, err := run(t, tp.env, "file.list", map[string]any{"glob": "[x"})
	asParamError(t, err, "glob")
	if _, err := run(t, tp.env, "file.list", map[string]any{"path": "nope"}); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("listing a missing dir: %v", err)
	}
}

func TestFileDelete(t *testing.T) {
	tp := newTestPlan(t)
	writeFile(t, filepath.Join(tp.work, "tmp/a.txt"), "x")
	out := mustRun(t, tp.env, "file.delete", map[string]any{"path": "tmp/a.txt"})
	if !reflect.DeepEqual(out, map[string]any{"deleted": true}) {
		t.Fatalf("delete = %#v", out)
	}
	if _, err := os.Stat(filepath.Join(tp.work, "tmp/a.txt")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("file still there: %v", err)
	}
	out = mustRun(t, tp.env, "file.delete", map[string]any{"path": "tmp/a.txt"})
	if !reflect.DeepEqual(out, map[string]any{"deleted": false}) {
		t.Fatalf("second delete = %#v", out)
	}
	writeFile(t, filepath.Join(tp.work, "tree/x/y.txt"), "x")
	if _, err := run(t, tp.env, "file.delete", map[string]any{"path": "tree"}); err == nil {
		t.Fatal("non-recursive delete of a non-empty directory succeeded")
	}
	mustRun(t, tp.env, "file.delete", map[string]any{"path": "tree", "recursive": true})
	if _, err := os.Stat(filepath.Join(tp.work, "tree")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("tree still there: %v", err)
	}
}

// The workspace itself is never a delete (or write) target, however it is
// spelled.
func TestFileDeleteRefusesTheWorkspace(t *testing.T) {
	tp := newTestPlan(t)
	writeFile(t, filepath.Join(tp.work, "keep.txt"), "x")
	for _, p := range []string{".", "", "./", "sub/..", "a/b/../.."} {
		_, err := run(t, tp.env, "file.delete", map[string]any{"path": p, "recursive": true})
		if !errors.Is(err, ErrPlanDirTarget) {
			t.Errorf("delete %q: err = %v, want ErrPlanDirTarget", p, err)
		}
	}
	_, err := run(t, tp.env, "file.write", map[string]any{"path": ".", "content": "x"})
	if !errors.Is(err, ErrPlanDirTarget) {
		t.Errorf("write '.': %v", err)
	}
	if _, err := os.Stat(filepath.Join(tp.work, "keep.txt")); err != nil {
		t.Fatalf("workspace content damaged: %v", err)
	}
}

// escapeCases are paths that must all be refused with ErrOutsidePlan, built
// on real files and symlinks: the plan is plans/foo, plans/foo_x is a
// sibling sharing its name prefix, and the same symlinks are planted in the
// plan's source and in its workspace (data/work/foo, next to data/work/foo_x).
func escapeCases(t *testing.T, tp *testPlan) map[string]string {
	t.Helper()
	if err := os.MkdirAll(tp.work, 0o755); err != nil {
		t.Fatal(err)
	}
	mustSymlink := func(target, link string) {
		for _, dir := range []string{tp.dir, tp.work} {
			if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
				t.Fatal(err)
			}
		}
	}
	mustSymlink(filepath.Join(tp.sibling, "secret.txt"), "abs_link")
	mustSymlink("../foo_x/secret.txt", "rel_link")
	mustSymlink("../foo_x", "dir_link")
	mustSymlink("/etc", "etc_link")
	return map[string]string{
		"dot-dot":              "../../outside.txt",
		"dot-dot inside path":  "sub/../../foo_x/secret.txt",
		"sibling prefix":       "../foo_x/secret.txt",
		"absolute":             filepath.Join(tp.sibling, "secret.txt"),
		"absolute /etc/passwd": "/etc/passwd",
		"absolute symlink out": "abs_link",
		"relative symlink out": "rel_link",
		"through dir symlink":  "dir_link/secret.txt",
		"symlink to /etc":      "etc_link/passwd",
	}
}

func TestSandboxRefusesEscapes(t *testing.T) {
	tp := newTestPlan(t)
	cases := escapeCases(t, tp)
	type call struct {
		action string
		params func(p string) map[string]any
	}
	calls := []call{
		{"file.read", func(p string) map[string]any { return map[string]any{"path": p} }},
		{"file.write", func(p string) map[string]any { return map[string]any{"path": p, "content": "pwned"} }},
		{"file.write", func(p string) map[string]any { return map[string]any{"path": p + "/new.txt", "content": "pwned"} }},
		{"file.exists", func(p string) map[string]any { return map[string]any{"path": p} }},
		{"file.list", func(p string) map[string]any { return map[string]any{"path": p} }},
		{"file.delete", func(p string) map[string]any { return map[string]any{"path": p + "/x"} }},
		{"hash", func(p string) map[string]any { return map[string]any{"file": p} }},
	}
	for name, path := range cases {
		for _, c := range calls {
			params := c.params(path)
			_, err := run(t, tp.env, c.action, params)
			if !errors.Is(err, ErrOutsidePlan) {
				t.Errorf("%s: %s %v: err = %v, want ErrOutsidePlan", name, c.action, params, err)
				continue
			}
			if !strings.HasPrefix(err.Error(), c.action+": path ") || !strings.Contains(err.Error(), ErrOutsidePlan.Error()) {
				t.Errorf("%s: unclear message %q", name, err)
			}
		}
	}
	// Nothing outside changed.
	for _, sib := range []string{tp.sibling, tp.workSibling} {
		if b, _ := os.ReadFile(filepath.Join(sib, "secret.txt")); string(b) != "sibling secret" {
			t.Fatalf("sibling secret changed: %q", b)
		}
		if entries, _ := os.ReadDir(sib); len(entries) != 1 {
			t.Fatalf("files created in the sibling %s: %v", sib, entries)
		}
	}
}

func TestSandboxMessage(t *testing.T) {
	tp := newTestPlan(t)
	_, err := run(t, tp.env, "file.read", map[string]any{"path": "../x"})
	if got, want := err.Error(), `file.read: path "../x": escapes the plan's directory and workspace`; got != want {
		t.Fatalf("message = %q, want %q", got, want)
	}
}

// A FIFO planted in the plan's source or workspace is refused instead of blocking the
// step forever.
func TestFileRefusesFIFOs(t *testing.T) {
	tp := newTestPlan(t)
	if err := os.MkdirAll(tp.work, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{tp.dir, tp.work} {
		if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for action, params := range map[string]map[string]any{
		"file.read":  {"path": "fifo"},
		"hash":       {"file": "fifo"},
		"file.write": {"path": "fifo", "content": "x"},
	} {
		if _, err := run(t, tp.env, action, params); err == nil {
			t.Errorf("%s on a FIFO succeeded", action)
		}
	}
}

// Deleting a symlink that points outside removes the link, never its target.
func TestFileDeleteSymlinkKeepsTarget(t *testing.T) {
	tp := newTestPlan(t)
	if err := os.MkdirAll(tp.work, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../foo_x/secret.txt", filepath.Join(tp.work, "link")); err != nil {
		t.Fatal(err)
	}
	mustRun(t, tp.env, "file.delete", map[string]any{"path": "link"})
	if _, err := os.Lstat(filepath.Join(tp.work, "link")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("link still there: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(tp.workSibling, "secret.txt")); string(b) != "sibling secret" {
		t.Fatal("symlink target was touched")
	}
}

// Symlinks that stay inside the plan work normally.
func TestSandboxAllowsInternalSymlinks(t *testing.T) {
	tp := newTestPlan(t)
	writeFile(t, filepath.Join(tp.dir, "data/real.txt"), "inside")
	if err := os.Symlink("data/real.txt", filepath.Join(tp.dir, "alias.txt")); err != nil {
		t.Fatal(err)
	}
	out := mustRun(t, tp.env, "file.read", map[string]any{"path": "alias.txt"})
	if out.(map[string]any)["content"] != "inside" {
		t.Fatalf("read through internal symlink = %#v", out)
	}
}

// With no Root in the Env, actions open their own on PlanDir and confine to it.
func TestSandboxWithoutCallerRoot(t *testing.T) {
	tp := newTestPlan(t)
	env := &Env{PlanDir: tp.dir, WorkDir: tp.work}
	mustRun(t, env, "file.write", map[string]any{"path": "a.txt", "content": "x"})
	if got := mustRun(t, env, "file.exists", map[string]any{"path": "a.txt"}); got != true {
		t.Fatal("file written without a caller root not found")
	}
	if _, err := run(t, env, "file.read", map[string]any{"path": "../foo_x/secret.txt"}); !errors.Is(err, ErrOutsidePlan) {
		t.Fatalf("escape without caller root: %v", err)
	}
	if _, err := run(t, &Env{}, "file.read", map[string]any{"path": "a.txt"}); err == nil {
		t.Fatal("file action with no plan directory succeeded")
	}
}
