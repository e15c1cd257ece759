package actions

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aura-dev/aura/internal/containment"
)

const (
	// maxCapture bounds each of stdout and stderr kept from an exec child;
	// the rest is read and discarded so the child never blocks on a full pipe.
	maxCapture = 1 << 20
	// errorTailLen is how much of stderr (or a response body) an error message quotes.
	errorTailLen       = 512
	defaultKillGrace   = 5 * time.Second
	groupPollInterval  = 10 * time.Millisecond
	execParamArgv      = "argv"
	execParamEnv       = "env"
	execParamDir       = "dir"
	execParamStdin     = "stdin"
	execParamTimeout   = "timeout"
	execParamOkCodes   = "ok_codes"
	signalExitCodeBase = 128
	truncatedStdoutKey = "stdout_truncated"
	truncatedStderrKey = "stderr_truncated"
)

var execParams = []string{execParamArgv, execParamEnv, execParamDir, execParamStdin, execParamTimeout, execParamOkCodes}

// defaultEnvAllow is what children inherit from aurad when Env.EnvAllow is nil.
var defaultEnvAllow = []string{"PATH", "HOME", "LANG", "TZ"}

// ExitError is returned by exec when the command ran but exited with a code
// not in ok_codes. The output map is returned alongside it as well.
type ExitError struct {
	Program string
	// Code is the exit status, or 128+signal when a signal killed the process.
	Code int
	// Signal names the signal that killed the process ("" when it exited).
	Signal string
	Stdout string
	Stderr string
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("exec %q: exit code %d", e.Program, e.Code)
	if e.Signal != "" {
		msg += " (killed by signal: " + e.Signal + ")"
	}
	if tail := tailText(e.Stderr, errorTailLen); tail != "" {
		msg += "; stderr: " + tail
	}
	return msg
}

// TimeoutError is returned by exec when its own timeout parameter expired.
// It matches context.DeadlineExceeded with errors.Is.
type TimeoutError struct {
	Action string
	After  time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("%s: timed out after %s", e.Action, e.After)
}

func (e *TimeoutError) Unwrap() error { return context.DeadlineExceeded }

func execSpec() Spec {
	return Spec{Name: "exec", Portable: true, Params: execParams, Run: runExec}
}

// execRequest is exec's validated parameters.
type execRequest struct {
	argv    []string
	env     map[string]string
	dir     string
	stdin   *string
	timeout time.Duration
	okCodes []int64
}

func parseExec(params map[string]any) (execRequest, error) {
	var req execRequest
	p, err := newParams("exec", params, execParams)
	if err != nil {
		return req, err
	}
	const argvWhat = "a non-empty list of strings"
	if req.argv, err = p.scalarList(execParamArgv, argvWhat); err != nil {
		return req, err
	}
	if len(req.argv) == 0 {
		return req, p.errorf(execParamArgv, "must be %s", argvWhat)
	}
	if req.argv[0] == "" {
		return req, p.errorf(execParamArgv, "the program (first item) must not be empty")
	}
	for i, a := range req.argv {
		if strings.IndexByte(a, 0) >= 0 {
			return req, p.errorf(execParamArgv, "item %d contains a NUL byte", i)
		}
	}
	if req.env, err = p.stringMap(execParamEnv); err != nil {
		return req, err
	}
	for k, v := range req.env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.IndexByte(v, 0) >= 0 {
			return req, p.errorf(execParamEnv, "invalid variable %q: names must be non-empty without '=' and values without NUL bytes", k)
		}
	}
	if req.dir, err = p.str(execParamDir, "."); err != nil {
		return req, err
	}
	if p.has(execParamStdin) {
		s, err := p.str(execParamStdin, "")
		if err != nil {
			return req, err
		}
		req.stdin = &s
	}
	if req.timeout, err = p.duration(execParamTimeout, 0); err != nil {
		return req, err
	}
	if req.okCodes, err = p.intList(execParamOkCodes, []int64{0}); err != nil {
		return req, err
	}
	return req, nil
}

