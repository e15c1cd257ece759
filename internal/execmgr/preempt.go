package execmgr

import "maps"

// runPreemptor runs p, a task that preempted r, in the place of r's
// interrupt handler: on r's goroutine, bound to r's instances and under
// r's slots (p was lent them: it holds none of its own). It returns once
// p is over.
func (r *run) runPreemptor(p *run) {
	r.mu.Lock()
	bound := maps.Clone(r.snap.Resources)
	r.mu.Unlock()
	p.mu.Lock()
	p.unpackLocked()
	p.snap.Resources = bound
	p.mu.Unlock()
	r.m.tasks.run(p.execute())
	<-p.Done()
}
