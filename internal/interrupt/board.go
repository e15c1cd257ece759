package interrupt

import (
	"hash/fnv"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aura-dev/aura/internal/plan"
)

// Holder is a running task and the pool instances it holds.
type Holder struct {
	TaskID, Plan, Task string
	// Resources are the instances it holds, pool -> instance.
	Resources map[string]string
	// Paused is set while an interrupt's handler runs in its place.
	Paused bool
}

// Target names what a rule's check is polled for: "<pool>:<instance>",
// or "plan" or "global" for rules of those scopes.
type Target = string

// Due is a check to run now: the rule's check for target, run under the
// holder TaskID (so that it sees the instance as resources.<pool>).
type Due struct {
	Rule   *plan.Interrupt
	Target Target
	TaskID string
}

// Fire is a rule that fired: the tasks holding its target are to be
// interrupted.
type Fire struct {
	Rule    *plan.Interrupt
	Target  Target
	TaskIDs []string
	Time    time.Time
}

// TargetView is one target of a rule, for the listing.
type TargetView struct {
	Target       Target
	TaskIDs      []string // empty: listed for its cooldown only
	CooldownLeft time.Duration
	NextCheck    time.Time // zero while nothing holds it or a check runs
}

// RuleView is a rule with its figures, for the listing.
type RuleView struct {
	Rule                 *plan.Interrupt
	ChecksRun, CheckErrs uint64
	Fires                uint64
	LastFire             *Fire
	LastCheckError       string
	CooldownLeft         time.Duration
	Targets              []TargetView
}

// Board holds every rule's state and decides which checks are due and
// which results fire. It does no I/O and keeps no clock: every method is
// told the time. Not safe for concurrent use.
type Board struct {
	rules []*ruleState // by rule ID
	byID  map[string]*ruleState
	// fp sums up the holders the targets were worked out from (at synced);
	// dirty is set when the rules changed since.
	fp     string
	synced time.Time
	dirty  bool
	// next is the earliest due time of a held target's check not under
	// way (hasNext: there is one), kept as checks end and are dispatched.
	next    time.Time
	hasNext bool
}

type ruleState struct {
	rule *plan.Interrupt
	// targets are the targets held now, and those nothing holds that are
	// still in cooldown (or have a check under way).
	targets             map[Target]*target
	checks, errs, fires uint64
	lastFire            *Fire
	lastErr             string
}

type target struct {
	holders  []string // task IDs holding it, sorted; nil when nothing does
	runner   string   // the holder its check runs under: the first not paused
	paused   bool     // one of them is paused: an interrupt is handled there
	next     time.Time
	inFlight bool
	// firing: the rule fired here and its interrupts are under way (until
	// Settled); the target is not checked meanwhile.
	firing   bool
	cooldown time.Time // the rule may fire here again from then
}

// NewBoard returns an empty board.
func NewBoard() *Board { return &Board{byID: map[string]*ruleState{}} }

// Load sets the rules: at start and on every plan reload. A rule already
// on the board (same ID and scope) keeps its figures, targets and
// cooldowns, so a reload neither fires a rule early nor forgets it fired.
func (b *Board) Load(rules []*plan.Interrupt) {
	old := b.byID
	b.byID = make(map[string]*ruleState, len(rules))
	b.rules = b.rules[:0]
	for _, r := range rules {
		rs, had := old[r.ID]
		switch {
		case !had:
			rs = &ruleState{targets: map[Target]*target{}}
		case rs.rule.Scope != r.Scope || rs.rule.Plan.Name != r.Plan.Name:
			rs.targets = map[Target]*target{}
		}
		rs.rule = r
		b.byID[r.ID] = rs
		b.rules = append(b.rules, rs)
	}
	sort.Slice(b.rules, func(i, j int) bool { return b.rules[i].rule.ID < b.rules[j].rule.ID })
	b.dirty = true
}

// Len is the number of rules.
func (b *Board) Len() int { return len(b.rules) }

// MinEvery is the shortest polling interval of the rules (0: no rules).
func (b *Board) MinEvery() time.Duration {
	var m time.Duration
	for _, rs := range b.rules {
		if m == 0 || rs.rule.Every < m {
			m = rs.rule.Every
		}
	}
	return m
}

