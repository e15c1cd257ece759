package server

import (
	"context"
	"time"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// Schedules is what the ScheduleService serves (schedule.Runner).
type Schedules interface {
	List(ctx context.Context, plan string, next int) ([]*aurav1.Schedule, error)
	Pause(ctx context.Context, id string) (*aurav1.Schedule, error)
	Resume(ctx context.Context, id string) (*aurav1.Schedule, error)
	Trigger(ctx context.Context, id string) (*aurav1.TriggerScheduleResponse, error)
	Backfill(ctx context.Context, id string, from, to time.Time) (*aurav1.BackfillScheduleResponse, error)
}

// scheduleService implements aura.v1.ScheduleService.
type scheduleService struct {
	aurav1.UnimplementedScheduleServiceServer
	d Deps
}

func (s *scheduleService) ListSchedules(ctx context.Context, req *aurav1.ListSchedulesRequest) (*aurav1.ListSchedulesResponse, error) {
	list, err := s.d.Schedules.List(ctx, req.GetPlan(), int(req.GetNextCount()))
	if err != nil {
		return nil, toStatus(s.d.Logger, err)
	}
	return &aurav1.ListSchedulesResponse{Schedules: list}, nil
}

func (s *scheduleService) PauseSchedule(ctx context.Context, req *aurav1.PauseScheduleRequest) (*aurav1.Schedule, error) {
	out, err := s.d.Schedules.Pause(ctx, req.GetSchedule())
	return out, toStatus(s.d.Logger, err)
}

func (s *scheduleService) ResumeSchedule(ctx context.Context, req *aurav1.ResumeScheduleRequest) (*aurav1.Schedule, error) {
	out, err := s.d.Schedules.Resume(ctx, req.GetSchedule())
	return out, toStatus(s.d.Logger, err)
}

func (s *scheduleService) TriggerSchedule(ctx context.Context, req *aurav1.TriggerScheduleRequest) (*aurav1.TriggerScheduleResponse, error) {
	out, err := s.d.Schedules.Trigger(ctx, req.GetSchedule())
	return out, toStatus(s.d.Logger, err)
}

func (s *scheduleService) BackfillSchedule(ctx context.Context, req *aurav1.BackfillScheduleRequest) (*aurav1.BackfillScheduleResponse, error) {
	out, err := s.d.Schedules.Backfill(ctx, req.GetSchedule(), req.GetFrom().AsTime(), req.GetTo().AsTime())
	return out, toStatus(s.d.Logger, err)
}
