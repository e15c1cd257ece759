package actions

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Writes land in the workspace; the plan's source, where plan.yaml and the
// tasks are loaded from, is never changed, whatever path a task names.
func TestFileWritesNeverTouchThePlanSource(t *testing.T) {
	tp := newTestPlan(t)
	writeFile(t, filepath.Join(tp.dir, "plan.yaml"), "title: mine\n")
	writeFile(t, filepath.Join(tp.dir, "tasks/hello.yaml"), "steps: []\n")
	evil := "steps:\n  - {action: exec, params: {argv: [id]}}\n"
	for _, p := range []string{"tasks/evil.yaml", "tasks/hello.yaml", "plan.yaml", "./tasks/../plan.yaml"} {
		out := mustRun(t, tp.env, "file.write", map[string]any{"path": p, "content": evil})
		if got := out.(map[string]any)["path"]; got != filepath.Clean(p) {
			t.Errorf("write %q: path = %v", p, got)
		}
	}
	mustRun(t, tp.env, "file.write", map[string]any{"path": "tasks/hello.yaml", "content": "more", "append": true})
	assertTree(t, tp.dir, map[string]string{"plan.yaml": "title: mine\n", "tasks/hello.yaml": "steps: []\n"})
	assertTree(t, tp.work, map[string]string{
		"plan.yaml": evil, "tasks/evil.yaml": evil, "tasks/hello.yaml": evil + "more",
	})
	// Reading sees the workspace's copy, which shadows the source's.
	if got := mustRun(t, tp.env, "file.read", map[string]any{"path": "plan.yaml"}); got.(map[string]any)["content"] != evil {
		t.Errorf("read plan.yaml = %#v, want the workspace's copy", got)
	}
	// Deleting removes the workspace's copy and refuses what only the source has.
	mustRun(t, tp.env, "file.delete", map[string]any{"path": "plan.yaml"})
	mustRun(t, tp.env, "file.delete", map[string]any{"path": "tasks", "recursive": true})
	for _, p := range []string{"plan.yaml", "tasks", "tasks/hello.yaml"} {
		_, err := run(t, tp.env, "file.delete", map[string]any{"path": p, "recursive": true})
		if !errors.Is(err, ErrPlanSourceReadOnly) || !strings.Contains(err.Error(), `file.delete: path "`+p+`"`) {
			t.Errorf("delete %q: err = %v, want ErrPlanSourceReadOnly naming the path", p, err)
		}
	}
	assertTree(t, tp.dir, map[string]string{"plan.yaml": "title: mine\n", "tasks/hello.yaml": "steps: []\n"})
	if got := mustRun(t, tp.env, "file.read", map[string]any{"path": "plan.yaml"}); got.(map[string]any)["content"] != "title: mine\n" {
		t.Errorf("read plan.yaml after deleting the copy = %#v, want the source's", got)
	}
}

// A hard link in the workspace to a source file is that file: file.write
// (plain or append) refuses it and leaves both names as they were; once the
// link is deleted, the same write makes a workspace file.
func TestFileWriteRefusesAHardLinkToThePlanSource(t *testing.T) {
	tp := newTestPlan(t)
	writeFile(t, filepath.Join(tp.dir, "plan.yaml"), "title: mine\n")
	mustRun(t, tp.env, "file.write", map[string]any{"path": "keep.txt", "content": "x"}) // makes the workspace
	if err := os.Link(filepath.Join(tp.dir, "plan.yaml"), filepath.Join(tp.work, "linked.yaml")); err != nil {
		t.Skipf("cannot hard-link across the test's directories: %v", err)
	}
	for _, appendMode := range []bool{false, true} {
		_, err := run(t, tp.env, "file.write", map[string]any{"path": "linked.yaml", "content": "junk", "append": appendMode})
		if !errors.Is(err, ErrHardLinked) || !strings.Contains(err.Error(), `file.write: path "linked.yaml"`) {
			t.Errorf("write (append %v) through a hard link: err = %v, want ErrHardLinked naming the path", appendMode, err)
		}
	}
	assertTree(t, tp.dir, map[string]string{"plan.yaml": "title: mine\n"})
	mustRun(t, tp.env, "file.delete", map[string]any{"path": "linked.yaml"})
	mustRun(t, tp.env, "file.write", map[string]any{"path": "linked.yaml", "content": "mine now"})
	assertTree(t, tp.dir, map[string]string{"plan.yaml": "title: mine\n"})
	assertTree(t, tp.work, map[string]string{"keep.txt": "x", "linked.yaml": "mine now"})
}

