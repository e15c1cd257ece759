package ui

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// A schedule's row says what kind it is and shows its fire times in its
// own zone; a last task the store has pruned says so.
func TestScheduleRowOf(t *testing.T) {
	at := time.Date(2026, 3, 30, 6, 0, 0, 0, time.UTC) // 08:00 in Berlin (CEST)
	cases := []struct {
		in   *aurav1.Schedule
		want scheduleRow
	}{
		{&aurav1.Schedule{Name: "reports/daily", Task: "reports/build", Cron: "0 8 * * 1-5", Timezone: "Europe/Berlin", Overlap: "skip",
			NextFireTimes: []*timestamppb.Timestamp{timestamppb.New(at)}, LastTick: timestamppb.New(at.AddDate(0, 0, -3)),
			LastTaskId: "t1", LastTaskStatus: aurav1.TaskStatus_TASK_STATUS_SUCCEEDED},
			scheduleRow{Name: "reports/daily", Plan: "reports", Task: "reports/build", Kind: "cron", Spec: "0 8 * * 1-5", Zone: "Europe/Berlin",
				Overlap: "skip", Next: []string{"2026-03-30 08:00:00 CEST"}, LastTick: "2026-03-27 07:00:00 CET", LastTaskID: "t1", LastStatus: "SUCCEEDED"}},
		{&aurav1.Schedule{Name: "p/tick", Task: "p/x", Every: "15m0s", Timezone: "UTC", Paused: true, LastTaskId: "gone"},
			scheduleRow{Name: "p/tick", Plan: "p", Task: "p/x", Kind: "every", Spec: "15m0s", Zone: "UTC", Paused: true, LastTaskID: "gone", LastStatus: "pruned"}},
		{&aurav1.Schedule{Name: "p/then", Task: "p/y", AfterTask: "p/x", AfterStatus: []string{"succeeded", "failed"}, Timezone: "UTC"},
			scheduleRow{Name: "p/then", Plan: "p", Task: "p/y", Kind: "after", Spec: "p/x succeeded, failed"}},
	}
	for _, c := range cases {
		got := scheduleRowOf(c.in)
		if !slices.Equal(got.Next, c.want.Next) {
			t.Errorf("%s: next %q, want %q", c.in.Name, got.Next, c.want.Next)
		}
		got.Next, c.want.Next = nil, nil
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.in.Name, got, c.want)
		}
	}
}
