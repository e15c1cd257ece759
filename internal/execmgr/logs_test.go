package execmgr

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/aura-dev/aura/internal/store"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// logEvents is a store that keeps only the task.log events appended to it.
type logEvents struct {
	store.DB // nil: the log sink uses nothing else
	mu       sync.Mutex
	evs      []store.Event
}

func (l *logEvents) Write(_ context.Context, b store.Batch) *store.Pending {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.evs = append(l.evs, b.Events...)
	return store.Finished(nil)
}

// messages returns the messages of the events appended so far, and forgets
// them.
func (l *logEvents) messages() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.evs {
		var te aurav1.TaskEvent
		if err := proto.Unmarshal(e.Data, &te); err != nil {
			panic(fmt.Sprintf("task.log event does not decode: %v", err))
		}
		out = append(out, te.Step+"/"+te.Stream+": "+te.Message)
	}
	l.evs = nil
	return out
}

func newTestSink() (*logSink, *logEvents) {
	st := &logEvents{}
	r := &run{m: &Manager{store: st, now: time.Now}, id: "t1"}
	return newLogSink(r), st
}

// The log sink's timing runs on a synctest bubble's clock: lines written
// while the sink is quiet show up at once, a burst is batched and shows up
// within logFlushEvery, and a long burst is cut every logFlushLines lines.
func TestLogSinkBatchesByTimeAndSize(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink, st := newTestSink()
		sink.write("build", "stdout", []byte("first\n"))
		if got := st.messages(); len(got) != 1 || got[0] != "build/stdout: first" {
			t.Fatalf("first line of a quiet process: %q, want it at once", got)
		}

		// More lines right after: held for one batch, then all shown
		// together, logFlushEvery later.
		sink.write("build", "stdout", []byte("second\nthi"))
		sink.write("build", "stdout", []byte("rd\n"))
		synctest.Wait()
		if got := st.messages(); len(got) != 0 {
			t.Fatalf("a burst was written line by line: %q", got)
		}
		time.Sleep(logFlushEvery - time.Nanosecond)
		synctest.Wait()
		if got := st.messages(); len(got) != 0 {
			t.Fatalf("the batch came early: %q", got)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if got := st.messages(); len(got) != 1 || got[0] != "build/stdout: second\nthird" {
			t.Fatalf("after %s: %q, want the two held lines in one event", logFlushEvery, got)
		}

		// A flood is cut every logFlushLines lines without waiting.
		var flood strings.Builder
		for i := range logFlushLines {
			fmt.Fprintf(&flood, "line %d\n", i)
		}
		sink.write("build", "stderr", []byte("held\n"))
		sink.write("build", "stderr", []byte(flood.String()))
		got := st.messages()
		if len(got) != 1 || strings.Count(got[0], "\n")+1 != logFlushLines+1 {
			t.Fatalf("a flood of %d lines: %d events, want one with all of them at once", logFlushLines, len(got))
		}

		// The step's end flushes its unterminated last line and whatever
		// waits, before the step's own end event, and stops the timer.
		time.Sleep(logFlushEvery) // quiet again
		sink.write("build", "stdout", []byte("a\n"))
		sink.write("build", "stdout", []byte("b\nno newline"))
		sink.endStep("build")
		if got := st.messages(); len(got) != 2 || got[1] != "build/stdout: b\nno newline" {
			t.Fatalf("endStep: %q, want the held line and the unterminated one", got)
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		if got := st.messages(); len(got) != 0 {
			t.Fatalf("events after the step ended: %q", got)
		}
	})
}

// A task's output is bounded: beyond maxLogBytes it is dropped, with one
// line saying so.
func TestLogSinkTruncates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink, st := newTestSink()
		line := strings.Repeat("x", 1023) + "\n"
		for range maxLogBytes/len(line) + 10 {
			sink.write("spam", "stdout", []byte(line))
		}
		sink.endStep("spam")
		all := strings.Join(st.messages(), "\n")
		if n := strings.Count(all, strings.Repeat("x", 1023)); n != maxLogBytes/len(line) {
			t.Errorf("%d lines kept, want %d (the first %d bytes)", n, maxLogBytes/len(line), maxLogBytes)
		}
		if !strings.HasSuffix(all, fmt.Sprintf("[aura: output truncated after %d bytes]", maxLogBytes)) {
			t.Errorf("no truncation note at the end: ...%q", all[max(0, len(all)-80):])
		}
	})
}
