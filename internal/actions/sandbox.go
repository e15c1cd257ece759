package actions

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrOutsidePlan is wrapped by every error for a path that would leave the
// plan's directory or its workspace: "..", absolute paths and symlinks
// pointing outside.
var ErrOutsidePlan = errors.New("escapes the plan's directory and workspace")

// ErrPlanDirTarget is returned when a destructive action names the
// workspace itself ("", "." or a path that cleans to it).
var ErrPlanDirTarget = errors.New("refusing to act on the plan's workspace itself")

// ErrPlanSourceReadOnly is returned when an action would change a file that
// exists only in the plan's source directory. Plans are loaded from there, so
// a task that could write there could rewrite its own plan (or another task
// of it) and have the next reload run whatever it wrote.
var ErrPlanSourceReadOnly = errors.New("is part of the plan's source, which actions cannot change (they write to the plan's workspace)")

// ErrHardLinked is returned when file.write finds the workspace file it
// would write has other hard links. os.Root confines names, not inodes: a
// command run in the workspace can hard-link a file from anywhere on the
// same filesystem it may link (the plan's own tasks/*.yaml among them),
// and writing through that name would change the file where plans are
// loaded from.
var ErrHardLinked = errors.New("has other hard links, so writing it would change a file outside the workspace (perhaps the plan's own source); delete it with file.delete, then write it again")

// ErrNoWorkspace is returned by an action that writes, or runs a command,
// when the Env names no workspace.
var ErrNoWorkspace = errors.New("no workspace: the plan has no writable directory")

// rootEscapeText is the message of os.Root's unexported escape error; the
// sandbox tests fail if a Go release changes it, because symlink escapes
// would then lose their ErrOutsidePlan classification (but stay refused).
const rootEscapeText = "path escapes from parent"

// Variables exec children get, naming the two directories of their plan.
const (
	envPlanDir   = "AURA_PLAN_DIR"
	envWorkspace = "AURA_WORKSPACE"
)

// sandbox is one call's view of a plan's files: an overlay of the writable
// workspace on the read-only source. Reads look in the workspace first, then
// in the source; writes and deletes touch only the workspace.
type sandbox struct {
	action string
	// work is the workspace, nil when the Env names none or (for reads) it
	// does not exist yet.
	work *os.Root
	// src is the plan's source directory, nil when the Env names none.
	src   *os.Root
	owned []*os.Root // roots this sandbox opened and close releases
	runAs *syscall.Credential
}

// openSandboxPath opens the sandbox for reading and cleans path in it: the
// opening read-only file actions start with. The caller closes the sandbox.
func openSandboxPath(action string, env *Env, path string) (*sandbox, string, error) {
	sb, err := openSandbox(action, env, false)
	if err != nil {
		return nil, "", err
	}
	c, err := sb.clean(path)
	if err != nil {
		sb.close()
		return nil, "", err
	}
	return sb, c, nil
}

// openSandbox uses env.Root when set, otherwise opens a root on env.PlanDir,
// and opens one on env.WorkDir; close releases what it opened. With writable the
// workspace is created when missing and required; without, a missing
// workspace is simply empty, so reads never create directories.
func openSandbox(action string, env *Env, writable bool) (*sandbox, error) {
	if env == nil {
		return nil, fmt.Errorf("%s: no environment: the plan directory is unknown", action)
	}
	sb := &sandbox{action: action, src: env.Root, runAs: env.RunAs}
	if sb.src == nil && env.PlanDir != "" {
		r, err := os.OpenRoot(env.PlanDir)
		if err != nil {
			return nil, fmt.Errorf("%s: open the plan directory: %w", action, err)
		}
		sb.src = r
		sb.owned = append(sb.owned, r)
	}
	if env.WorkDir != "" {
		if writable {
			if err := ensureWorkspace(env.WorkDir, env.RunAs); err != nil {
				sb.close()
				return nil, fmt.Errorf("%s: %w", action, err)
			}
		}
		r, err := os.OpenRoot(env.WorkDir)
		switch {
		case err == nil:
			sb.work = r
			sb.owned = append(sb.owned, r)
		case writable || !errors.Is(err, fs.ErrNotExist):
			sb.close()
			return nil, fmt.Errorf("%s: open the plan's workspace: %w", action, err)
		}
	}
	if writable && sb.work == nil {
		sb.close()
		return nil, fmt.Errorf("%s: %w", action, ErrNoWorkspace)
	}
	if sb.src == nil && sb.work == nil && env.WorkDir == "" {
		return nil, fmt.Errorf("%s: no plan directory configured", action)
	}
	return sb, nil
}

// ensureWorkspace creates a plan's workspace when missing. Only the last
// component is created: the directory above it is aurad's to make, and a
// data directory deleted under a running aurad must fail writes, not be
// silently recreated empty. With runAs set the workspace belongs to that
// user, so exec children, which run as that user, can write in it.
func ensureWorkspace(dir string, runAs *syscall.Credential) error {
	if err := os.Mkdir(dir, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create the plan's workspace: %w", err)
	}
	if runAs == nil {
		return nil
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("the plan's workspace: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("the plan's workspace %s is not a directory", dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == runAs.Uid && st.Gid == runAs.Gid {
		return nil
	}
	// Lchown: the workspace was just checked to be a directory, and a
	// symlink put in its place would be changed itself, never its target.
	if err := os.Lchown(dir, int(runAs.Uid), int(runAs.Gid)); err != nil {
		return fmt.Errorf("hand the plan's workspace to uid %d: %w", runAs.Uid, err)
	}
	return nil
}

func (sb *sandbox) close() {
	for _, r := range sb.owned {
		r.Close()
	}
	sb.owned = nil
}

// clean validates a relative path lexically and returns it cleaned. os.Root
// enforces the same confinement again at the system-call level (including
// symlinks); this check exists to give a clear message early.
func (sb *sandbox) clean(p string) (string, error) {
	if strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("%s: path %q: contains a NUL byte", sb.action, p)
	}
	if filepath.IsAbs(p) {
		return "", fmt.Errorf("%s: path %q: %w", sb.action, p, ErrOutsidePlan)
	}
	c := filepath.Clean(p)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("%s: path %q: %w", sb.action, p, ErrOutsidePlan)
	}
	return c, nil
}

