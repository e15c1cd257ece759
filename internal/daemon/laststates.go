package daemon

import (
	"context"
	"fmt"

	"github.com/aura-dev/aura/internal/store"
)

// openLastStates opens the table of last known states beside a store in
// the data directory; it closes before the store does. An in-memory
// daemon keeps them in memory only.
func (d *Daemon) openLastStates(ctx context.Context) error {
	st, ok := d.Store.(*store.Store)
	if !ok {
		return nil
	}
	ls, err := store.OpenLastStates(ctx, st)
	if err != nil {
		return fmt.Errorf("opening the last known states in %s: %w", d.cfg.DataDir, err)
	}
	d.lastStates = ls
	d.parts.add("last states", func(context.Context) {
		if err := ls.Close(); err != nil {
			d.log.Warn("closing the last known states", "err", err)
		}
	})
	return nil
}
