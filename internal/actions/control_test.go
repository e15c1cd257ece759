package actions

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestNoop(t *testing.T) {
	if out := mustRun(t, &Env{}, "noop", nil); out != nil {
		t.Fatalf("noop output = %#v, want nil", out)
	}
}

func TestLogWritesLevelMessageAndTaskID(t *testing.T) {
	var buf bytes.Buffer
	env := &Env{TaskID: "task-42", Task: "ops/cleanup", Logger: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	mustRun(t, env, "log", map[string]any{"message": "disk almost full", "level": "warn"})
	mustRun(t, env, "log", map[string]any{"message": map[string]any{"n": int64(3)}})

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 log records, got %q", buf.String())
	}
	var first, second map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
		t.Fatal(err)
	}
	if first["level"] != "WARN" || first["msg"] != "disk almost full" || first["task_id"] != "task-42" || first["task"] != "ops/cleanup" {
		t.Errorf("first record = %v", first)
	}
	if second["level"] != "INFO" || second["msg"] != `{"n":3}` {
		t.Errorf("second record (default level, map message) = %v", second)
	}
}

func TestLogRefusesBadParams(t *testing.T) {
	_, err := run(t, &Env{}, "log", map[string]any{"message": "x", "level": "loud"})
	asParamError(t, err, "level")
	_, err = run(t, &Env{}, "log", map[string]any{"level": "info"})
	asParamError(t, err, "message")
	// A nil logger is allowed: the message is discarded, not a crash.
	mustRun(t, &Env{}, "log", map[string]any{"message": "x"})
}

func TestSleepWaitsAndStopsOnCancel(t *testing.T) {
	start := time.Now()
	mustRun(t, &Env{}, "sleep", map[string]any{"duration": "20ms"})
	if el := time.Since(start); el < 20*time.Millisecond {
		t.Fatalf("sleep 20ms returned after %v", el)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		reg := Builtin()
		defer reg.Close()
		spec, _ := reg.Lookup("sleep")
		_, err := spec.Run(ctx, &Env{}, map[string]any{"duration": "1h"})
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled sleep error = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sleep did not return after its context was cancelled")
	}
}

func TestSleepRefusesBadDurations(t *testing.T) {
	for _, v := range []any{nil, "soon", "-1s", int64(5)} {
		params := map[string]any{"duration": v}
		_, err := run(t, &Env{}, "sleep", params)
		asParamError(t, err, "duration")
	}
}

func TestFail(t *testing.T) {
	_, err := run(t, &Env{}, "fail", map[string]any{"message": "device unreachable"})
	var fe *FailError
	if !errors.As(err, &fe) || err.Error() != "device unreachable" {
		t.Fatalf("fail error = %v (%T)", err, err)
	}
	if _, err := run(t, &Env{}, "fail", nil); err == nil {
		t.Fatal("fail without message succeeded")
	}
}

func TestSetReturnsItsParams(t *testing.T) {
	in := map[string]any{"a": int64(1), "b": []any{"x", true}, "c": map[string]any{"d": nil}}
	out := mustRun(t, &Env{}, "set", in)
	if !reflect.DeepEqual(out, in) {
		t.Fatalf("set output = %#v, want %#v", out, in)
	}
	in["a"] = int64(2)
	if out.(map[string]any)["a"] != int64(1) {
		t.Fatal("set output aliases the caller's map")
	}
}

func TestAssert(t *testing.T) {
	if out := mustRun(t, &Env{}, "assert", map[string]any{"that": true, "message": "unused"}); out != nil {
		t.Fatalf("passing assert output = %#v", out)
	}
	_, err := run(t, &Env{}, "assert", map[string]any{"that": false, "message": "status was 500"})
	var fe *FailError
	if !errors.As(err, &fe) || err.Error() != "status was 500" {
		t.Fatalf("failing assert error = %v", err)
	}
	_, err = run(t, &Env{}, "assert", map[string]any{"that": false})
	if err == nil || err.Error() != "assertion failed" {
		t.Fatalf("failing assert without message = %v", err)
	}
	_, err = run(t, &Env{}, "assert", map[string]any{"that": "yes"})
	asParamError(t, err, "that")
	_, err = run(t, &Env{}, "assert", map[string]any{})
	asParamError(t, err, "that")
}
