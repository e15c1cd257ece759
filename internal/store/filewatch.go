package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// fileGone reports, as ErrGone, that the database file is no longer the one
// the store opened: deleted (rm -rf of the data directory), or replaced by
// another file or directory. SQLite keeps writing to the open, unlinked
// file without complaint, so without this check every write would be
// acknowledged and then lost at the next start. Once gone, always gone:
// the first finding is logged, once. Safe for any goroutine.
func (w *writer) fileGone() error {
	if err := w.gone.Load(); err != nil {
		return *err
	}
	if w.ident == nil {
		return nil
	}
	fi, err := os.Stat(w.path)
	var what string
	switch {
	case err == nil && os.SameFile(fi, w.ident):
		return nil
	case err == nil:
		what = "was replaced by another file"
	case errors.Is(err, fs.ErrNotExist):
		what = "was deleted"
	default:
		what = fmt.Sprintf("can no longer be found (%v)", err)
	}
	gone := fmt.Errorf("%w: %s %s while aurad was running; every write is refused, because the next start would not find it. "+
		"Restore the data directory from a backup if you have one, then restart aurad (tasks accepted before this are lost otherwise)",
		ErrGone, w.path, what)
	if w.gone.CompareAndSwap(nil, &gone) {
		w.log.Error("store: the database file is gone; refusing every write", "path", w.path, "err", gone)
	}
	return *w.gone.Load()
}
