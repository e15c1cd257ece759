package daemon

import (
	"context"
	"log/slog"
)

// component is a started part of the daemon and how to shut it down.
type component struct {
	name     string
	shutdown func(ctx context.Context)
}

// components are the parts New has started, in the order it started
// them. Shutdown stops them in reverse, so each part stops while what it
// uses still runs: the task drain first, while the store, the pools and
// the gRPC server serve it; the store, which every part writes to, near
// the end. A New that fails stops what it had started the same way.
type components struct {
	log *slog.Logger
	// started is appended to by New's steps and emptied by shutdown; New
	// and Shutdown never run at the same time (Shutdown needs New's
	// result).
	started []component
}

// add records that the part called name has started; shutdown will stop
// it with stop.
func (c *components) add(name string, stop func(ctx context.Context)) {
	c.started = append(c.started, component{name: name, shutdown: stop})
}

// names lists the started parts in the order they started.
func (c *components) names() []string {
	out := make([]string, len(c.started))
	for i, p := range c.started {
		out[i] = p.name
	}
	return out
}

// shutdown stops every started part, the last started first.
func (c *components) shutdown(ctx context.Context) {
	for i := len(c.started) - 1; i >= 0; i-- {
		p := c.started[i]
		p.shutdown(ctx)
		c.log.Debug("component stopped", "component", p.name)
	}
	c.started = nil
}
