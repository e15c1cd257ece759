package main

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/aura-dev/aura/internal/testbin"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

func TestProgressViewOnATerminal(t *testing.T) {
	master, slave := testbin.OpenPTY(t)
	defer master.Close()
	defer slave.Close()
	for _, tc := range []struct {
		output string
		follow bool
		want   string
	}{
		{"table", true, "*main.progressView"},
		{"json", true, "*main.plainView"},
		{"table", false, "*main.plainView"},
	} {
		v := newFollowView(&globals{output: tc.output}, slave, tc.follow)
		if got := typeName(v); got != tc.want {
			t.Errorf("-o %s follow=%v on a terminal: %s, want %s", tc.output, tc.follow, got, tc.want)
		}
		v.close()
	}
	drain := readAll(master)

	v := newFollowView(&globals{output: "table"}, slave, true)
	for _, e := range []*aurav1.TaskEvent{
		withStatus(ev("task.running", ""), aurav1.TaskStatus_TASK_STATUS_RUNNING),
		ev("step.started", "fetch"),
	} {
		if err := v.event(e); err != nil {
			t.Fatal(err)
		}
	}
	v.close()
	slave.Close()
	got := <-drain
	for _, want := range []string{
		"step.started  fetch",                        // the event lines are still there
		clearLine + "RUNNING  step fetch  0/? steps", // the status line is redrawn in place
	} {
		if !strings.Contains(got, want) {
			t.Errorf("terminal output lacks %q:\n%q", want, got)
		}
	}
	// close leaves the last status as a finished line.
	lines := strings.Split(strings.TrimRight(got, "\r\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(strings.TrimPrefix(last, clearLine), "RUNNING  step fetch") {
		t.Errorf("last line %q is not the final status", last)
	}
}

func typeName(v any) string {
	switch v.(type) {
	case *progressView:
		return "*main.progressView"
	case *plainView:
		return "*main.plainView"
	}
	return "other"
}

// readAll reads master until the slave side is closed (EIO on Linux).
func readAll(master *os.File) <-chan string {
	out := make(chan string, 1)
	go func() {
		var b bytes.Buffer
		_, _ = io.Copy(&b, master)
		out <- b.String()
	}()
	return out
}