// held works out what holds each target of a rule: the running tasks of
// the rule's plan that hold an instance of its pool, the plan's running
// tasks (scope plan) or every running task (scope global).
func held(r *plan.Interrupt, holders []Holder) map[Target][]Holder {
	out := map[Target][]Holder{}
	for _, h := range holders {
		switch {
		case r.Scope == plan.InterruptScopeGlobal:
			out[plan.InterruptScopeGlobal] = append(out[plan.InterruptScopeGlobal], h)
		case h.Plan != r.Plan.Name:
		case r.Scope == plan.InterruptScopePlan:
			out[plan.InterruptScopePlan] = append(out[plan.InterruptScopePlan], h)
		default:
			if inst, ok := h.Resources[r.Scope]; ok && inst != "" {
				k := r.Scope + ":" + inst
				out[k] = append(out[k], h)
			}
		}
	}
	return out
}

// Observe tells the board what runs now and returns the checks due at
// now (slack early at most, a tenth of the rule's interval at most, so
// that checks due close together start together). A target that becomes
// held is first checked within one interval (firstWait), then every
// interval; one nothing holds any more is not checked again. A target
// with a paused holder is not checked while it is paused (its interrupt
// is being handled) nor for one interval after. Each returned check is
// under way until Checked.
func (b *Board) Observe(holders []Holder, now time.Time, slack time.Duration) []Due {
	// Working out the targets from the holders is most of the cost of a
	// poll; most polls see the same holders as the one before.
	fp := fingerprint(holders)
	if b.dirty || fp != b.fp || now.Sub(b.synced) >= resync || now.Before(b.synced) {
		b.sync(holders, now)
		b.fp, b.dirty, b.synced = fp, false, now
	}
	return b.dispatch(now, slack)
}

// resync bounds how long the board goes without working out its targets
// again, so that cooldowns that ended on targets nothing holds are let go.
const resync = time.Second

// fingerprint sums up what of holders the targets depend on.
func fingerprint(holders []Holder) string {
	var sb strings.Builder
	for _, h := range holders {
		sb.WriteString(h.TaskID)
		sb.WriteByte(0)
		sb.WriteString(h.Plan)
		if h.Paused {
			sb.WriteString("\x00p")
		}
		if len(h.Resources) == 1 {
			for pool, inst := range h.Resources {
				sb.WriteString("\x00" + pool + "\x00" + inst)
			}
		} else {
			pools := make([]string, 0, len(h.Resources))
			for pool := range h.Resources {
				pools = append(pools, pool)
			}
			sort.Strings(pools)
			for _, pool := range pools {
				sb.WriteString("\x00" + pool + "\x00" + h.Resources[pool])
			}
		}
		sb.WriteByte(1)
	}
	return sb.String()
}

// sync works out each rule's targets from holders.
func (b *Board) sync(holders []Holder, now time.Time) {
	// Rules of one plan and scope watch the same targets: worked out once.
	byScope := map[[2]string]map[Target][]Holder{}
	for _, rs := range b.rules {
		r := rs.rule
		sk := [2]string{r.Plan.Name, r.Scope}
		hm, ok := byScope[sk]
		if !ok {
			hm = held(r, holders)
			byScope[sk] = hm
		}
		for k, hs := range hm {
			t := rs.targets[k]
			if t == nil {
				t = &target{}
				rs.targets[k] = t
			}
			if t.holders == nil {
				t.next = later(now.Add(firstWait(r, k)), t.cooldown)
			}
			t.holders = t.holders[:0]
			t.paused = false
			t.runner = ""
			for _, h := range hs {
				t.holders = append(t.holders, h.TaskID)
				if h.Paused {
					t.paused = true
				} else if t.runner == "" || h.TaskID < t.runner {
					t.runner = h.TaskID
				}
			}
			sort.Strings(t.holders)
		}
		for k, t := range rs.targets {
			if _, ok := hm[k]; ok {
				continue
			}
			t.holders, t.paused, t.runner = nil, false, ""
			if !t.inFlight && !t.firing && !t.cooldown.After(now) {
				delete(rs.targets, k)
			}
		}
	}
}

// dispatch returns the checks due, marks them under way, and notes when
// the next is due.
func (b *Board) dispatch(now time.Time, slack time.Duration) []Due {
	var due []Due
	b.hasNext = false
	for _, rs := range b.rules {
		r := rs.rule
		early := now.Add(min(slack, r.Every/10))
		for k, t := range rs.targets {
			switch {
			case t.holders == nil || t.inFlight:
				continue
			case t.paused || t.firing:
				t.next = later(t.next, now.Add(r.Every))
				continue
			case !t.next.After(early):
				t.inFlight = true
				due = append(due, Due{Rule: r, Target: k, TaskID: t.runner})
				continue
			}
			b.noteNext(t.next)
		}
	}
	return due
}

