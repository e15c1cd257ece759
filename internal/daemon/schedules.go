package daemon

import (
	"context"
	"fmt"

	"github.com/aura-dev/aura/internal/cluster"
	"github.com/aura-dev/aura/internal/plan"
	"github.com/aura-dev/aura/internal/schedule"
	"github.com/aura-dev/aura/internal/store"
)

// buildSchedules makes the scheduler, on the store's schedule tables; it
// fires nothing until startSchedules.
func (d *Daemon) buildSchedules() error {
	var states store.ScheduleStore
	if st, ok := d.Store.(*store.Store); ok {
		t, err := store.OpenScheduleTable(st)
		if err != nil {
			return err
		}
		states = t
	} else {
		states = store.NewScheduleMemory()
	}
	if d.cluster != nil {
		// In a cluster the states are the cluster's and only the leader
		// fires ticks (cluster.go).
		states = cluster.NewScheduleStates(d.cluster.Membership.Client(), states, d.nodeName(), d.log)
	}
	// Closed after the store's own parts stop using it: registered before
	// the runner, so stopped after it.
	d.parts.add("schedule state", func(context.Context) {
		if err := states.Close(); err != nil {
			d.log.Warn("closing the schedule tables", "err", err)
		}
	})
	d.Schedules = schedule.New(schedule.Params{
		Tasks: d.Manager, Log: d.Store, States: states,
		DefaultZone: d.cfg.Timezone, Logger: d.log,
		Metrics: schedule.NewMetrics(d.Metrics.Registry),
	})
	if d.cluster != nil {
		d.cluster.Leadership.Lead(d.Schedules.Lead)
	}
	return nil
}

// startSchedules starts firing, once recovered tasks are back in the
// manager (the overlap policies need to know what still runs). It stops
// before the drain: no fire is submitted to a manager that refuses it.
func (d *Daemon) startSchedules(ctx context.Context, set *plan.Set) error {
	if err := d.Schedules.Start(ctx, set); err != nil {
		return fmt.Errorf("starting the schedules: %w", err)
	}
	d.parts.add("schedules", func(context.Context) { d.Schedules.Shutdown() })
	if n := len(set.Schedules()); n > 0 {
		d.log.Info("schedules loaded", "schedules", n)
	}
	return nil
}
