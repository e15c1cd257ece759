package daemon

import (
	"context"
	"errors"

	"github.com/aura-dev/aura/internal/execmgr"
	"github.com/aura-dev/aura/internal/interrupt"
	"github.com/aura-dev/aura/internal/plan"
)

// buildInterrupts makes the interrupt poller on the manager; it polls
// nothing until startInterrupts.
func (d *Daemon) buildInterrupts() {
	d.Interrupts = interrupt.New(interrupt.Params{
		Manager: interruptPort{d.Manager}, Logger: d.log,
		Metrics: interrupt.NewMetrics(d.Metrics.Registry),
	})
}

// startInterrupts starts polling the plans' interrupt rules once recovered
// tasks are back in the manager. It stops before the drain: no check runs
// and no interrupt is asked for while the tasks stop.
func (d *Daemon) startInterrupts(set *plan.Set) {
	d.Interrupts.Start(set)
	d.parts.add("interrupts", func(context.Context) { d.Interrupts.Shutdown() })
	if n := len(set.Interrupts()); n > 0 {
		d.log.Info("interrupt rules loaded", "rules", n)
	}
}

// interruptPort is the ExecutionManager as the interrupt poller uses it.
type interruptPort struct{ m *execmgr.Manager }

func (p interruptPort) Holders() []interrupt.Holder {
	hs := p.m.Holders()
	out := make([]interrupt.Holder, len(hs))
	for i, h := range hs {
		// A holder that does not run its steps (it plans, or is paused)
		// is not polled: its instance is busy with something else.
		out[i] = interrupt.Holder{TaskID: h.TaskID, Plan: h.Plan, Task: h.Task, Resources: h.Resources, Paused: !h.Running}
	}
	return out
}

func (p interruptPort) Check(ctx context.Context, taskID, checkTask string) (bool, error) {
	return p.m.Check(ctx, taskID, checkTask)
}

func (p interruptPort) Interrupt(ctx context.Context, taskID string, req interrupt.Request) error {
	err := p.m.Interrupt(ctx, taskID, execmgr.Interrupt{Rule: req.Rule, Handler: req.Handler, Inputs: req.Inputs,
		AbortStep: req.AbortStep, Policy: execmgr.Policy(req.Preempted)})
	if errors.Is(err, execmgr.ErrNotInterruptible) {
		return errors.Join(interrupt.ErrNotInterruptible, err)
	}
	return err
}
