package daemon

import (
	"github.com/aura-dev/aura/internal/admission"
	"github.com/aura-dev/aura/internal/metrics"
)

// instanceGauges reads each declared pool instance's admission figures
// for the metrics; instances not declared get no series.
func (d *Daemon) instanceGauges() []metrics.Instance {
	decl := d.Manager.Declarations()
	if decl == nil || len(decl.Pools) == 0 {
		return nil
	}
	st, _ := d.Manager.Stats()
	byKey := make(map[string]int, len(st.Resources))
	for i, r := range st.Resources {
		byKey[r.Key] = i
	}
	var out []metrics.Instance
	for _, p := range decl.Pools {
		for _, inst := range p.Instances {
			m := metrics.Instance{Pool: p.Name, Instance: inst, Limit: p.Limit}
			if i, ok := byKey[admission.InstanceKey(p.Name, inst)]; ok {
				r := st.Resources[i]
				m.Limit, m.Held, m.Waiting = r.Limit, r.InUse, r.Waiting
			}
			out = append(out, m)
		}
	}
	return out
}
