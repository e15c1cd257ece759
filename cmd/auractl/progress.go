package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// followView shows a task's events for `auractl submit --follow`.
type followView interface {
	event(ev *aurav1.TaskEvent) error
	// close ends the view; the caller prints the final task after it.
	close()
}

// newFollowView returns a live progress view when following, out is a
// terminal and the output is a table, and the plain event lines otherwise
// (pipes, files and -o json|yaml keep exactly the lines scripts rely on).
func newFollowView(g *globals, out io.Writer, follow bool) followView {
	if follow && g.output == "table" && os.Getenv("TERM") != "dumb" {
		if fd, ok := terminalFd(out); ok {
			return newProgressView(out, fd)
		}
	}
	return &plainView{g: g, out: out}
}

// plainView prints one line per event, numbered from 1.
type plainView struct {
	g   *globals
	out io.Writer
	n   uint64
}

func (v *plainView) event(ev *aurav1.TaskEvent) error {
	v.n++
	return v.g.printLine(v.out, ev, eventLine(v.n, ev))
}
func (v *plainView) close() {}

// terminalFd reports whether w is a terminal, and its descriptor.
func terminalFd(w io.Writer) (int, bool) {
	f, ok := w.(interface{ Fd() uintptr })
	if !ok {
		return 0, false
	}
	fd := int(f.Fd())
	if _, err := unix.IoctlGetTermios(fd, ioctlReadTermios); err != nil {
		return 0, false
	}
	return fd, true
}

// progress is what the status line says: a pure fold over the task's
// events, so it is tested without a terminal.
type progress struct {
	status  string   // QUEUED, PLANNING, RUNNING, or the final status
	phase   string   // the latest planning message, while planning
	running []string // steps started and not yet ended, in start order
	ended   map[string]bool
	seen    map[string]bool
	retry   map[string]string // step -> "retry 2/3", while it waits to retry
	total   int               // steps the task has, when a snapshot listed them all
}

func (p *progress) apply(ev *aurav1.TaskEvent) {
	if p.ended == nil {
		p.ended, p.seen, p.retry = map[string]bool{}, map[string]bool{}, map[string]string{}
	}
	if ev.Status != aurav1.TaskStatus_TASK_STATUS_UNSPECIFIED {
		p.status = statusName(ev.Status)
	}
	if ev.Task != nil {
		// A snapshot that lists pending steps lists every step; one that
		// lists only started steps tells us nothing about the rest.
		for _, s := range ev.Task.Steps {
			if s.Status == aurav1.StepStatus_STEP_STATUS_PENDING {
				p.total = len(ev.Task.Steps)
				break
			}
		}
		if ev.Type == "task.finished" {
			p.total = len(ev.Task.Steps)
		}
	}
	switch ev.Type {
	case "task.queued":
		p.status = "QUEUED"
	case "task.planning":
		p.status, p.phase = "PLANNING", ev.Message
	case "task.transition":
		p.status, p.phase = "PLANNING", ev.Message
	case "task.running":
		p.status, p.phase = "RUNNING", ""
	case "task.paused":
		// The message says what paused it and what runs meanwhile.
		p.status, p.phase = "PAUSED", ev.Message
	case "task.resumed":
		p.status, p.phase = "RUNNING", ""
	case "step.started":
		p.seen[ev.Step] = true
		delete(p.retry, ev.Step)
		if !slices.Contains(p.running, ev.Step) {
			p.running = append(p.running, ev.Step)
		}
	case "step.retrying":
		// The step is still under way: it waits for its next attempt.
		p.seen[ev.Step] = true
		delete(p.ended, ev.Step)
		p.retry[ev.Step] = fmt.Sprintf("retry %d/%d", ev.Attempt, ev.MaxAttempts)
		if !slices.Contains(p.running, ev.Step) {
			p.running = append(p.running, ev.Step)
		}
	case "step.succeeded", "step.skipped", "step.cancelled":
		p.seen[ev.Step] = true
		p.ended[ev.Step] = true
		p.running = slices.DeleteFunc(p.running, func(s string) bool { return s == ev.Step })
	case "step.failed":
		// A failed attempt that will be retried is followed by
		// step.retrying, which puts the step back among the running.
		p.seen[ev.Step] = true
		p.ended[ev.Step] = true
		p.running = slices.DeleteFunc(p.running, func(s string) bool { return s == ev.Step })
	case "task.finished":
		p.running, p.phase = nil, ""
	}
}

