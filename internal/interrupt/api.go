package interrupt

import (
	"context"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// ListInterrupts is the InterruptService's listing: the rules (of
// planName, or all) with their figures.
func (r *Runner) ListInterrupts(_ context.Context, planName string) ([]*aurav1.InterruptRule, error) {
	views := r.List(planName)
	out := make([]*aurav1.InterruptRule, 0, len(views))
	for _, v := range views {
		out = append(out, describe(v))
	}
	return out, nil
}

func describe(v RuleView) *aurav1.InterruptRule {
	rule := v.Rule
	pb := &aurav1.InterruptRule{
		Name: rule.ID, Check: rule.Check, Every: rule.Every.String(), Scope: rule.Scope, Handler: rule.Handler,
		Cooldown: rule.Cooldown.String(), Preempted: rule.Preempted, AbortStep: rule.AbortStep, Description: rule.Description,
		CooldownLeft: durationpb.New(v.CooldownLeft), ChecksRun: v.ChecksRun, ChecksErrored: v.CheckErrs, Fires: v.Fires,
		LastCheckError: v.LastCheckError,
	}
	if len(rule.Inputs) > 0 {
		// Inputs are plain values read from YAML, which structpb takes.
		if s, err := structpb.NewStruct(rule.Inputs); err == nil {
			pb.Inputs = s
		}
	}
	if f := v.LastFire; f != nil {
		pb.LastFire = &aurav1.InterruptFire{Time: timestamppb.New(f.Time), Instance: f.Target, TaskIds: f.TaskIDs}
	}
	for _, t := range v.Targets {
		pt := &aurav1.InterruptTarget{Instance: t.Target, TaskIds: t.TaskIDs, CooldownLeft: durationpb.New(t.CooldownLeft)}
		if !t.NextCheck.IsZero() {
			pt.NextCheck = timestamppb.New(t.NextCheck)
		}
		pb.Targets = append(pb.Targets, pt)
	}
	return pb
}
