package actions

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"time"
)

// FailError is a step failure a plan asked for: the fail action, or an assert
// whose condition was false. Its message is exactly the plan's message.
type FailError struct {
	Action  string
	Message string
}

func (e *FailError) Error() string { return e.Message }

func noopSpec() Spec {
	return Spec{Name: "noop", Portable: true, Params: []string{}, Run: runNoop}
}

func runNoop(_ context.Context, _ *Env, params map[string]any) (any, error) {
	if _, err := newParams("noop", params, nil); err != nil {
		return nil, err
	}
	return nil, nil
}

var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug,
	"info":  slog.LevelInfo,
	"warn":  slog.LevelWarn,
	"error": slog.LevelError,
}

func logSpec() Spec {
	return Spec{Name: "log", Params: []string{"message", "level"}, Run: runLog}
}

// runLog logs message at level (default info). A non-string message, such as
// a map produced by a template, is logged as its JSON encoding.
func runLog(ctx context.Context, env *Env, params map[string]any) (any, error) {
	p, err := newParams("log", params, []string{"message", "level"})
	if err != nil {
		return nil, err
	}
	if _, ok := params["message"]; !ok {
		return nil, p.errorf("message", "is required")
	}
	msg, err := messageText(params["message"])
	if err != nil {
		return nil, p.errorf("message", "%v", err)
	}
	levelName, err := p.str("level", "info")
	if err != nil {
		return nil, err
	}
	level, ok := logLevels[levelName]
	if !ok {
		return nil, p.errorf("level", "must be one of debug, info, warn, error; got %q", levelName)
	}
	env.logger().Log(ctx, level, msg)
	return nil, nil
}

func messageText(v any) (string, error) {
	if s, ok := v.(string); ok {
		return s, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("cannot be shown as text: %w", err)
	}
	return string(b), nil
}

func sleepSpec() Spec {
	return Spec{Name: "sleep", Params: []string{"duration"}, Run: runSleep}
}

func runSleep(ctx context.Context, _ *Env, params map[string]any) (any, error) {
	p, err := newParams("sleep", params, []string{"duration"})
	if err != nil {
		return nil, err
	}
	if !p.has("duration") {
		return nil, p.errorf("duration", "is required")
	}
	d, err := p.duration("duration", 0)
	if err != nil {
		return nil, err
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("sleep: interrupted: %w", context.Cause(ctx))
	}
}

func failSpec() Spec {
	return Spec{Name: "fail", Portable: true, Params: []string{"message"}, Run: runFail}
}

func runFail(_ context.Context, _ *Env, params map[string]any) (any, error) {
	p, err := newParams("fail", params, []string{"message"})
	if err != nil {
		return nil, err
	}
	msg := "failed by the fail action"
	if p.has("message") {
		if msg, err = messageText(params["message"]); err != nil {
			return nil, p.errorf("message", "%v", err)
		}
	}
	return nil, &FailError{Action: "fail", Message: msg}
}

func setSpec() Spec {
	return Spec{Name: "set", AnyParams: true, Run: runSet}
}

// runSet returns its parameters as the output. The map is copied so later
// changes by the caller do not alter a recorded output.
func runSet(_ context.Context, _ *Env, params map[string]any) (any, error) {
	out := make(map[string]any, len(params))
	maps.Copy(out, params)
	return out, nil
}

func assertSpec() Spec {
	return Spec{Name: "assert", Portable: true, Params: []string{"that", "message"}, Run: runAssert}
}

func runAssert(_ context.Context, _ *Env, params map[string]any) (any, error) {
	p, err := newParams("assert", params, []string{"that", "message"})
	if err != nil {
		return nil, err
	}
	v, ok := params["that"]
	if !ok {
		return nil, p.errorf("that", "is required")
	}
	that, ok := v.(bool)
	if !ok {
		return nil, p.errorf("that", "must be a bool, got %s", typeName(v))
	}
	if that {
		return nil, nil
	}
	msg := "assertion failed"
	if p.has("message") {
		if msg, err = messageText(params["message"]); err != nil {
			return nil, p.errorf("message", "%v", err)
		}
	}
	return nil, &FailError{Action: "assert", Message: msg}
}
