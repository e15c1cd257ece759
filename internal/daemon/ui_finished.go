package daemon

import (
	"context"
	"time"

	"github.com/aura-dev/aura/internal/store"
	"github.com/aura-dev/aura/internal/ui"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// finishedReader is what of the store the Overview's last-hour figures
// read: both the SQLite store and its in-memory twin have it.
type finishedReader interface {
	FinishedSince(ctx context.Context, since time.Time, limit int) ([]store.FinishedTask, bool, error)
}

// uiFinished gives the web UI the store's finished tasks, so its figures
// of the last hour survive a restart; nil when the store cannot.
func uiFinished(db store.DB) ui.FinishedSince {
	r, ok := db.(finishedReader)
	if !ok {
		return nil
	}
	return func(ctx context.Context, since time.Time, limit int) ([]ui.FinishedTask, bool, error) {
		list, more, err := r.FinishedSince(ctx, since, limit)
		out := make([]ui.FinishedTask, len(list))
		for i, f := range list {
			out[i] = ui.FinishedTask{Succeeded: f.Status == int32(aurav1.TaskStatus_TASK_STATUS_SUCCEEDED), CreatedAt: f.CreatedAt, FinishedAt: f.FinishedAt}
		}
		return out, more, err
	}
}
