package store

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

const crashChildEnv = "AURA_STORE_CRASH_CHILD_DIR"

// crashChild creates tasks from several goroutines as fast as it can and
// prints each ID once CreateTask has acknowledged it, until it is killed.
// Each creation carries two events (stored in one packed row) and is
// followed by a detached progress event of its task.
func crashChild(dir string) int {
	s, err := Open(context.Background(), dir, Options{Sync: SyncAlways, Logger: quietLogger})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 1
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	deadline := time.Now().Add(time.Minute) // a safety net should the parent never kill us
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := 0; time.Now().Before(deadline); i++ {
				id := fmt.Sprintf("c%d-%d", g, i)
				if _, _, err := createTask(context.Background(), s, newTask(id), crashEvents(id)); err != nil {
					fmt.Fprintln(os.Stderr, "create:", err)
					os.Exit(1)
				}
				appendDetached(s, []Event{{TaskID: id, Type: "step.log", Data: []byte("progress")}})
				mu.Lock()
				fmt.Fprintln(out, id)
				err := out.Flush()
				mu.Unlock()
				if err != nil {
					os.Exit(1)
				}
			}
		})
	}
	wg.Wait()
	return 2
}

func crashEvents(id string) []Event {
	return []Event{{TaskID: id, Type: "task.queued", Data: []byte("q-" + id)}, {TaskID: id, Type: "after_task_run", Hook: true, Data: []byte("h-" + id)}}
}

func TestKill9KeepsAcknowledgedTasks(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		acked = append(acked, sc.Text())
		if len(acked) == 500 {
			// Mid-stream: the writers are busy committing more.
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
		}
	}
	err = cmd.Wait()
	if len(acked) < 500 {
		t.Fatalf("child acknowledged only %d tasks before exiting: %v", len(acked), err)
	}
	if err == nil {
		t.Fatal("child exited cleanly; it should have been killed")
	}

	s := openSQLite(t, dir, Options{Sync: SyncAlways})
	ctx := context.Background()
	for _, id := range acked {
		if _, err := s.GetTask(ctx, id); err != nil {
			t.Fatalf("acknowledged task %s lost after kill -9: %v", id, err)
		}
		evs, err := s.Events(ctx, 0, EventFilter{TaskID: id}, 0)
		if err != nil {
			t.Fatal(err)
		}
		want := crashEvents(id)
		if len(evs) < len(want) || evs[0].Type != want[0].Type || string(evs[0].Data) != string(want[0].Data) ||
			evs[1].Type != want[1].Type || !evs[1].Hook || string(evs[1].Data) != string(want[1].Data) || evs[1].Seq != evs[0].Seq+1 {
			t.Fatalf("acknowledged task %s: events after kill -9 %+v, want %+v", id, evs, want)
		}
	}
	oldest, last, err := s.EventBounds(ctx)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := s.Events(ctx, 0, EventFilter{}, maxEventLimit)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range evs {
		if e.Seq != uint64(i+1) {
			t.Fatalf("after recovery: event %d has sequence %d", i, e.Seq)
		}
	}
	if oldest != 1 || uint64(len(evs)) != last || last < 2*uint64(len(acked)) {
		t.Fatalf("after recovery: bounds %d..%d with %d events for %d acknowledged tasks", oldest, last, len(evs), len(acked))
	}
	// Writing goes on where the log stopped.
	e := crashEvents("after")
	if _, _, err := createTask(ctx, s, newTask("after"), e); err != nil || e[0].Seq != last+1 {
		t.Fatalf("create after recovery: %v, seq %d, want %d", err, e[0].Seq, last+1)
	}
	t.Logf("%d acknowledged before kill, %d committed", len(acked), last)
}
