package engine

import (
	"maps"
	"strings"
)

// resourceScope is the template scope's resources: pool -> instance.
func resourceScope(bound map[string]string) map[string]any {
	out := make(map[string]any, len(bound))
	for pool, inst := range bound {
		out[pool] = inst
	}
	return out
}

// withResourceEnv gives an exec step the task's instances as environment
// variables (AURA_RESOURCE_<POOL>), over any the step sets itself with the
// same names: the binding is what admission gave the task. Other actions'
// params are returned as they are.
func (ru *run) withResourceEnv(action string, params map[string]any) map[string]any {
	if action != "exec" || len(ru.req.Binding) == 0 {
		return params
	}
	env := map[string]any{}
	if given, ok := params["env"].(map[string]any); ok {
		maps.Copy(env, given)
	} else if params["env"] != nil {
		return params // not a map: exec reports that itself
	}
	for pool, inst := range ru.req.Binding {
		env[ResourceEnvName(pool)] = inst
	}
	out := maps.Clone(params)
	if out == nil {
		out = map[string]any{}
	}
	out["env"] = env
	return out
}

// ResourceEnvName is the environment variable that carries a task's
// instance of pool to exec steps: AURA_RESOURCE_ and the pool's name
// upper-cased, every character other than a letter or digit made '_'
// ("device" -> AURA_RESOURCE_DEVICE, "lab-phone" -> AURA_RESOURCE_LAB_PHONE).
func ResourceEnvName(pool string) string {
	var b strings.Builder
	b.WriteString("AURA_RESOURCE_")
	for _, r := range strings.ToUpper(pool) {
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}
