package auth

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Role is one permission a principal may hold.
type Role string

// The roles. Each RPC needs exactly one (see methodRules); admin does not
// imply the others.
const (
	RoleSubmit Role = "submit" // Submit, SubmitStream, TriggerSchedule, BackfillSchedule
	RoleRead   Role = "read"   // GetTask, ListTasks, Stream, ListPlans, GetStats, ListResources, ListSchedules, ListNodes
	RoleCancel Role = "cancel" // CancelTask
	RoleHooks  Role = "hooks"  // Subscribe, Intercept
	RoleAdmin  Role = "admin"  // ReloadPlans, PauseSchedule, ResumeSchedule
)

// Roles lists every role, in the order they are documented.
var Roles = []Role{RoleSubmit, RoleRead, RoleCancel, RoleHooks, RoleAdmin}

// ParseRole checks that s names a role.
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if !slices.Contains(Roles, r) {
		names := make([]string, len(Roles))
		for i, r := range Roles {
			names[i] = string(r)
		}
		return "", fmt.Errorf("unknown role %q (want one of %s)", s, strings.Join(names, ", "))
	}
	return r, nil
}

// Principal is an authenticated caller. It is immutable once built.
type Principal struct {
	// Name identifies the principal in logs and keys its limits.
	Name  string
	roles map[Role]bool
	// plans is the allowlist; nil means every plan.
	plans map[string]bool
	// maxPriority caps the priority it may submit with; nil: the guard's
	// Options.MaxPriority.
	maxPriority *int32
}

// NewPrincipal builds a principal with the given roles; plans, when
// non-empty, is the only plans it may touch.
func NewPrincipal(name string, roles []Role, plans []string) *Principal {
	p := &Principal{Name: name, roles: map[Role]bool{}}
	for _, r := range roles {
		p.roles[r] = true
	}
	if len(plans) > 0 {
		p.plans = map[string]bool{}
		for _, pl := range plans {
			p.plans[pl] = true
		}
	}
	return p
}

// AnonymousName is the principal every caller is when authentication is
// off (without a client certificate).
const AnonymousName = "anonymous"

// anonymous is every caller when authentication is off: all roles, all plans.
func anonymous(name string) *Principal {
	return NewPrincipal(name, Roles, nil)
}

// sameRights reports whether q is p with the same name, roles and plans:
// after a tokens file reload, p's open streams may go on as q's.
func (p *Principal) sameRights(q *Principal) bool {
	return p.Name == q.Name && maps.Equal(p.roles, q.roles) && (p.plans == nil) == (q.plans == nil) && maps.Equal(p.plans, q.plans)
}

// Has reports whether the principal holds r.
func (p *Principal) Has(r Role) bool { return p.roles[r] }

// Scoped reports whether the principal is limited to some plans.
func (p *Principal) Scoped() bool { return p.plans != nil }

// PlanAllowed reports whether the principal may touch plan.
func (p *Principal) PlanAllowed(plan string) bool { return p.plans == nil || p.plans[plan] }

type principalKey struct{}

// NewContext returns ctx carrying p.
func NewContext(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal an interceptor attached to ctx.
func FromContext(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*Principal)
	return p, ok
}

// PlanOfTask returns the plan part of a "plan/task" name.
func PlanOfTask(task string) string {
	plan, _, _ := strings.Cut(task, "/")
	return plan
}
