package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// watchedFile is a file the store must keep writing to: its path and what
// the path named when the store opened.
type watchedFile struct {
	path  string
	ident os.FileInfo
}

func identify(paths ...string) ([]watchedFile, error) {
	out := make([]watchedFile, 0, len(paths))
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		out = append(out, watchedFile{path: p, ident: fi})
	}
	return out, nil
}

// fileGone reports, as ErrGone, that the database file or its write-ahead
// log is no longer the one the store opened: deleted (rm -rf of the data
// directory), or replaced by another file or directory. SQLite keeps
// writing to open, unlinked files without complaint, so without this check
// every write would be acknowledged and then lost at the next start. (The
// WAL is never recreated while the writer's connection is open, so a new
// one means the old one was deleted.) Once gone, always gone: the first
// finding is logged, once. Safe for any goroutine.
func (w *writer) fileGone() error {
	if err := w.gone.Load(); err != nil {
		return *err
	}
	for _, f := range w.files {
		fi, err := os.Stat(f.path)
		var what string
		switch {
		case err == nil && os.SameFile(fi, f.ident):
			continue
		case err == nil:
			what = "was replaced by another file"
		case errors.Is(err, fs.ErrNotExist):
			what = "was deleted"
		default:
			what = fmt.Sprintf("can no longer be found (%v)", err)
		}
		gone := fmt.Errorf("%w: %s %s while aurad was running; every write is refused, because the next start would not find it. "+
			"Restore the data directory from a backup if you have one, then restart aurad (tasks accepted before this are lost otherwise)",
			ErrGone, f.path, what)
		if w.gone.CompareAndSwap(nil, &gone) {
			w.log.Error("store: the database file is gone; refusing every write", "path", f.path, "err", gone)
		}
		return *w.gone.Load()
	}
	return nil
}