// line renders the status line: status, current step(s), n/m steps ended,
// elapsed time.
func (p *progress) line(elapsed time.Duration) string {
	parts := []string{p.status}
	if p.status == "" {
		parts[0] = "SUBMITTED"
	}
	switch {
	case p.phase != "":
		parts = append(parts, p.phase)
	case len(p.running) == 1:
		parts = append(parts, "step "+p.stepLabel(p.running[0]))
	case len(p.running) > 1:
		labels := make([]string, len(p.running))
		for i, s := range p.running {
			labels[i] = p.stepLabel(s)
		}
		parts = append(parts, "steps "+strings.Join(labels, ", "))
	}
	if len(p.seen) > 0 || p.total > 0 {
		m := "?"
		if p.total > 0 {
			m = fmt.Sprint(max(p.total, len(p.seen)))
		}
		parts = append(parts, fmt.Sprintf("%d/%s steps", len(p.ended), m))
	}
	parts = append(parts, elapsedText(elapsed))
	return strings.Join(parts, "  ")
}

// stepLabel is a running step's name, with the retry it waits for.
func (p *progress) stepLabel(step string) string {
	if r := p.retry[step]; r != "" {
		return step + " (" + r + ")"
	}
	return step
}

// elapsedText is 0.4s, 12.3s, then 1m05s: tenths while they still matter.
func elapsedText(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	d = d.Round(time.Second)
	if d < time.Hour {
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm%02ds", int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60)
}

// progressView prints each event as a line above a status line that it
// redraws in place, and ticks the elapsed time while nothing happens.
type progressView struct {
	out   io.Writer
	fd    int
	start time.Time
	stop  chan struct{}
	done  chan struct{}

	mu    sync.Mutex // guards p, n and the terminal: the ticker goroutine draws too
	p     progress
	n     uint64 // events shown
	shown bool   // a status line is on screen
}

// clearLine returns the cursor to column 0 and erases the line.
const clearLine = "\r\x1b[2K"

func newProgressView(out io.Writer, fd int) *progressView {
	v := &progressView{out: out, fd: fd, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	go v.tick()
	return v
}

func (v *progressView) tick() {
	defer close(v.done)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-v.stop:
			return
		case <-t.C:
			v.mu.Lock()
			v.drawLocked("")
			v.mu.Unlock()
		}
	}
}

func (v *progressView) event(ev *aurav1.TaskEvent) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.p.apply(ev)
	v.n++
	return v.drawLocked(eventLine(v.n, ev))
}

// drawLocked replaces the status line with above (when not empty) and a
// fresh status line under it.
func (v *progressView) drawLocked(above string) error {
	var b strings.Builder
	if v.shown {
		b.WriteString(clearLine)
	}
	if above != "" {
		b.WriteString(above)
		b.WriteByte('\n')
	}
	b.WriteString(fit(v.p.line(time.Since(v.start)), v.width()))
	v.shown = true
	_, err := io.WriteString(v.out, b.String())
	return err
}

// width is the terminal's width in columns (80 when it cannot be read).
func (v *progressView) width() int {
	ws, err := unix.IoctlGetWinsize(v.fd, unix.TIOCGWINSZ)
	if err != nil || ws.Col == 0 {
		return 80
	}
	return int(ws.Col)
}

// fit cuts s to fewer than width runes: a status line that wrapped could
// not be redrawn in place.
func fit(s string, width int) string {
	r := []rune(s)
	if width < 2 || len(r) < width {
		return s
	}
	return string(r[:width-2]) + "…"
}

func (v *progressView) close() {
	close(v.stop)
	<-v.done
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.shown {
		// Keep the last status as a summary line.
		_, _ = io.WriteString(v.out, clearLine+fit(v.p.line(time.Since(v.start)), v.width())+"\n")
		v.shown = false
	}
}