// assertTree checks that dir holds exactly these regular files.
func assertTree(t *testing.T, dir string, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		got[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s holds %q, want %q", dir, got, want)
	}
}

// Reads see the workspace laid over the plan's source: the plan's own files
// stay readable, listed together with what tasks wrote.
func TestFileReadsSeeWorkspaceOverSource(t *testing.T) {
	tp := newTestPlan(t)
	writeFile(t, filepath.Join(tp.dir, "data/seed.txt"), "from the plan")
	writeFile(t, filepath.Join(tp.dir, "data/both.txt"), "old")
	// Reads never create the workspace.
	if got := mustRun(t, tp.env, "file.read", map[string]any{"path": "data/seed.txt"}); got.(map[string]any)["content"] != "from the plan" {
		t.Fatalf("read a plan file = %#v", got)
	}
	for action, params := range map[string]map[string]any{
		"file.exists": {"path": "data/nothing"}, "file.list": {"path": "data"}, "hash": {"file": "data/seed.txt"},
	} {
		mustRun(t, tp.env, action, params)
	}
	if _, err := os.Stat(tp.work); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a read created the workspace: %v", err)
	}
	mustRun(t, tp.env, "file.write", map[string]any{"path": "data/both.txt", "content": "new"})
	mustRun(t, tp.env, "file.write", map[string]any{"path": "data/out.txt", "content": "written"})
	if got := mustRun(t, tp.env, "file.list", map[string]any{"path": "data"}); !reflect.DeepEqual(got, []any{"both.txt", "out.txt", "seed.txt"}) {
		t.Errorf("list data = %#v", got)
	}
	for p, want := range map[string]bool{"data/seed.txt": true, "data/out.txt": true, "data/seed.txt/x": false, "nope": false} {
		if got := mustRun(t, tp.env, "file.exists", map[string]any{"path": p}); got != want {
			t.Errorf("exists %q = %v, want %v", p, got, want)
		}
	}
	if got := mustRun(t, tp.env, "file.read", map[string]any{"path": "data/both.txt"}); got.(map[string]any)["content"] != "new" {
		t.Errorf("read a shadowed file = %#v, want the workspace's", got)
	}
	h := mustRun(t, tp.env, "hash", map[string]any{"file": "data/seed.txt"})
	if want := mustRun(t, tp.env, "hash", map[string]any{"data": "from the plan"}); !reflect.DeepEqual(h, want) {
		t.Errorf("hash of a plan file = %v, want %v", h, want)
	}
}

// exec starts in the workspace and is told where both directories are, so
// a command can read the plan's files while writing its own.
func TestExecSeesWorkspaceAndPlanDir(t *testing.T) {
	tp := newTestPlan(t)
	writeFile(t, filepath.Join(tp.dir, "scripts/greet.sh"), `echo "hi $1" > greeting.txt`)
	mustRun(t, tp.env, "exec", map[string]any{"argv": []any{"sh", "-c", `sh "$AURA_PLAN_DIR/scripts/greet.sh" there && echo "$AURA_WORKSPACE"`}})
	assertTree(t, tp.dir, map[string]string{"scripts/greet.sh": `echo "hi $1" > greeting.txt`})
	if got := mustRun(t, tp.env, "file.read", map[string]any{"path": "greeting.txt"}); got.(map[string]any)["content"] != "hi there\n" {
		t.Errorf("greeting = %#v", got)
	}
	// The variables can be overridden by the step like any other.
	out := mustRun(t, tp.env, "exec", map[string]any{"argv": []any{"sh", "-c", `echo "$AURA_PLAN_DIR|$AURA_WORKSPACE"`}, "env": map[string]any{"AURA_WORKSPACE": "mine"}})
	if _, stdout, _ := execOut(t, out); stdout != tp.dir+"|mine\n" {
		t.Errorf("stdout = %q", stdout)
	}
	if _, err := run(t, &Env{PlanDir: tp.dir}, "exec", map[string]any{"argv": []any{"true"}}); !errors.Is(err, ErrNoWorkspace) {
		t.Errorf("exec without a workspace: %v, want ErrNoWorkspace", err)
	}
	if _, err := run(t, &Env{PlanDir: tp.dir}, "file.write", map[string]any{"path": "x", "content": ""}); !errors.Is(err, ErrNoWorkspace) {
		t.Errorf("write without a workspace: %v, want ErrNoWorkspace", err)
	}
}

