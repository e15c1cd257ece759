package resources

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/aura-dev/aura/internal/admission"
)

// Pool is a pool of named instances: a task asks for any one with the tag
// "<name>:*", or for a given one with "<name>:<instance>".
type Pool struct {
	Name      string
	Instances []string
	Limit     int // tasks per instance at once; 1 unless declared
}

// Declarations are the daemon's declared resources. The zero value (and a
// nil *Declarations) declares none.
type Declarations struct {
	Pools    []Pool         // in the order declared
	Counters map[string]int // plain counting resources: key -> limit
	// Cluster names the counting resources declared scope: cluster: their
	// slots are shared by every node of a cluster (etcd semaphores), not
	// counted by this daemon alone.
	Cluster map[string]bool
}

// Scopes a counting resource may declare.
const (
	ScopeNode    = "node"    // the default: counted by this daemon alone
	ScopeCluster = "cluster" // counted across the cluster's nodes
)

// Load reads a resources file: a YAML document whose only top-level key is
// resources. Every problem is reported as file:line: message.
func Load(path string) (*Declarations, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("resources file: %w", err)
	}
	return parse(data, path, true)
}

// ParseSection reads the resources: section of aurad's config file (its
// other keys are settings, read elsewhere); nil when there is none.
func ParseSection(data []byte, path string) (*Declarations, error) {
	return parse(data, path, false)
}

// problems collects file:line messages.
type problems struct {
	path string
	msgs []string
}

func (p *problems) add(n ast.Node, format string, args ...any) {
	line := 1
	if n != nil && n.GetToken() != nil {
		line = n.GetToken().Position.Line
	}
	p.msgs = append(p.msgs, fmt.Sprintf("%s:%d: %s", p.path, line, fmt.Sprintf(format, args...)))
}

func (p *problems) err() error {
	if len(p.msgs) == 0 {
		return nil
	}
	return errors.New(strings.Join(p.msgs, "\n"))
}

func parse(data []byte, path string, only bool) (*Declarations, error) {
	file, err := parser.ParseBytes(data, 0)
	if err != nil {
		var ye yaml.Error
		if errors.As(err, &ye) && ye.GetToken() != nil {
			return nil, fmt.Errorf("%s:%d: YAML syntax: %s", path, ye.GetToken().Position.Line, ye.GetMessage())
		}
		return nil, fmt.Errorf("%s: YAML syntax: %v", path, err)
	}
	p := &problems{path: path}
	var section ast.Node
	for _, d := range file.Docs {
		if d.Body == nil {
			continue
		}
		top, ok := d.Body.(*ast.MappingNode)
		if !ok {
			p.add(d.Body, "expected a mapping with a resources: key")
			continue
		}
		for _, mv := range top.Values {
			switch key := mv.Key.GetToken().Value; {
			case key == "resources":
				section = mv.Value
			case only:
				p.add(mv.Key, "unknown key %q (a resources file holds only resources:)", key)
			}
		}
	}
	if section == nil {
		if only && len(p.msgs) == 0 {
			p.add(nil, "no resources: key")
		}
		return nil, p.err()
	}
	d := &Declarations{Counters: map[string]int{}}
	counterAt := map[string]ast.Node{}
	m, ok := section.(*ast.MappingNode)
	if !ok {
		if _, null := section.(*ast.NullNode); !null {
			p.add(section, "resources must be a mapping of resource names to a limit or a pool")
		}
		return d, p.err()
	}
	for _, mv := range m.Values {
		name := mv.Key.GetToken().Value
		if s, ok := mv.Key.(*ast.StringNode); ok {
			name = s.Value
		}
		if err := checkKey(name); err != "" {
			p.add(mv.Key, "resource %q: %s", name, err)
			continue
		}
		if slices.ContainsFunc(d.Pools, func(o Pool) bool { return o.Name == name }) || d.Counters[name] > 0 {
			p.add(mv.Key, "resource %q is declared twice", name)
			continue
		}
		switch v := mv.Value.(type) {
		case *ast.IntegerNode:
			n, ok := positive(v)
			if !ok {
				p.add(v, "resource %q: the limit must be a positive integer", name)
				continue
			}
			d.Counters[name] = n
			counterAt[name] = mv.Key
		case *ast.MappingNode:
			if !hasKey(v, "instances") && !hasKey(v, "instance") {
				// A counting resource in the long form: {limit: n, scope: s}.
				if n, cluster, ok := parseCounter(p, name, v); ok {
					d.Counters[name] = n
					counterAt[name] = mv.Key
					if cluster {
						if d.Cluster == nil {
							d.Cluster = map[string]bool{}
						}
						d.Cluster[name] = true
					}
				}
				continue
			}
			if pool, ok := parsePool(p, name, v); ok {
				d.Pools = append(d.Pools, pool)
			}
		default:
			p.add(mv.Value, "resource %q: want a limit (a positive integer), a counting resource ({limit: n, scope: cluster}) or a pool ({instances: [...], limit: n})", name)
		}
	}
	// A counting key under a pool's name would be one of its instances.
	for _, k := range slices.Sorted(maps.Keys(d.Counters)) {
		for _, pool := range d.Pools {
			if strings.HasPrefix(k, pool.Name+":") {
				p.add(counterAt[k], "resource %q: its name is inside pool %q; declare it as an instance of the pool", k, pool.Name)
			}
		}
	}
	return d, p.err()
}

