package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"
)

// corruptError is the refusal of a database file aurad cannot trust. It
// names the file and says what the operator can do next.
func corruptError(path string, detail error) error {
	return fmt.Errorf("%w: %s: %w. aurad will not use it. Next: restore %s from a backup; "+
		"or move it aside (with %s-wal and %s-shm, if present) to start with an empty store, losing the tasks it held "+
		"(sqlite3 %s .recover may salvage some of them)",
		ErrCorrupt, path, detail, path, path, path, path)
}

// checkNotEmptied refuses a database file that exists but holds nothing: a
// store that was ever opened is never empty (Open checkpoints its schema
// into the file), so an empty one was truncated and SQLite would silently
// start a new, empty database in it. A non-empty WAL next to it is still
// recovered by SQLite as usual. existed tells whether the file was there.
func checkNotEmptied(path string) (existed bool, err error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store: open %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return true, fmt.Errorf("store: %s is not a regular file", path)
	}
	if fi.Size() > 0 {
		return true, nil
	}
	if wal, err := os.Stat(path + "-wal"); err == nil && wal.Size() > 0 {
		return true, nil
	}
	return true, corruptError(path, errors.New("the file is empty (zero bytes) although a store was created in it: it was truncated; "+
		"if aurad never finished its first start here, remove the file"))
}

// quickCheck runs SQLite's quick_check (the structure of every page, without
// the slower index cross-checks) and refuses a database that fails it,
// before anything is read from or written to it. It is bounded by timeout:
// a check that does not finish in time is logged and the store opens, since
// a huge but sound database must not keep aurad down. timeout < 0 skips it.
func quickCheck(ctx context.Context, conn *sql.Conn, path string, timeout time.Duration, log *slog.Logger) error {
	if timeout < 0 {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	began := time.Now()
	problems, err := quickCheckRows(cctx, conn)
	if err != nil {
		if errors.Is(cctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			log.Warn("store: integrity check did not finish in time; opening without it",
				"path", path, "timeout", timeout)
			return nil
		}
		return classify(path, "integrity check", err)
	}
	if len(problems) == 1 && problems[0] == "ok" {
		log.Debug("store: integrity check passed", "path", path, "took", time.Since(began))
		return nil
	}
	return corruptError(path, fmt.Errorf("integrity check (PRAGMA quick_check) failed: %s", strings.Join(problems, "; ")))
}

func quickCheckRows(ctx context.Context, conn *sql.Conn) ([]string, error) {
	// At most 10 problems: enough to name the damage, short enough to read.
	rows, err := conn.QueryContext(ctx, "PRAGMA quick_check(10)")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return nil, err
		}
		out = append(out, line)
	}
	return out, rows.Err()
}
