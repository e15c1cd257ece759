package execmgr

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// A task goroutine that runs out of work waits workerIdle for the next
// task and then exits: an idle daemon keeps no goroutines per past task,
// and a steady stream of tasks is carried by warm ones. On the bubble's
// clock the wait is exact.
func TestIdleTaskGoroutineExitsAfterWorkerIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, fc := newManager(t, 4)
		ctx := context.Background()
		for range 2 { // the second task finds the first one's goroutine parked
			resp, err := m.Submit(ctx, &aurav1.SubmitRequest{Task: "bench/noop"})
			if err != nil {
				t.Fatal(err)
			}
			<-fc.watch(resp.TaskId)
			synctest.Wait()
		}
		exited := make(chan struct{})
		go func() {
			m.tasks.wg.Wait()
			close(exited)
		}()
		time.Sleep(workerIdle - time.Nanosecond)
		synctest.Wait()
		select {
		case <-exited:
			t.Fatalf("the task goroutine exited before %s idle", workerIdle)
		default:
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		select {
		case <-exited:
		default:
			t.Fatalf("the task goroutine still waits after %s idle", workerIdle)
		}
	})
}