// runExec runs argv directly (never through a shell) in its own process
// group and its own containment group (Env.Processes), in the plan's
// workspace, with a clean environment. Cancellation or the timeout sends
// SIGTERM to every process the command started and SIGKILL after the grace
// period; whatever it leaves running when it exits is killed, including
// processes that called setsid or lost their parent. The output
// {exit_code, stdout, stderr, stdout_truncated, stderr_truncated} is
// returned even when an error is.
func runExec(ctx context.Context, env *Env, params map[string]any) (any, error) {
	req, err := parseExec(params)
	if err != nil {
		return nil, err
	}
	workDir, err := openWorkingDir(env, req.dir)
	if err != nil {
		return nil, err
	}
	// Held open until the child has changed into it (cmd.Start returned).
	defer workDir.Close()
	childEnv := buildChildEnv(env.EnvAllow, workspaceVars(env, req.env))
	prog, err := lookProgram(req.argv[0], childEnv)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("exec %q: not started: %w", req.argv[0], err)
	}
	grace := env.KillGrace
	if grace <= 0 {
		grace = defaultKillGrace
	}
	runCtx := ctx
	if req.timeout > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, req.timeout)
		defer cancel()
	}

	cmd := &exec.Cmd{
		Path:        prog,
		Args:        req.argv,
		Env:         childEnv,
		Dir:         workDir.path(),
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Credential: env.RunAs},
		// Bounds how long Wait keeps feeding stdin to a process tree that
		// stopped reading it.
		WaitDelay: grace,
	}
	if req.stdin != nil {
		cmd.Stdin = strings.NewReader(*req.stdin)
	}
	// Everything the command starts, even what leaves its process group
	// with setsid, is kept in one group and ends with the step.
	group, err := env.Processes.NewGroup("exec")
	if err != nil {
		return nil, fmt.Errorf("exec %q: %w", req.argv[0], err)
	}
	defer group.Close()
	var stdout, stderr captureBuffer
	var outDst, errDst io.Writer = &stdout, &stderr
	if env != nil && env.Output != nil {
		outDst = io.MultiWriter(&stdout, streamWriter{"stdout", env.Output})
		errDst = io.MultiWriter(&stderr, streamWriter{"stderr", env.Output})
	}
	outPipe, err := startCapture(outDst)
	if err != nil {
		return nil, fmt.Errorf("exec %q: %w", req.argv[0], err)
	}
	errPipe, err := startCapture(errDst)
	if err != nil {
		outPipe.abort()
		return nil, fmt.Errorf("exec %q: %w", req.argv[0], err)
	}
	cmd.Stdout, cmd.Stderr = outPipe.w, errPipe.w

	markInheritedDescriptorsCloseOnExec()
	started := time.Now()
	if err := group.Start(cmd); err != nil {
		outPipe.abort()
		errPipe.abort()
		return nil, fmt.Errorf("exec %q: start: %w", req.argv[0], err)
	}
	pid := cmd.Process.Pid
	// The child holds its own copies of the write ends now.
	outPipe.w.Close()
	errPipe.w.Close()
	env.logger().Debug("exec started", "program", prog, "pid", pid, "dir", workDir.rel, "cgroup", group.Dir())

	exited := make(chan struct{})
	var terminated bool // written by the watcher before watchDone closes
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		select {
		case <-runCtx.Done():
			terminated = true
			terminateGroup(group, grace)
		case <-exited:
		}
	}()

	waitErr := cmd.Wait()
	close(exited)
	<-watchDone
	// Whatever the command left behind dies with it, including processes
	// that left its process group or lost their parent.
	if err := group.Close(); err != nil {
		env.logger().Warn("exec: could not clean up the step's processes", "program", prog, "pid", pid, "err", err)
	}
	// Pipes close once every writer is gone; a writer that survived the
	// group (one that escaped its cgroup, or a process group only) is cut
	// off after the grace period.
	outPipe.finish(grace)
	errPipe.finish(grace)

	out := map[string]any{
		"exit_code":        int64(-1),
		"stdout":           stdout.text(),
		"stderr":           stderr.text(),
		truncatedStdoutKey: stdout.truncated,
		truncatedStderrKey: stderr.truncated,
	}
	state := cmd.ProcessState
	if state == nil {
		return out, fmt.Errorf("exec %q: wait: %w", req.argv[0], waitErr)
	}
	code := exitCode(state)
	out["exit_code"] = int64(code)
	env.logger().Debug("exec finished", "program", prog, "pid", pid, "exit_code", code,
		"terminated", terminated, "duration", time.Since(started))

	if terminated {
		if ctx.Err() == nil && runCtx.Err() != nil {
			return out, fmt.Errorf("exec %q: %w", req.argv[0], &TimeoutError{Action: "exec", After: req.timeout})
		}
		return out, fmt.Errorf("exec %q: stopped: %w", req.argv[0], ctx.Err())
	}
	if waitErr != nil && !errors.Is(waitErr, exec.ErrWaitDelay) {
		var ee *exec.ExitError
		if !errors.As(waitErr, &ee) {
			return out, fmt.Errorf("exec %q: wait: %w", req.argv[0], waitErr)
		}
	}
	if !slices.Contains(req.okCodes, int64(code)) {
		return out, &ExitError{Program: req.argv[0], Code: code, Signal: signalName(state),
			Stdout: out["stdout"].(string), Stderr: out["stderr"].(string)}
	}
	return out, nil
}