// hasKey reports whether the mapping m has key.
func hasKey(m *ast.MappingNode, key string) bool {
	for _, mv := range m.Values {
		if mv.Key.GetToken().Value == key {
			return true
		}
	}
	return false
}

// parseCounter reads a counting resource's long form, {limit: n, scope:
// node|cluster}: its limit and whether it is shared by the cluster.
func parseCounter(p *problems, name string, m *ast.MappingNode) (limit int, cluster, good bool) {
	good = true
	for _, mv := range m.Values {
		switch key := mv.Key.GetToken().Value; key {
		case "limit":
			n, ok := 0, false
			if iv, isInt := mv.Value.(*ast.IntegerNode); isInt {
				n, ok = positive(iv)
			}
			if !ok {
				p.add(mv.Value, "resource %q: limit must be a positive integer", name)
				good = false
				continue
			}
			limit = n
		case "scope":
			switch v := mv.Value.GetToken().Value; v {
			case ScopeCluster:
				cluster = true
			case ScopeNode:
			default:
				p.add(mv.Value, "resource %q: scope %q: want %s (the default: counted by each daemon alone) or %s (one limit across the cluster's nodes)",
					name, v, ScopeNode, ScopeCluster)
				good = false
			}
		default:
			p.add(mv.Key, "resource %q: unknown key %q (a counting resource has limit and scope; a pool has instances and limit)", name, key)
			good = false
		}
	}
	if limit == 0 && good {
		p.add(m, "resource %q: limit is required", name)
		good = false
	}
	return limit, cluster, good
}

func parsePool(p *problems, name string, m *ast.MappingNode) (Pool, bool) {
	pool := Pool{Name: name, Limit: 1}
	good, seen := true, false
	for _, mv := range m.Values {
		switch key := mv.Key.GetToken().Value; key {
		case "instances":
			seen = true
			seq, ok := mv.Value.(*ast.SequenceNode)
			if !ok || len(seq.Values) == 0 {
				p.add(mv.Value, "pool %q: instances must be a list of names, not empty", name)
				good = false
				continue
			}
			for _, it := range seq.Values {
				inst := it.GetToken().Value
				if s, ok := it.(*ast.StringNode); ok {
					inst = s.Value
				}
				if why := checkInstance(inst); why != "" {
					p.add(it, "pool %q: instance %q: %s", name, inst, why)
					good = false
					continue
				}
				if slices.Contains(pool.Instances, inst) {
					p.add(it, "pool %q: instance %q is listed twice", name, inst)
					good = false
					continue
				}
				pool.Instances = append(pool.Instances, inst)
			}
		case "limit":
			n, ok := 0, false
			if iv, isInt := mv.Value.(*ast.IntegerNode); isInt {
				n, ok = positive(iv)
			}
			if !ok {
				p.add(mv.Value, "pool %q: limit (tasks per instance at once) must be a positive integer", name)
				good = false
				continue
			}
			pool.Limit = n
		case "scope":
			// Admission picks a pool's instance from this node's counts;
			// shared instances would need the pick made across nodes.
			p.add(mv.Key, "pool %q: scope applies to counting resources only (a pool's instances are plugged into one node); "+
				"declare a resource shared by the cluster as {limit: n, scope: cluster}", name)
			good = false
		default:
			p.add(mv.Key, "pool %q: unknown key %q (allowed: instances, limit)", name, key)
			good = false
		}
	}
	if !seen {
		p.add(m, "pool %q: instances is required", name)
		good = false
	}
	return pool, good
}

