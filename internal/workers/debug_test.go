package workers

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"
)

func TestDebugRecycle(t *testing.T) {
	cfg := testConfig(t, 1)
	cfg.MaxJobs = 1
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p := newTestPool(t, cfg)
	for range 3 {
		st := time.Now()
		out, err := p.Run(context.Background(), Job{Action: "pid"})
		t.Log(out, err, time.Since(st))
	}
}
