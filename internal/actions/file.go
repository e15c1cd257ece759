package actions

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"unicode/utf8"
)

// maxFileRead bounds file.read so one step cannot pull an arbitrarily large
// file into memory and into the task's recorded output.
const maxFileRead = 10 << 20

// File encodings for file.read and file.write: text content must be UTF-8
// (it travels as a protobuf string); base64 carries arbitrary bytes.
const (
	encodingText   = "text"
	encodingBase64 = "base64"
)

func fileReadSpec() Spec {
	return Spec{Name: "file.read", Portable: true, Params: []string{"path", "encoding"}, Run: runFileRead}
}

// runFileRead returns {content, size} for a file in the plan's workspace or,
// when the workspace has none, in its source directory.
func runFileRead(_ context.Context, env *Env, params map[string]any) (any, error) {
	const action = "file.read"
	p, err := newParams(action, params, []string{"path", "encoding"})
	if err != nil {
		return nil, err
	}
	path, err := p.requiredStr("path")
	if err != nil {
		return nil, err
	}
	enc, err := encodingParam(p)
	if err != nil {
		return nil, err
	}
	sb, err := openSandbox(action, env, false)
	if err != nil {
		return nil, err
	}
	defer sb.close()
	data, err := sb.readFile(path, maxFileRead)
	if err != nil {
		return nil, err
	}
	content := string(data)
	if enc == encodingBase64 {
		content = base64.StdEncoding.EncodeToString(data)
	} else if !utf8.Valid(data) {
		return nil, fmt.Errorf("%s: path %q: content is not valid UTF-8 text; use encoding: base64", action, path)
	}
	return map[string]any{"content": content, "size": int64(len(data))}, nil
}

// readFile reads a regular file of at most limit bytes.
func (sb *sandbox) readFile(path string, limit int64) ([]byte, error) {
	c, err := sb.clean(path)
	if err != nil {
		return nil, err
	}
	f, err := sb.openRegular(path, c)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, sb.wrap(path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: path %q: file is larger than %d bytes", sb.action, path, limit)
	}
	return data, nil
}

