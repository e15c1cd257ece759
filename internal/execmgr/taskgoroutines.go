package execmgr

import "sync"

// taskGoroutines runs admitted tasks, one goroutine each, started as they
// are admitted; shutdown waits for all of them.
type taskGoroutines struct {
	wg sync.WaitGroup // one per task goroutine, until it exits
}

func newTaskGoroutines() *taskGoroutines { return &taskGoroutines{} }

// run starts a goroutine for each admitted task. It never blocks.
func (g *taskGoroutines) run(rs []*run) {
	for _, r := range rs {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			r.execute()
		}()
	}
}

// shutdown waits for every task goroutine to exit. The caller has let the
// running tasks end first.
func (g *taskGoroutines) shutdown() { g.wg.Wait() }