// noteNext keeps the earliest due time of the checks not under way.
func (b *Board) noteNext(next time.Time) {
	if !b.hasNext || next.Before(b.next) {
		b.next, b.hasNext = next, true
	}
}

// firstWait is how long after a target became held its first check is
// due: a share of the interval, in (0, every], that is the same for a rule
// and target every time. Phones that start together are then checked
// spread over the interval rather than all at once each time.
func firstWait(r *plan.Interrupt, k Target) time.Duration {
	h := fnv.New32a()
	h.Write([]byte(r.ID))
	h.Write([]byte{0})
	h.Write([]byte(k))
	return r.Every * time.Duration(1+h.Sum32()%1000) / 1000
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// Checked records the result of a check Observe returned and says
// whether it fires: a truthy result on a target still held, out of its
// cooldown. A failed check (err set) is counted and does not fire. gone
// reports the check's holder ended while it ran: its error is not the
// check's, so it is not counted as one. The target's next check is due
// one interval after this one was (checks keep their pace however long
// each takes), at once if that has passed, or when a cooldown ends; next
// is that time (zero when the target is gone).
func (b *Board) Checked(d Due, truthy bool, err error, gone bool, now time.Time) (f *Fire, next time.Time) {
	rs := b.byID[d.Rule.ID]
	if rs == nil || rs.rule != d.Rule {
		// Reloaded while the check ran: the rule's new definition polls
		// again from its own schedule.
		if rs != nil {
			if t := rs.targets[d.Target]; t != nil {
				t.inFlight = false
			}
		}
		return nil, time.Time{}
	}
	t := rs.targets[d.Target]
	if t == nil {
		return nil, time.Time{}
	}
	t.inFlight = false
	t.next = later(later(t.next.Add(rs.rule.Every), now), t.cooldown)
	if t.holders != nil && !t.paused {
		b.noteNext(t.next)
	}
	if gone && err != nil {
		return nil, t.next
	}
	rs.checks++
	if err != nil {
		rs.errs++
		rs.lastErr = err.Error()
		return nil, t.next
	}
	if !truthy || len(t.holders) == 0 || t.paused || t.cooldown.After(now) {
		return nil, t.next
	}
	t.cooldown = now.Add(rs.rule.Cooldown)
	t.next = later(t.next, t.cooldown)
	t.firing = true
	rs.fires++
	f = &Fire{Rule: rs.rule, Target: d.Target, TaskIDs: slices.Clone(t.holders), Time: now}
	rs.lastFire = f
	return f, time.Time{}
}

// Settled records that a fire's interrupts are over (the handlers ran and
// the policies were applied, or the tasks could not be interrupted): the
// target is checked again one interval later, or when its cooldown ends.
func (b *Board) Settled(f *Fire, now time.Time) {
	rs := b.byID[f.Rule.ID]
	if rs == nil {
		return
	}
	if t := rs.targets[f.Target]; t != nil && t.firing {
		t.firing = false
		t.next = later(now.Add(rs.rule.Every), t.cooldown)
		if t.holders != nil && !t.paused {
			b.noteNext(t.next)
		}
	}
}

// NextDue is the earliest time a held target's check is due; false when
// none is.
func (b *Board) NextDue() (time.Time, bool) { return b.next, b.hasNext }

// View describes the rules (of planName, or all) at now.
func (b *Board) View(planName string, now time.Time) []RuleView {
	var out []RuleView
	for _, rs := range b.rules {
		if planName != "" && rs.rule.Plan.Name != planName {
			continue
		}
		v := RuleView{Rule: rs.rule, ChecksRun: rs.checks, CheckErrs: rs.errs, Fires: rs.fires, LastCheckError: rs.lastErr}
		if rs.lastFire != nil {
			f := *rs.lastFire
			v.LastFire = &f
		}
		keys := make([]string, 0, len(rs.targets))
		for k := range rs.targets {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			t := rs.targets[k]
			tv := TargetView{Target: k, TaskIDs: slices.Clone(t.holders), CooldownLeft: max(t.cooldown.Sub(now), 0)}
			if t.holders != nil && !t.inFlight && !t.paused && !t.firing {
				tv.NextCheck = t.next
			}
			v.CooldownLeft = max(v.CooldownLeft, tv.CooldownLeft)
			v.Targets = append(v.Targets, tv)
		}
		out = append(out, v)
	}
	return out
}
