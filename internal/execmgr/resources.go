package execmgr

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/aura-dev/aura/internal/admission"
	"github.com/aura-dev/aura/internal/plan"
	"github.com/aura-dev/aura/internal/resources"
	"github.com/aura-dev/aura/internal/template"
)

// parentLabel marks a task the manager runs for another (a state
// transition): it runs under its parent's slots, so its own tags are not
// admitted and not rendered.
const parentLabel = "aura.parent"

// resourceTags renders a task's tags over its resolved inputs, adds the
// request's and checks them all against the declared pools. It returns
// the tags as rendered (what the task records and admission reads) and
// parsed; a bad tag is an *InvalidError naming it.
func (m *Manager) resourceTags(def *plan.Task, inputs map[string]any, extra []string, child bool) ([]string, []admission.Tag, error) {
	raw, err := renderedTags(def, inputs, extra, child)
	if err != nil {
		return nil, nil, err
	}
	tags, err := admission.ParseTags(raw)
	if err != nil {
		return nil, nil, &InvalidError{"resource_tags", err.Error()}
	}
	if !child {
		if err := m.decl.Load().CheckTags(tags); err != nil {
			return nil, nil, &InvalidError{"resource_tags", err.Error()}
		}
	}
	return raw, tags, nil
}

// renderedTags is a submission's tags as written: the task's own, each
// template rendered over inputs (a child's templated tags are left out:
// it is never admitted), then the request's.
func renderedTags(def *plan.Task, inputs map[string]any, extra []string, child bool) ([]string, error) {
	raw := make([]string, 0, len(def.Meta.ResourceTags)+len(extra))
	for i, tag := range def.Meta.ResourceTags {
		if i < len(def.Meta.ResourceTagTemplates) && def.Meta.ResourceTagTemplates[i] != nil {
			if child {
				continue
			}
			rendered, err := renderTag(def.Meta.ResourceTagTemplates[i], inputs)
			if err != nil {
				return nil, &InvalidError{"resource_tags", err.Error()}
			}
			tag = rendered
		}
		raw = append(raw, tag)
	}
	return append(raw, extra...), nil
}

// renderTag evaluates a templated tag; the result must be a non-empty
// string with no whitespace (it is parsed as a tag next).
func renderTag(t *template.Template, inputs map[string]any) (string, error) {
	v, err := t.Eval(map[string]any{"inputs": inputs})
	if err != nil {
		return "", fmt.Errorf("resource tag %q: %w", t.Source(), err)
	}
	s, ok := v.(string)
	if !ok {
		s = template.Stringify(v)
	}
	if v == nil || strings.TrimSpace(s) == "" || strings.ContainsFunc(s, unicode.IsSpace) {
		return "", fmt.Errorf("resource tag %q renders to %q, which is not a tag (empty, or holds whitespace): check the inputs it reads", t.Source(), s)
	}
	return s, nil
}

// bindLocked records on an admitted task the pool instances admission gave
// it (Task.resources), before anything of it runs. m.mu is held.
func (m *Manager) bindLocked(r *run) {
	bound := m.queue.Bound(r.id)
	r.mu.Lock()
	defer r.mu.Unlock()
	if bound == nil && r.snap == nil {
		return // packed, and nothing to record: leave it packed
	}
	r.unpackLocked()
	r.snap.Resources = bound
}

// boundResources are the pool instances the task holds (its parent's, for
// a transition); set before the task runs and never changed after.
func (r *run) boundResources() map[string]string {
	if r.snap == nil {
		return nil
	}
	return r.snap.Resources
}

// Resources describes every resource admission knows: limit, holders and
// the first waiters (see admission.Queue.Details).
func (m *Manager) Resources(firstWaiters int) []admission.ResourceDetail {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.queue.Details(firstWaiters)
}

// Declarations are the daemon's declared resources (nil: none).
func (m *Manager) Declarations() *resources.Declarations { return m.decl.Load() }
