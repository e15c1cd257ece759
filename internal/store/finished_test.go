package store

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// FinishedSince gives the tasks finished from a time on, latest first,
// bounded, and says when it left some out; unfinished tasks and those
// finished earlier are not among them.
func TestFinishedSince(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			clock := newFakeClock()
			db := b.open(t, Options{Now: clock.Now})
			start := clock.Now()
			for i := range 5 {
				task, _, err := createTask(ctx, db, newTask(fmt.Sprintf("t%d", i)), nil)
				if err != nil {
					t.Fatal(err)
				}
				if i == 4 {
					continue // still running
				}
				task.Status, task.FinishedAt = statusSucceded, start.Add(time.Duration(i)*time.Minute)
				if err := updateTask(ctx, db, task, nil); err != nil {
					t.Fatal(err)
				}
			}
			r := db.(interface {
				FinishedSince(context.Context, time.Time, int) ([]FinishedTask, bool, error)
			})
			got, more, err := r.FinishedSince(ctx, start.Add(time.Minute), 0)
			if err != nil || more || len(got) != 3 {
				t.Fatalf("FinishedSince = %d tasks, more %v, %v; want the 3 finished from the second minute on", len(got), more, err)
			}
			for i, f := range got {
				if want := start.Add(time.Duration(3-i) * time.Minute); !f.FinishedAt.Equal(want) || !f.CreatedAt.Equal(start) || f.Status != statusSucceded {
					t.Errorf("#%d = %+v, want finished %v, created %v, succeeded", i, f, want, start)
				}
			}
			got, more, err = r.FinishedSince(ctx, start, 2)
			if err != nil || !more || len(got) != 2 || !got[0].FinishedAt.Equal(start.Add(3*time.Minute)) {
				t.Fatalf("FinishedSince with a limit of 2 = %+v, more %v, %v; want the latest 2 and more", got, more, err)
			}
		})
	}
}