// The swap race runs commands until this many have started in the swapped
// directory (at most execDirSwapMax): a checked-then-used path let a few in
// a hundred of those start in /etc instead.
const (
	execDirSwapWant = 30
	execDirSwapMax  = 10000
)

// exec's dir is pinned by a descriptor: a directory that is swapped for a
// symlink to /etc while commands start never becomes their cwd.
func TestExecDirSwapRaceNeverEscapes(t *testing.T) {
	tp := newTestPlan(t)
	if err := os.MkdirAll(filepath.Join(tp.work, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		d := filepath.Join(tp.work, "d")
		// Each state is held a moment so commands meet both.
		for ctx.Err() == nil {
			os.Remove(d)
			os.Symlink("/etc", d)
			time.Sleep(100 * time.Microsecond)
			os.Remove(d)
			os.Mkdir(d, 0o755)
			time.Sleep(300 * time.Microsecond)
		}
	}()
	var runs, inside, inEtc int
	for ; runs < execDirSwapMax && inside < execDirSwapWant; runs++ {
		out, err := run(t, tp.env, "exec", map[string]any{"argv": []any{"readlink", "/proc/self/cwd"}, "dir": "d"})
		if err != nil {
			continue // refused (symlink or missing) or the dir was removed under it
		}
		_, stdout, _ := execOut(t, out)
		switch {
		case strings.HasPrefix(stdout, "/etc"):
			inEtc++
		case strings.HasPrefix(stdout, tp.work+"/"):
			inside++
		}
	}
	stop()
	wg.Wait()
	if inEtc > 0 {
		t.Errorf("%d of %d commands ran in /etc", inEtc, runs)
	}
	if inside < execDirSwapWant {
		t.Errorf("only %d of %d commands ran in the swapped directory: the race was not exercised", inside, runs)
	}
	t.Logf("%d commands: %d in the swapped directory, %d in /etc", runs, inside, inEtc)
}

// With a run-as user, the workspace and what file actions create in it are
// that user's, so its commands can add to what an earlier step wrote.
func TestWorkspaceBelongsToTheRunAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch users")
	}
	tp := newTestPlan(t)
	env := *tp.env
	env.RunAs = &syscall.Credential{Uid: 65534, Gid: 65534}
	mustRun(t, &env, "file.write", map[string]any{"path": "logs/day/a.txt", "content": "from aurad\n"})
	mustRun(t, &env, "exec", map[string]any{"argv": []any{"sh", "-c", "echo from the child >> a.txt && touch b.txt"}, "dir": "logs/day"})
	if got := mustRun(t, &env, "file.read", map[string]any{"path": "logs/day/a.txt"}); got.(map[string]any)["content"] != "from aurad\nfrom the child\n" {
		t.Errorf("a.txt = %#v", got)
	}
	for _, p := range []string{".", "logs", "logs/day", "logs/day/a.txt", "logs/day/b.txt"} {
		fi, err := os.Lstat(filepath.Join(tp.work, p))
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 65534 || st.Gid != 65534 {
			t.Errorf("%s is owned by %d:%d, want 65534:65534", p, st.Uid, st.Gid)
		}
	}
	// The data directory above the workspace stays aurad's.
	if fi, _ := os.Stat(filepath.Dir(tp.work)); fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("the work directory was handed over too")
	}
}
