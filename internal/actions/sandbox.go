package actions

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrOutsidePlan is wrapped by every error for a path that would leave the
// plan directory: "..", absolute paths and symlinks pointing outside.
var ErrOutsidePlan = errors.New("escapes the plan directory")

// ErrPlanDirTarget is returned when a destructive action names the plan
// directory itself ("", "." or a path that cleans to it).
var ErrPlanDirTarget = errors.New("refusing to act on the plan directory itself")

// rootEscapeText is the message of os.Root's unexported escape error; the
// sandbox tests fail if a Go release changes it, because symlink escapes
// would then lose their ErrOutsidePlan classification (but stay refused).
const rootEscapeText = "path escapes from parent"

// sandbox is one call's view of the plan directory.
type sandbox struct {
	action  string
	root    *os.Root
	ownRoot bool
	planDir string
}

// openSandboxPath opens the sandbox and cleans path in it: the opening
// every file action starts with. The caller closes the sandbox.
func openSandboxPath(action string, env *Env, path string) (*sandbox, string, error) {
	sb, err := openSandbox(action, env)
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

// openSandbox uses env.Root when set, otherwise opens a root on env.PlanDir
// that close releases.
func openSandbox(action string, env *Env) (*sandbox, error) {
	if env == nil {
		return nil, fmt.Errorf("%s: no environment: the plan directory is unknown", action)
	}
	sb := &sandbox{action: action, root: env.Root, planDir: env.PlanDir}
	if sb.planDir == "" && env.Root != nil {
		sb.planDir = env.Root.Name()
	}
	if sb.root == nil {
		if env.PlanDir == "" {
			return nil, fmt.Errorf("%s: no plan directory configured", action)
		}
		r, err := os.OpenRoot(env.PlanDir)
		if err != nil {
			return nil, fmt.Errorf("%s: open plan directory: %w", action, err)
		}
		sb.root, sb.ownRoot = r, true
	}
	return sb, nil
}

func (sb *sandbox) close() {
	if sb.ownRoot {
		sb.root.Close()
	}
}

// clean validates a plan-relative path lexically and returns it cleaned.
// os.Root enforces the same confinement again at the system-call level
// (including symlinks); this check exists to give a clear message early.
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

// dir checks that p names an existing directory inside the plan and returns
// its absolute path for use as a working directory.
func (sb *sandbox) dir(p string) (string, error) {
	if p == "" {
		p = "."
	}
	c, err := sb.clean(p)
	if err != nil {
		return "", err
	}
	fi, err := sb.root.Stat(c)
	if err != nil {
		return "", sb.wrap(p, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%s: path %q: not a directory", sb.action, p)
	}
	if sb.planDir == "" {
		return "", fmt.Errorf("%s: no plan directory configured", sb.action)
	}
	return filepath.Join(sb.planDir, c), nil
}