func positive(v *ast.IntegerNode) (int, bool) {
	n, err := strconv.Atoi(v.GetToken().Value)
	return n, err == nil && n > 0
}

// checkKey says why name cannot be a resource's name, or "".
func checkKey(name string) string {
	t, err := admission.ParseTag(name)
	switch {
	case err != nil:
		var te *admission.TagError
		if errors.As(err, &te) {
			return te.Reason
		}
		return err.Error()
	case t.Explicit || t.Key != name:
		return "a name may not end in \":<integer>\" (that reads as a tag limit)"
	case strings.Contains(name, "*"):
		return "a name may not contain '*'"
	}
	return ""
}

// checkInstance says why name cannot be an instance's name, or "".
func checkInstance(name string) string {
	switch {
	case name == "":
		return "empty name"
	case strings.ContainsAny(name, ":*"):
		return "a name may not contain ':' or '*'"
	case strings.IndexFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return "contains whitespace or a control character"
	}
	if _, err := strconv.Atoi(strings.TrimLeft(name, "+-")); err == nil {
		return "a name may not be an integer (\"<pool>:<integer>\" reads as a tag limit)"
	}
	return ""
}

// Pool returns the pool called name.
func (d *Declarations) Pool(name string) (Pool, bool) {
	if d == nil {
		return Pool{}, false
	}
	i := slices.IndexFunc(d.Pools, func(p Pool) bool { return p.Name == name })
	if i < 0 {
		return Pool{}, false
	}
	return d.Pools[i], true
}

// Limits are the declared limits by admission key: each counting resource's
// and each pool instance's (its pool's limit). They win over limits in
// plan.yaml and on tags.
func (d *Declarations) Limits() map[string]int {
	out := map[string]int{}
	if d == nil {
		return out
	}
	maps.Copy(out, d.Counters)
	for _, p := range d.Pools {
		for _, inst := range p.Instances {
			out[admission.InstanceKey(p.Name, inst)] = p.Limit
		}
	}
	return out
}

// ClusterKeys are the counting resources declared scope: cluster, sorted:
// admission's shared keys, whose slots a cluster's Ledger counts.
func (d *Declarations) ClusterKeys() []string {
	if d == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(d.Cluster))
}

// AdmissionPools are the pools as the admission queue takes them.
func (d *Declarations) AdmissionPools() []admission.Pool {
	if d == nil {
		return nil
	}
	out := make([]admission.Pool, 0, len(d.Pools))
	for _, p := range d.Pools {
		out = append(out, admission.Pool{Name: p.Name, Instances: p.Instances})
	}
	return out
}

// Merge returns d with the declarations of o added; a name declared in both
// is an error.
func Merge(d, o *Declarations) (*Declarations, error) {
	out := &Declarations{Counters: map[string]int{}}
	for _, src := range []*Declarations{d, o} {
		if src == nil {
			continue
		}
		for _, p := range src.Pools {
			if _, dup := out.Pool(p.Name); dup || out.Counters[p.Name] > 0 {
				return nil, fmt.Errorf("resource %q is declared both in --resources and in --config", p.Name)
			}
			out.Pools = append(out.Pools, p)
		}
		for k, n := range src.Counters {
			if _, dup := out.Pool(k); dup || out.Counters[k] > 0 {
				return nil, fmt.Errorf("resource %q is declared both in --resources and in --config", k)
			}
			out.Counters[k] = n
			if src.Cluster[k] {
				if out.Cluster == nil {
					out.Cluster = map[string]bool{}
				}
				out.Cluster[k] = true
			}
		}
	}
	return out, nil
}

// Summary lists the pools with their instances, for a log line:
// "device: a, b".
func (d *Declarations) Summary() []string {
	if d == nil {
		return nil
	}
	out := make([]string, 0, len(d.Pools))
	for _, p := range d.Pools {
		out = append(out, p.Name+": "+strings.Join(p.Instances, ", "))
	}
	return out
}

// ReloadError is a resources file that could not be read again on a
// reload: the declarations in force, and the plans, are kept.
type ReloadError struct{ Err error }

func (e *ReloadError) Error() string { return e.Err.Error() }
func (e *ReloadError) Unwrap() error { return e.Err }
