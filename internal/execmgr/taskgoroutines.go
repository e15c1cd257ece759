package execmgr

import (
	"sync"
	"time"
)

// workerIdle is how long a task goroutine with nothing to run waits for
// the next admitted task before it exits.
const workerIdle = time.Second

// taskGoroutines runs admitted tasks. A task goroutine whose task's end
// admitted more runs the first of them next, and one that ran out of work
// waits for the next admitted task for up to workerIdle before it exits:
// under load a few goroutines with grown stacks carry task after task
// instead of one new goroutine (and its stack growth) per task. Against
// a plain goroutine per task this saves about a tenth to a fifth of the
// CPU a no-op task costs (BenchmarkManagerNoopTasks, CPU time per task,
// both variants interleaved in one run). It starts goroutines on demand;
// shutdown sends the idle ones home and waits for all of them.
type taskGoroutines struct {
	// Immutable after construction.
	handoff chan *run     // an idle goroutine takes the next task here
	quit    chan struct{} // closed by shutdown: idle goroutines exit

	quitOnce sync.Once
	wg       sync.WaitGroup // one per task goroutine, until it exits
}

func newTaskGoroutines() *taskGoroutines {
	return &taskGoroutines{handoff: make(chan *run), quit: make(chan struct{})}
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

// loop runs an admitted task and then, when its end admitted more, the
// first of them on the same goroutine (the rest of the end moves to a
// goroutine of its own if it would wait for a commit: see run.carryOut),
// else the next one handed over while it is parked.
func (g *taskGoroutines) loop(r *run) {
	idle := time.NewTimer(workerIdle)
	idle.Stop() // started by park
	for {
		next := r.execute()
		if len(next) > 1 {
			g.run(next[1:])
		}
		if len(next) > 0 {
			r = next[0]
			continue
		}
		if r = g.park(idle); r == nil {
			return
		}
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
