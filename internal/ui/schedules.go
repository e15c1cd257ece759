package ui

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// scheduleRow is one line of the Schedules page.
type scheduleRow struct {
	Name, Plan, Task string
	Kind             string // cron, every or after
	Spec             string // the cron expression, the interval, or what the trigger follows
	Zone             string
	Overlap          string
	CatchUp, Jitter  string
	Paused           bool
	Next             []string // next fire times in the schedule's zone
	LastTick         string
	LastTaskID       string
	LastStatus       string
}

func scheduleRowOf(s *aurav1.Schedule) scheduleRow {
	r := scheduleRow{Name: s.GetName(), Task: s.GetTask(), Zone: s.GetTimezone(), Overlap: s.GetOverlap(),
		CatchUp: s.GetCatchUp(), Jitter: s.GetJitter(), Paused: s.GetPaused(), LastTaskID: s.GetLastTaskId()}
	r.Plan, _, _ = strings.Cut(r.Name, "/")
	switch {
	case s.GetCron() != "":
		r.Kind, r.Spec = "cron", s.GetCron()
	case s.GetEvery() != "":
		r.Kind, r.Spec = "every", s.GetEvery()
	default:
		r.Kind, r.Spec = "after", s.GetAfterTask()+" "+strings.Join(s.GetAfterStatus(), ", ")
		r.Zone = ""
	}
	loc := time.UTC
	if l, err := time.LoadLocation(r.Zone); err == nil && r.Zone != "" {
		loc = l
	}
	for _, t := range s.GetNextFireTimes() {
		r.Next = append(r.Next, t.AsTime().In(loc).Format("2006-01-02 15:04:05 MST"))
	}
	if s.GetLastTick() != nil {
		r.LastTick = s.GetLastTick().AsTime().In(loc).Format("2006-01-02 15:04:05 MST")
	}
	if s.GetLastTaskStatus() != aurav1.TaskStatus_TASK_STATUS_UNSPECIFIED {
		r.LastStatus = statusName(s.GetLastTaskStatus())
	} else if r.LastTaskID != "" {
		r.LastStatus = "pruned"
	}
	return r
}

type schedulesData struct {
	Rows []scheduleRow
	// Done says what the last action did; Schedule and TaskID name what
	// it acted on and what it fired.
	Done, Schedule, TaskID, Reason string
	Error                          string // the server's refusal of the last action
	Note                           string // why some plans' schedules are not listed
	After                          uint64 // the event sequence the rows are as of
}

func (s *Server) schedulesPage(w http.ResponseWriter, r *http.Request, q *request) {
	v := r.URL.Query()
	d := &schedulesData{Done: v.Get("done"), Schedule: v.Get("schedule"), TaskID: v.Get("task"), Reason: v.Get("reason")}
	switch d.Done {
	case "", "paused", "resumed", "fired", "skipped":
	default:
		d.Done = ""
	}
	s.showSchedules(w, r, q, http.StatusOK, d)
}

func (s *Server) showSchedules(w http.ResponseWriter, r *http.Request, q *request, code int, d *schedulesData) {
	// The sequence first, then the rows: the page's stream replays the
	// fires in between rather than miss them.
	d.After = s.opts.Events.Last()
	list, note, err := s.listSchedules(q.ctx)
	if err != nil && d.Error == "" {
		s.fail(w, r, q, err)
		return
	}
	if err != nil {
		// A refused action by one who may not list schedules either: the
		// action's refusal is the one to show.
		_, note = httpStatus(err)
	}
	d.Note = note
	for _, sc := range list {
		d.Rows = append(d.Rows, scheduleRowOf(sc))
	}
	s.render(w, r, q, code, "schedules", d)
}

// schedulesJSON is the Schedules page's rows, for its script to update
// them when a schedule fires or skips, or its last task changes.
func (s *Server) schedulesJSON(w http.ResponseWriter, r *http.Request, q *request) {
	list, _, err := s.listSchedules(q.ctx)
	if err != nil {
		code, msg := httpStatus(err)
		http.Error(w, msg, code)
		return
	}
	rows := make([]scheduleRow, 0, len(list))
	for _, sc := range list {
		rows = append(rows, scheduleRowOf(sc))
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"schedules": rows})
}

// listSchedules lists every schedule the session may see. A principal
// limited to some plans must name a plan in each call, so it gets its
// plans' schedules one plan at a time.
func (s *Server) listSchedules(ctx context.Context) ([]*aurav1.Schedule, string, error) {
	all, err := s.opts.Core.ListSchedules(ctx, "")
	if err == nil {
		return all, "", nil
	}
	if code, _ := httpStatus(err); code != http.StatusForbidden {
		return nil, "", err
	}
	plans, perr := s.opts.Core.ListPlans(ctx)
	if perr != nil {
		return nil, "", err
	}
	var out []*aurav1.Schedule
	for _, p := range plans {
		list, err := s.opts.Core.ListSchedules(ctx, p.GetName())
		if err != nil {
			continue // a plan this principal may not read
		}
		out = append(out, list...)
	}
	return out, "Only the schedules of the plans this sign-in may read are listed.", nil
}

// scheduleAction pauses, resumes or triggers the schedule the form names,
// through the ScheduleService (admin pauses and resumes, submit triggers),
// and shows the page again with what happened or the server's refusal.
func (s *Server) scheduleAction(w http.ResponseWriter, r *http.Request, q *request) {
	name := r.PostFormValue("schedule")
	action := r.PathValue("action")
	ctx, stop := context.WithTimeout(q.ctx, callTimeout)
	defer stop()
	done := url.Values{"schedule": {name}}
	var err error
	switch action {
	case "pause":
		_, err = s.opts.Core.PauseSchedule(ctx, name)
		done.Set("done", "paused")
	case "resume":
		_, err = s.opts.Core.ResumeSchedule(ctx, name)
		done.Set("done", "resumed")
	case "trigger":
		var resp *aurav1.TriggerScheduleResponse
		resp, err = s.opts.Core.TriggerSchedule(ctx, name)
		if resp.GetTaskId() != "" {
			done.Set("done", "fired")
			done.Set("task", resp.GetTaskId())
		} else {
			done.Set("done", "skipped")
			done.Set("reason", resp.GetSkippedReason())
		}
	default:
		http.NotFound(w, r)
		return
	}
	if err != nil {
		code, msg := httpStatus(err)
		if code == http.StatusUnauthorized {
			s.fail(w, r, q, err)
			return
		}
		s.showSchedules(w, r, q, code, &schedulesData{Schedule: name, Error: msg})
		return
	}
	http.Redirect(w, r, "/schedules?"+done.Encode(), http.StatusSeeOther)
}
