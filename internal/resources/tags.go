package resources

import (
	"fmt"
	"slices"
	"strings"

	"github.com/aura-dev/aura/internal/admission"
)

// CheckTag says why a parsed tag cannot be admitted given the declared
// pools, or nil: a "<pool>:*" tag must name a declared pool and write no
// limit (the pool declares it), a tag under a pool's name must name one of
// its instances, and a pool's bare name asks for nothing in particular.
// Tags outside every pool are counting resources, declared or not.
func (d *Declarations) CheckTag(t admission.Tag) error {
	bad := func(format string, args ...any) error {
		return &admission.TagError{Tag: t.String(), Reason: fmt.Sprintf(format, args...)}
	}
	if name := admission.PoolOf(t.Key); name != "" {
		pool, ok := d.Pool(name)
		switch {
		case !ok:
			return bad("no pool %q is declared%s", name, d.poolList())
		case t.Explicit:
			return bad("a pool's limit is declared with the pool (%d per instance); write %s", pool.Limit, t.Key)
		}
		return nil
	}
	if d == nil {
		return nil
	}
	for _, p := range d.Pools {
		if t.Key == p.Name {
			return bad("%s is a pool: ask for %s:* (any instance) or %s:<instance>", p.Name, p.Name, p.Name)
		}
		inst, ok := strings.CutPrefix(t.Key, p.Name+":")
		if ok && !slices.Contains(p.Instances, inst) {
			return bad("pool %q has no instance %q (instances: %s)", p.Name, inst, strings.Join(p.Instances, ", "))
		}
	}
	return nil
}

// CheckTagString parses and checks one written tag (plan check).
func (d *Declarations) CheckTagString(s string) error {
	t, err := admission.ParseTag(s)
	if err != nil {
		return err
	}
	return d.CheckTag(t)
}

func (d *Declarations) poolList() string {
	if d == nil || len(d.Pools) == 0 {
		return " (the daemon declares no pools: aurad --resources FILE)"
	}
	names := make([]string, len(d.Pools))
	for i, p := range d.Pools {
		names[i] = p.Name
	}
	return " (pools: " + strings.Join(names, ", ") + ")"
}

// CheckTags checks a task's tags together: each with CheckTag, and at
// most one instance of each pool (Task.resources names one per pool).
func (d *Declarations) CheckTags(tags []admission.Tag) error {
	perPool := map[string]string{}
	for _, t := range tags {
		if err := d.CheckTag(t); err != nil {
			return err
		}
		pool := d.poolOf(t.Key)
		if pool == "" {
			continue
		}
		if first, dup := perPool[pool]; dup {
			return &admission.TagError{Tag: t.String(), Reason: fmt.Sprintf("the task already asks for %s: a task holds at most one instance of pool %q", first, pool)}
		}
		perPool[pool] = t.Key
	}
	return nil
}

// poolOf is the pool a checked tag key asks for an instance of, or "".
func (d *Declarations) poolOf(key string) string {
	if name := admission.PoolOf(key); name != "" {
		return name
	}
	if d == nil {
		return ""
	}
	for _, p := range d.Pools {
		if strings.HasPrefix(key, p.Name+":") {
			return p.Name
		}
	}
	return ""
}
