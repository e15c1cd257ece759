package engine

import (
	"maps"
	"strconv"
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
// variables (AURA_RESOURCE_<POOL>), and the fencing tokens of its
// cluster-scope slots (AURA_FENCE_<KEY>), over any the step sets itself
// with the same names: they are what admission gave the task. Other
// actions' params are returned as they are.
func (ru *run) withResourceEnv(action string, params map[string]any) map[string]any {
	if action != "exec" || len(ru.req.Binding) == 0 && len(ru.req.Fences) == 0 {
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
	for key, rev := range ru.req.Fences {
		env[FenceEnvName(key)] = strconv.FormatInt(rev, 10)
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
func ResourceEnvName(pool string) string { return envName("AURA_RESOURCE_", pool) }

// FenceEnvName is the environment variable that carries the fencing token
// of a task's slot of the cluster-scope resource key to exec steps:
// AURA_FENCE_ and the key made a name as ResourceEnvName does
// ("account:main" -> AURA_FENCE_ACCOUNT_MAIN).
func FenceEnvName(key string) string { return envName("AURA_FENCE_", key) }

func envName(prefix, name string) string {
	var b strings.Builder
	b.WriteString(prefix)
	for _, r := range strings.ToUpper(name) {
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}