// terminateGroup sends SIGTERM to every process of the group, waits up to
// grace for all of them to exit, then sends SIGKILL.
func terminateGroup(group *containment.Group, grace time.Duration) {
	group.Signal(syscall.SIGTERM)
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	tick := time.NewTicker(groupPollInterval)
	defer tick.Stop()
	for {
		select {
		case <-deadline.C:
			group.Signal(syscall.SIGKILL)
			return
		case <-tick.C:
			if !group.Running() {
				return
			}
		}
	}
}

func signalName(state *os.ProcessState) string {
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return ws.Signal().String()
	}
	return ""
}

func exitCode(state *os.ProcessState) int {
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return signalExitCodeBase + int(ws.Signal())
	}
	return state.ExitCode()
}

// buildChildEnv returns the allowed subset of aurad's environment plus the
// step's own variables (which win), sorted for reproducibility.
func buildChildEnv(allow []string, extra map[string]string) []string {
	if allow == nil {
		allow = defaultEnvAllow
	}
	vars := make(map[string]string, len(allow)+len(extra))
	for _, name := range allow {
		if v, ok := os.LookupEnv(name); ok {
			vars[name] = v
		}
	}
	for k, v := range extra {
		vars[k] = v
	}
	out := make([]string, 0, len(vars))
	for k, v := range vars {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

// lookProgram resolves a bare program name against the child's PATH (not
// aurad's), skipping relative PATH entries. Names with a slash are used as
// given; a relative one is resolved by the kernel against the working dir.
func lookProgram(name string, childEnv []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	var pathVar string
	for _, kv := range childEnv {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathVar = v
		}
	}
	for _, dir := range filepath.SplitList(pathVar) {
		if !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec %q: %w in the child's PATH %q", name, exec.ErrNotFound, pathVar)
}

// markInheritedDescriptorsCloseOnExec sets FD_CLOEXEC on every descriptor
// above stderr. Go opens its own files close-on-exec, but descriptors created
// by foreign code (C libraries, inherited from aurad's parent) are not, and a
// child would inherit them. Best effort: without /proc there is nothing to scan.
func markInheritedDescriptorsCloseOnExec() {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return
	}
	for _, n := range names {
		if fd, err := strconv.Atoi(n); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}

// captureBuffer keeps the first maxCapture bytes written and counts the rest.
type captureBuffer struct {
	buf       bytes.Buffer
	truncated bool
}

func (c *captureBuffer) Write(p []byte) (int, error) {
	room := maxCapture - c.buf.Len()
	if room >= len(p) {
		c.buf.Write(p)
		return len(p), nil
	}
	if room > 0 {
		c.buf.Write(p[:room])
	}
	c.truncated = true
	return len(p), nil
}

// text returns the captured bytes as valid UTF-8 (invalid sequences become
// U+FFFD) because outputs travel as protobuf strings.
func (c *captureBuffer) text() string {
	return strings.ToValidUTF8(c.buf.String(), "\uFFFD")
}

// capturePipe copies a pipe's read end into a captureBuffer.
type capturePipe struct {
	r, w *os.File
	done chan struct{}
}

func startCapture(dst io.Writer) (*capturePipe, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("create pipe: %w", err)
	}
	cp := &capturePipe{r: r, w: w, done: make(chan struct{})}
	go func() {
		defer close(cp.done)
		_, _ = io.Copy(dst, r)
	}()
	return cp, nil
}

// finish waits for the copy to reach EOF, closing the read end after grace
// if some process still holds the write end.
func (cp *capturePipe) finish(grace time.Duration) {
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-cp.done:
	case <-t.C:
		cp.r.Close()
		<-cp.done
	}
	cp.r.Close()
}

// abort releases a pipe whose command never started.
func (cp *capturePipe) abort() {
	cp.w.Close()
	<-cp.done
	cp.r.Close()
}

// tailText returns at most n bytes from the end of s, trimmed, starting on a
// rune boundary.
func tailText(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	return "…" + strings.ToValidUTF8(s[len(s)-n:], "")
}

// streamWriter forwards a child's output to Env.Output.
type streamWriter struct {
	stream string
	fn     func(stream string, p []byte)
}

func (w streamWriter) Write(p []byte) (int, error) {
	w.fn(w.stream, p)
	return len(p), nil
}
