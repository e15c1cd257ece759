package execmgr

import (
	"context"
	"sync"
	"time"
)

// workerIdle is how long a task goroutine with nothing to run waits for
// the next admitted task before it exits.
const workerIdle = time.Second

// taskGoroutinesParams configure taskGoroutines.
type taskGoroutinesParams struct {
	// base is the parent of every task's context.
	base context.Context
	// ended is called once an admitted task's end is over (its terminal
	// record and after hooks): the manager counts admitted tasks until then.
	ended func()
}

// taskGoroutines runs admitted tasks. Task goroutines that ran out of
// work wait for the next admitted task for up to workerIdle before they
// exit, so a steady stream of short tasks reuses warm goroutines instead
// of starting one per task (and growing its stack again). It starts
// goroutines on demand; shutdown sends the idle ones home and waits for
// all of them.
type taskGoroutines struct {
	// Immutable after construction.
	base    context.Context
	ended   func()
	handoff chan *run     // an idle goroutine takes the next task here
	quit    chan struct{} // closed by shutdown: idle goroutines exit

	quitOnce sync.Once
	wg       sync.WaitGroup // one per task goroutine, until it exits
}

func newTaskGoroutines(p taskGoroutinesParams) *taskGoroutines {
	return &taskGoroutines{base: p.base, ended: p.ended, handoff: make(chan *run), quit: make(chan struct{})}
}

// run runs admitted tasks: each goes to an idle task goroutine, or to a
// new one. It never blocks.
func (g *taskGoroutines) run(rs []*run) {
	for _, r := range rs {
		select {
		case g.handoff <- r: // an idle task goroutine took it
		default:
			g.wg.Add(1)
			go func() {
				defer g.wg.Done()
				g.loop(r)
			}()
		}
	}
}

// loop runs an admitted task and then, when releasing its slots admitted
// more, the next one on the same goroutine: under load a few goroutines
// with warm stacks carry task after task instead of one new goroutine (and
// its stack growth) per task. The end of a task (waiting for its terminal
// record, the after hooks) then moves to a goroutine of its own, so the
// next task does not wait for that commit.
func (g *taskGoroutines) loop(r *run) {
	idle := time.NewTimer(workerIdle)
	idle.Stop() // started by park
	for {
		next, tail, committed := r.execute(g.base)
		if len(next) > 1 {
			g.run(next[1:])
		}
		switch {
		case len(next) == 0:
			tail()
			g.ended() // r's; each admitted run has its own
			if r = g.park(idle); r == nil {
				return
			}
			continue
		case committed: // the rest does not wait: no goroutine needed
			tail()
			g.ended()
		default:
			go func() {
				tail()
				g.ended()
			}()
		}
		r = next[0]
	}
}

// park waits for the next task run hands over, up to workerIdle; nil
// means none came (or shutdown began) and the goroutine should exit. idle
// is the goroutine's own timer, stopped between parks.
func (g *taskGoroutines) park(idle *time.Timer) *run {
	idle.Reset(workerIdle)
	defer idle.Stop()
	select {
	case r := <-g.handoff:
		return r
	case <-idle.C:
		return nil
	case <-g.quit:
		return nil
	}
}

// shutdown sends idle goroutines home and waits for every task goroutine
// to exit. The caller has let the running tasks end first.
func (g *taskGoroutines) shutdown() {
	g.quitOnce.Do(func() { close(g.quit) })
	g.wg.Wait()
}
