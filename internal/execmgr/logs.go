package execmgr

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/aura-dev/aura/internal/store"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// Task logs: what a task's child processes print becomes task.log events,
// batched so a chatty process does not write an event per line, and
// bounded per task.
const (
	maxLogBytes   = 1 << 20                // per task; the rest is dropped with a note
	logFlushEvery = 100 * time.Millisecond // a quiet process's lines show up within this
	logFlushLines = 256
)

type logChunk struct {
	step, stream string
	lines        []string
}

// logSink collects one task's output lines.
type logSink struct {
	r *run

	mu        sync.Mutex // held while flushing, so events keep their order
	partial   map[[2]string][]byte
	pending   []logChunk
	nlines    int
	bytes     int
	truncated bool
	timer     *time.Timer
	lastFlush time.Time
}

func newLogSink(r *run) *logSink {
	return &logSink{r: r, partial: map[[2]string][]byte{}}
}

// write takes raw output of one step's stream.
func (s *logSink) write(step, stream string, p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.truncated {
		return
	}
	if s.bytes+len(p) > maxLogBytes {
		p = p[:maxLogBytes-s.bytes]
		s.truncated = true
	}
	s.bytes += len(p)
	key := [2]string{step, stream}
	buf := append(s.partial[key], p...)
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		s.addLocked(step, stream, strings.TrimSuffix(string(buf[:i]), "\r"))
		buf = buf[i+1:]
	}
	s.partial[key] = append([]byte(nil), buf...)
	if s.truncated {
		s.addLocked(step, stream, fmt.Sprintf("[aura: output truncated after %d bytes]", maxLogBytes))
	}
	switch {
	case s.nlines >= logFlushLines || time.Since(s.lastFlush) >= logFlushEvery:
		s.flushLocked()
	case s.timer == nil && s.nlines > 0:
		s.timer = time.AfterFunc(logFlushEvery, s.flush)
	}
}

func (s *logSink) addLocked(step, stream, line string) {
	if n := len(s.pending); n > 0 && s.pending[n-1].step == step && s.pending[n-1].stream == stream {
		s.pending[n-1].lines = append(s.pending[n-1].lines, line)
	} else {
		s.pending = append(s.pending, logChunk{step: step, stream: stream, lines: []string{line}})
	}
	s.nlines++
}

// endStep flushes a step's unterminated last lines and everything pending,
// so its logs come before its step.succeeded / step.failed event.
func (s *logSink) endStep(step string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, stream := range []string{"stdout", "stderr"} {
		key := [2]string{step, stream}
		if rest := s.partial[key]; len(rest) > 0 {
			s.addLocked(step, stream, string(rest))
		}
		delete(s.partial, key)
	}
	s.flushLocked()
}

func (s *logSink) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flushLocked()
}

func (s *logSink) flushLocked() {
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	s.lastFlush = time.Now()
	if len(s.pending) == 0 {
		return
	}
	evs := make([]store.Event, 0, len(s.pending))
	now := s.r.m.now()
	for _, c := range s.pending {
		e := logEvent{TaskID: s.r.id, Type: "task.log", Time: now, Fields: eventFields{
			Status: int32(aurav1.TaskStatus_TASK_STATUS_RUNNING), Step: c.step, Stream: c.stream, Message: strings.Join(c.lines, "\n")}}
		evs = append(evs, e.stored())
	}
	s.pending, s.nlines = s.pending[:0], 0
	s.r.append(evs...)
}