// lookup calls fn on the workspace, then on the plan's source, until fn
// returns something other than "not there"; an escape is never "not there",
// so a symlink out of the workspace cannot be papered over by the source.
func (sb *sandbox) lookup(fn func(r *os.Root) error) error {
	err := error(fs.ErrNotExist)
	for _, r := range []*os.Root{sb.work, sb.src} {
		if r == nil {
			continue
		}
		if err = fn(r); !notThere(err) {
			return err
		}
	}
	return err
}

// notThere reports an error meaning the path does not exist in one root
// (ENOENT, or ENOTDIR: a component is a file), so the next root is asked.
func notThere(err error) bool {
	return err != nil && !isEscape(err) && (errors.Is(err, fs.ErrNotExist) || isNotDir(err))
}

// wrap turns an os.Root error into one naming the action and the user's path,
// classifying escapes as ErrOutsidePlan and keeping fs errors inspectable.
func (sb *sandbox) wrap(p string, err error) error {
	if isEscape(err) {
		return fmt.Errorf("%s: path %q: %w", sb.action, p, ErrOutsidePlan)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		// Drop the Root-internal path and op; the user's path is the one that matters.
		return fmt.Errorf("%s: path %q: %w", sb.action, p, pe.Err)
	}
	return fmt.Errorf("%s: path %q: %w", sb.action, p, err)
}

// isEscape reports os.Root's escape error anywhere in err's chain (it is
// usually inside an *fs.PathError).
func isEscape(err error) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if e.Error() == rootEscapeText {
			return true
		}
	}
	return false
}

// mkdirAll creates the cleaned directory c and its parents in the workspace.
// With runAs set, each directory it creates is handed to that user, like the
// workspace itself, so exec children can write in it too.
func (sb *sandbox) mkdirAll(c string) error {
	if sb.runAs == nil {
		return sb.work.MkdirAll(c, 0o755)
	}
	cur := ""
	for part := range strings.SplitSeq(c, string(filepath.Separator)) {
		cur = filepath.Join(cur, part)
		err := sb.work.Mkdir(cur, 0o755)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return err
		}
		if err := sb.work.Lchown(cur, int(sb.runAs.Uid), int(sb.runAs.Gid)); err != nil {
			return err
		}
	}
	return nil
}

// workingDir is exec's working directory, opened through the workspace
// root and held open until the child has started.
type workingDir struct {
	f   *os.File
	rel string // the cleaned workspace-relative path, for logs
}

// openDir opens p, a directory inside the workspace, as exec's working
// directory. The child changes into it through /proc/self/fd/N: the kernel
// resolves that magic link to the very directory this descriptor holds, so
// a directory swapped for a symlink after this check cannot move the child
// elsewhere (a path checked and then passed to chdir could be).
func (sb *sandbox) openDir(p string) (*workingDir, error) {
	if p == "" {
		p = "."
	}
	c, err := sb.clean(p)
	if err != nil {
		return nil, err
	}
	f, err := sb.work.Open(c)
	if err != nil {
		if notThere(err) {
			return nil, fmt.Errorf("%s: dir %q: no such directory in the plan's workspace (create it first, e.g. with file.write or mkdir -p)", sb.action, p)
		}
		return nil, sb.wrap(p, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, sb.wrap(p, err)
	}
	if !fi.IsDir() {
		f.Close()
		return nil, fmt.Errorf("%s: dir %q: not a directory", sb.action, p)
	}
	return &workingDir{f: f, rel: c}, nil
}

// path is what the child passes to chdir(2): its own copy of the descriptor,
// inherited at fork and still open when Go's child code changes directory
// (before exec closes it, as every Go descriptor is close-on-exec).
func (w *workingDir) path() string {
	return "/proc/self/fd/" + strconv.Itoa(int(w.f.Fd()))
}

func (w *workingDir) Close() error { return w.f.Close() }

// openWorkingDir resolves exec's dir parameter in the plan's workspace.
func openWorkingDir(env *Env, dir string) (*workingDir, error) {
	sb, err := openSandbox("exec", env, true)
	if err != nil {
		return nil, err
	}
	defer sb.close()
	return sb.openDir(dir)
}

// workspaceVars returns the step's env with AURA_PLAN_DIR and AURA_WORKSPACE
// added, so a command can read its plan's files by absolute path; the step's
// own values win, as for every variable.
func workspaceVars(env *Env, vars map[string]string) map[string]string {
	out := make(map[string]string, len(vars)+2)
	if env.PlanDir != "" {
		out[envPlanDir] = env.PlanDir
	}
	if env.WorkDir != "" {
		out[envWorkspace] = env.WorkDir
	}
	for k, v := range vars {
		out[k] = v
	}
	return out
}