// openRegular opens a cleaned path for reading, from the workspace or else
// the plan's source, and refuses anything but a regular file. O_NONBLOCK
// keeps a FIFO planted there from blocking the open forever; it has no
// effect on regular files.
func (sb *sandbox) openRegular(path, cleaned string) (*os.File, error) {
	var f *os.File
	err := sb.lookup(func(r *os.Root) (err error) {
		f, err = r.OpenFile(cleaned, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		return err
	})
	if err != nil {
		return nil, sb.wrap(path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, sb.wrap(path, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: path %q: not a regular file", sb.action, path)
	}
	return f, nil
}

func encodingParam(p paramSet) (string, error) {
	enc, err := p.str("encoding", encodingText)
	if err != nil {
		return "", err
	}
	if enc != encodingText && enc != encodingBase64 {
		return "", p.errorf("encoding", "must be %q or %q, got %q", encodingText, encodingBase64, enc)
	}
	return enc, nil
}

func fileWriteSpec() Spec {
	return Spec{Name: "file.write", Portable: true, Params: []string{"path", "content", "append", "encoding"}, Run: runFileWrite}
}

// runFileWrite writes (or appends) content in the plan's workspace, creating
// parent directories, and returns {path, size} with the cleaned
// workspace-relative path and the file's size afterwards. A file of the same
// name in the plan's source is shadowed, never changed.
func runFileWrite(_ context.Context, env *Env, params map[string]any) (any, error) {
	const action = "file.write"
	p, err := newParams(action, params, []string{"path", "content", "append", "encoding"})
	if err != nil {
		return nil, err
	}
	path, err := p.requiredStr("path")
	if err != nil {
		return nil, err
	}
	content, err := p.str("content", "")
	if err != nil {
		return nil, err
	}
	appendMode, err := p.boolean("append", false)
	if err != nil {
		return nil, err
	}
	enc, err := encodingParam(p)
	if err != nil {
		return nil, err
	}
	data := []byte(content)
	if enc == encodingBase64 {
		if data, err = base64.StdEncoding.DecodeString(content); err != nil {
			return nil, p.errorf("content", "is not valid base64: %v", err)
		}
	}
	sb, err := openSandbox(action, env, true)
	if err != nil {
		return nil, err
	}
	defer sb.close()
	c, err := sb.clean(path)
	if err != nil {
		return nil, err
	}
	if c == "." {
		return nil, fmt.Errorf("%s: path %q: %w", action, path, ErrPlanDirTarget)
	}
	if parent := filepath.Dir(c); parent != "." {
		if err := sb.mkdirAll(parent); err != nil {
			return nil, sb.wrap(path, err)
		}
	}
	f, err := sb.openForWrite(c, appendMode)
	if err != nil {
		return nil, sb.wrap(path, err)
	}
	opened, err := f.Stat()
	if err != nil || !opened.Mode().IsRegular() {
		f.Close()
		if err != nil {
			return nil, sb.wrap(path, err)
		}
		return nil, fmt.Errorf("%s: path %q: not a regular file", action, path)
	}
	// Checked on the open file, before anything is written: renaming or
	// relinking the path meanwhile cannot change what was checked.
	if st, ok := opened.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
		f.Close()
		return nil, fmt.Errorf("%s: path %q %w", action, path, ErrHardLinked)
	}
	if !appendMode {
		if err := f.Truncate(0); err != nil {
			f.Close()
			return nil, sb.wrap(path, err)
		}
	}
	_, werr := f.Write(data)
	fi, serr := f.Stat()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return nil, sb.wrap(path, err)
	}
	return map[string]any{"path": filepath.ToSlash(c), "size": fi.Size()}, nil
}

// openForWrite opens (creating) a cleaned path in the workspace for
// writing. Truncation is left to the caller, after its regular-file check,
// instead of O_TRUNC, and O_NONBLOCK keeps a FIFO from blocking the open.
// A file it creates goes to the run-as user when there is one; an existing
// file keeps its owner, so a hard link planted in the workspace cannot make
// aurad give that user someone else's file.
func (sb *sandbox) openForWrite(c string, appendMode bool) (*os.File, error) {
	flags := os.O_WRONLY | syscall.O_NONBLOCK
	if appendMode {
		flags |= os.O_APPEND
	}
	f, err := sb.work.OpenFile(c, flags|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return sb.work.OpenFile(c, flags, 0)
	}
	if err != nil || sb.runAs == nil {
		return f, err
	}
	if err := f.Chown(int(sb.runAs.Uid), int(sb.runAs.Gid)); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func fileExistsSpec() Spec {
	return Spec{Name: "file.exists", Portable: true, Params: []string{"path"}, Run: runFileExists}
}

// runFileExists reports whether path exists in the plan's workspace or its
// source. A symlink that points outside is an error, not false, so a plan
// cannot probe the host's file system through it.
func runFileExists(_ context.Context, env *Env, params map[string]any) (any, error) {
	const action = "file.exists"
	p, err := newParams(action, params, []string{"path"})
	if err != nil {
		return nil, err
	}
	path, err := p.requiredStr("path")
	if err != nil {
		return nil, err
	}
	sb, c, err := openSandboxPath(action, env, path)
	if err != nil {
		return nil, err
	}
	defer sb.close()
	err = sb.lookup(func(r *os.Root) error {
		_, err := r.Stat(c)
		return err
	})
	switch {
	case err == nil:
		return true, nil
	case notThere(err):
		return false, nil
	}
	return nil, sb.wrap(path, err)
}

func fileListSpec() Spec {
	return Spec{Name: "file.list", Portable: true, Params: []string{"path", "glob"}, Run: runFileList}
}

// runFileList returns the sorted names of the entries of a directory
// (default the top) in the plan's workspace and its source together,
// optionally filtered by a glob matched against each name.
func runFileList(_ context.Context, env *Env, params map[string]any) (any, error) {
	const action = "file.list"
	p, err := newParams(action, params, []string{"path", "glob"})
	if err != nil {
		return nil, err
	}
	path, err := p.str("path", ".")
	if err != nil {
		return nil, err
	}
	if path == "" {
		path = "."
	}
	glob, err := p.str("glob", "")
	if err != nil {
		return nil, err
	}
	if _, err := filepath.Match(glob, ""); err != nil {
		return nil, p.errorf("glob", "invalid pattern %q: %v", glob, err)
	}
	sb, c, err := openSandboxPath(action, env, path)
	if err != nil {
		return nil, err
	}
	defer sb.close()
	names, err := sb.readDirNames(c)
	if err != nil {
		return nil, sb.wrap(path, err)
	}
	out := make([]any, 0, len(names))
	for _, n := range names {
		if glob != "" {
			if ok, _ := filepath.Match(glob, n); !ok {
				continue
			}
		}
		out = append(out, n)
	}
	return out, nil
}

// readDirNames returns the sorted, distinct names in the cleaned directory c
// of the workspace and of the plan's source; it fails when neither has it.
func (sb *sandbox) readDirNames(c string) ([]string, error) {
	var names []string
	err := error(fs.ErrNotExist)
	found := false
	for _, r := range []*os.Root{sb.work, sb.src} {
		if r == nil {
			continue
		}
		var d *os.File
		if d, err = r.Open(c); notThere(err) {
			continue
		} else if err != nil {
			return nil, err
		}
		more, rerr := d.Readdirnames(-1)
		d.Close()
		if rerr != nil {
			return nil, rerr
		}
		names = append(names, more...)
		found = true
	}
	if !found {
		return nil, err
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

func fileDeleteSpec() Spec {
	return Spec{Name: "file.delete", Portable: true, Params: []string{"path", "recursive"}, Run: runFileDelete}
}

// runFileDelete removes a file, symlink or empty directory (any directory
// with recursive: true) from the plan's workspace and returns {deleted} —
// false when nothing was there. A symlink is removed itself; its target is
// never touched. A path only the plan's source has is refused.
func runFileDelete(_ context.Context, env *Env, params map[string]any) (any, error) {
	const action = "file.delete"
	p, err := newParams(action, params, []string{"path", "recursive"})
	if err != nil {
		return nil, err
	}
	if !p.has("path") {
		return nil, p.errorf("path", "is required")
	}
	path, err := p.str("path", "")
	if err != nil {
		return nil, err
	}
	recursive, err := p.boolean("recursive", false)
	if err != nil {
		return nil, err
	}
	sb, err := openSandbox(action, env, true)
	if err != nil {
		return nil, err
	}
	defer sb.close()
	if path == "" {
		return nil, fmt.Errorf("%s: path %q: %w", action, path, ErrPlanDirTarget)
	}
	c, err := sb.clean(path)
	if err != nil {
		return nil, err
	}
	if c == "." {
		return nil, fmt.Errorf("%s: path %q: %w", action, path, ErrPlanDirTarget)
	}
	if _, err := sb.work.Lstat(c); err != nil {
		if !notThere(err) {
			return nil, sb.wrap(path, err)
		}
		if sb.src != nil {
			if _, serr := sb.src.Lstat(c); serr == nil {
				return nil, fmt.Errorf("%s: path %q: %w", action, path, ErrPlanSourceReadOnly)
			}
		}
		return map[string]any{"deleted": false}, nil
	}
	if recursive {
		err = sb.work.RemoveAll(c)
	} else {
		err = sb.work.Remove(c)
	}
	if err != nil {
		return nil, sb.wrap(path, err)
	}
	return map[string]any{"deleted": true}, nil
}

// isNotDir reports ENOTDIR: a path component is a regular file, so the path
// cannot exist.
func isNotDir(err error) bool { return errors.Is(err, syscall.ENOTDIR) }
