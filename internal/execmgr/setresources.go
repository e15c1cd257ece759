package execmgr

import (
	"maps"
	"slices"

	"github.com/aura-dev/aura/internal/resources"
)

// SetResources swaps in newly read resource declarations (a reload): new
// pools, instances and counting resources are usable at once and changed
// limits apply to new admissions (lowering one takes no slot back). An
// instance no longer declared takes no new task: its holders keep it
// until they end, tasks asking for any instance of its pool get another,
// new tasks naming it are refused, and tasks already waiting for it by
// name keep waiting until it is declared again or they are cancelled; a
// warning names them. Config.ResourceLimits still win over the
// declarations.
func (m *Manager) SetResources(decl *resources.Declarations) {
	m.decl.Store(decl)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.daemonLims = decl.Limits()
	maps.Copy(m.daemonLims, m.flagLims)
	m.queue.SetPools(decl.AdmissionPools())
	st := m.queue.Stats()
	m.queue.SetLimits(st.GlobalLimit, m.limits(m.plans.Load()))
	for _, d := range m.queue.Details(3) {
		if d.Instance == "" || d.Waiting == 0 {
			continue
		}
		if p, ok := decl.Pool(d.Pool); ok && slices.Contains(p.Instances, d.Instance) {
			continue
		}
		m.log.Warn("tasks wait for a pool instance that is no longer declared; they start once it is declared again, or cancel them",
			"resource", d.Key, "waiting", d.Waiting, "first", d.Waiters)
	}
	m.tasks.run(m.admitLocked())
}
