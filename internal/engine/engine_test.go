package engine

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/aura-dev/aura/internal/plan"
	"github.com/aura-dev/aura/internal/workers"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	loadOnce sync.Once
	plans    *plan.Set
	loadErr  error
)

func task(t testing.TB, name string) *plan.Task {
	t.Helper()
	loadOnce.Do(func() {
		ta := newTestActions()
		plans, loadErr = plan.Load("testdata/plans", plan.Options{ActionKnown: func(n string) bool {
			_, ok := ta.Lookup(n)
			return ok
		}})
	})
	if loadErr != nil {
		t.Fatalf("load test plans: %v", loadErr)
	}
	tk, err := plans.Task("eng/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// runTask resolves inputs and runs the task with fresh test actions.
func runTask(t *testing.T, ctx context.Context, name string, inputs map[string]any, obs Observer) Result {
	t.Helper()
	tk := task(t, name)
	in, err := tk.ResolveInputs(inputs)
	if err != nil {
		t.Fatal(err)
	}
	r := New(Config{Actions: newTestActions()})
	return r.Run(ctx, Request{Task: tk, Inputs: in, Observer: obs})
}

func statuses(res Result) map[string]string {
	out := map[string]string{}
	for _, s := range res.Steps {
		out[s.ID] = s.Status.String()
	}
	return out
}

func TestReturnsAndTemplates(t *testing.T) {
	tests := []struct {
		task   string
		inputs map[string]any
		want   any
	}{
		{"list", nil, map[string]any{
			"value": int64(20), "greeting": "hello world", "double": int64(40),
			"list": []any{int64(1), int64(2)}, "text": "n=2 ok=true", "status": "succeeded", "task": "list@eng",
		}},
		{"list", map[string]any{"n": 3.0, "who": "aura"}, map[string]any{
			"value": int64(30), "greeting": "hello aura", "double": int64(60),
			"list": []any{int64(1), int64(3)}, "text": "n=3 ok=true", "status": "succeeded", "task": "list@eng",
		}},
		{"when", nil, map[string]any{"maybe": "skipped", "always": "succeeded"}},
		{"when", map[string]any{"go": true}, map[string]any{"maybe": "succeeded", "always": "succeeded"}},
		{"continue", nil, map[string]any{"bad_status": "failed", "bad_error": "ignored"}},
		{"graph_parallel", nil, true},
		{"graph_handled", nil, "fallback"},
		{"loop", nil, map[string]any{
			"each": []any{
				map[string]any{"item": "a", "index": int64(0)}, map[string]any{"item": "b", "index": int64(1)},
				map[string]any{"item": "c", "index": int64(2)}, map[string]any{"item": "d", "index": int64(3)},
				map[string]any{"item": "e", "index": int64(4)},
			},
			"squares": []any{int64(0), int64(1), int64(4)},
			"none":    []any{},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.task, func(t *testing.T) {
			res := runTask(t, context.Background(), tc.task, tc.inputs, nil)
			if res.Err != nil {
				t.Fatalf("Run: %v (steps %v)", res.Err, statuses(res))
			}
			if !reflect.DeepEqual(res.Returns, tc.want) {
				t.Errorf("returns = %#v\nwant %#v", res.Returns, tc.want)
			}
		})
	}
}

func TestListStopsAtFirstFailure(t *testing.T) {
	res := runTask(t, context.Background(), "list_fail", nil, nil)
	var se *StepError
	if !errors.As(res.Err, &se) || se.Step != "step2" {
		t.Fatalf("err = %v, want StepError for step2", res.Err)
	}
	if !strings.Contains(res.Err.Error(), "broken on purpose") {
		t.Errorf("error %q does not carry the action's message", res.Err)
	}
	want := map[string]string{"step1": "succeeded", "step2": "failed", "step3": "pending"}
	if got := statuses(res); !reflect.DeepEqual(got, want) {
		t.Errorf("statuses = %v, want %v", got, want)
	}
	if res.Returns != nil {
		t.Errorf("a failed task returned %v", res.Returns)
	}
	if res.Steps[1].Error != "broken on purpose" || res.Steps[1].Attempts != 1 {
		t.Errorf("step2 state = %+v", res.Steps[1])
	}
}

func TestGraphConditions(t *testing.T) {
	rec := &recorder{}
	res := runTask(t, context.Background(), "graph_conditions", nil, rec)
	var se *StepError
	if !errors.As(res.Err, &se) || se.Step != "fetch" {
		t.Fatalf("err = %v, want StepError for fetch", res.Err)
	}
	want := map[string]string{
		"fetch": "failed", "on_ok": "skipped", "on_fail": "succeeded",
		"after_ok": "skipped", "either": "succeeded", "finally": "succeeded",
	}
	if got := statuses(res); !reflect.DeepEqual(got, want) {
		t.Errorf("statuses = %v\nwant %v", got, want)
	}
	if got := rec.forStep("on_ok"); !reflect.DeepEqual(got, []event{{"on_ok", 0, "skipped"}}) {
		t.Errorf("on_ok events = %v", got)
	}
}

func TestLoopFailureNamesIteration(t *testing.T) {
	res := runTask(t, context.Background(), "loop_fail", nil, nil)
	if res.Err == nil || !strings.Contains(res.Err.Error(), "iteration 1") {
		t.Fatalf("err = %v, want iteration 1 named", res.Err)
	}
}

func TestRetry(t *testing.T) {
	tests := []struct {
		failures     int
		wantErr      bool
		wantAttempts int
	}{
		{0, false, 1},
		{2, false, 3},
		{3, true, 3},
	}
	for _, tc := range tests {
		rec := &recorder{}
		res := runTask(t, context.Background(), "retry", map[string]any{"key": "k", "failures": float64(tc.failures)}, rec)
		if (res.Err != nil) != tc.wantErr {
			t.Fatalf("failures=%d: err = %v", tc.failures, res.Err)
		}
		if res.Steps[0].Attempts != tc.wantAttempts {
			t.Errorf("failures=%d: attempts = %d, want %d", tc.failures, res.Steps[0].Attempts, tc.wantAttempts)
		}
		if !tc.wantErr && res.Returns != int64(tc.wantAttempts) {
			t.Errorf("failures=%d: nodes.flaky.attempts = %v", tc.failures, res.Returns)
		}
		var starts []int
		for _, e := range rec.forStep("flaky") {
			if e.Status == "started" {
				starts = append(starts, e.Attempt)
			}
		}
		if len(starts) != tc.wantAttempts || starts[len(starts)-1] != tc.wantAttempts {
			t.Errorf("failures=%d: started attempts %v", tc.failures, starts)
		}
		// Each retry is announced between the failed attempt and the next
		// one, with the retry policy's delay (1ms, doubling).
		var retries []string
		for _, e := range rec.forStep("flaky") {
			if strings.HasPrefix(e.Status, "retrying") {
				retries = append(retries, e.Status)
			}
		}
		want := []string{"retrying 2/3 in 1ms", "retrying 3/3 in 2ms"}[:tc.wantAttempts-1]
		if !slices.Equal(retries, want) {
			t.Errorf("failures=%d: retries %v, want %v", tc.failures, retries, want)
		}
	}
}

func TestStepTimeoutIsNotTaskTimeout(t *testing.T) {
	res := runTask(t, context.Background(), "step_timeout", nil, nil)
	var te *StepTimeoutError
	if !errors.As(res.Err, &te) || te.Step != "slow" {
		t.Fatalf("err = %v, want StepTimeoutError", res.Err)
	}
	if errors.Is(res.Err, context.DeadlineExceeded) {
		t.Errorf("a step timeout must not look like the task's deadline: %v", res.Err)
	}
}

func TestContextEndsRun(t *testing.T) {
	for _, name := range []string{"sleepy", "sleepy_graph"} {
		t.Run(name+"/cancel", func(t *testing.T) {
			// The step that is running is cancelled, not failed, in the
			// result and to the observer.
			running := "slow"
			if name == "sleepy_graph" {
				running = "a"
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			rec := &recorder{}
			res := runTask(t, ctx, name, nil, cancelOnStart{rec, running, cancel})
			if !errors.Is(res.Err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", res.Err)
			}
			var se *StepError
			if errors.As(res.Err, &se) {
				t.Errorf("cancellation reported as a step failure: %v", res.Err)
			}
			if got := statuses(res)[running]; got != "cancelled" {
				t.Errorf("step %s ended %s, want cancelled", running, got)
			}
			evs := rec.forStep(running)
			if len(evs) == 0 || evs[len(evs)-1].Status != "cancelled" {
				t.Errorf("observer heard %v for step %s, want it to end cancelled", evs, running)
			}
		})
		t.Run(name+"/deadline", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
			defer cancel()
			res := runTask(t, ctx, name, nil, nil)
			if !errors.Is(res.Err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want context.DeadlineExceeded", res.Err)
			}
		})
	}
	t.Run("cause", func(t *testing.T) {
		why := errors.New("operator said stop")
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(why)
		res := runTask(t, ctx, "sleepy", nil, nil)
		if !errors.Is(res.Err, context.Canceled) || !errors.Is(res.Err, why) {
			t.Fatalf("err = %v, want both Canceled and the cause", res.Err)
		}
	})
}

func TestPanickingActionFailsStep(t *testing.T) {
	res := runTask(t, context.Background(), "panic", nil, nil)
	var se *StepError
	if !errors.As(res.Err, &se) || !strings.Contains(res.Err.Error(), "kaboom") {
		t.Fatalf("err = %v, want the panic message in a StepError", res.Err)
	}
}

func TestEvalErrorNamesExpressionAndLocation(t *testing.T) {
	res := runTask(t, context.Background(), "eval_error", nil, nil)
	var se *StepError
	if !errors.As(res.Err, &se) || se.Step != "bad" {
		t.Fatalf("err = %v, want StepError for bad", res.Err)
	}
	msg := res.Err.Error()
	for _, want := range []string{"eval_error.yaml:8:", "nodes.first.output.n.missing"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
}

func TestLanes(t *testing.T) {
	tk := task(t, "lanes")
	tests := []struct {
		mode            string
		wantIO, wantCPU []string
	}{
		{"", []string{"noop", "set"}, []string{"set"}},    // task meta says cpu
		{"io", []string{"set", "noop", "set"}, nil},       // request overrides
		{"cpu", []string{"noop", "set"}, []string{"set"}}, // non-portable noop stays in-process
	}
	for _, tc := range tests {
		io, cpu := &laneRecorder{}, &laneRecorder{}
		r := New(Config{Actions: newTestActions(), IO: io, CPU: cpu})
		res := r.Run(context.Background(), Request{Task: tk, Mode: tc.mode})
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		if got := io.seen(); !reflect.DeepEqual(got, tc.wantIO) {
			t.Errorf("mode %q: io lane saw %v, want %v", tc.mode, got, tc.wantIO)
		}
		if got := cpu.seen(); !reflect.DeepEqual(got, tc.wantCPU) {
			t.Errorf("mode %q: cpu lane saw %v, want %v", tc.mode, got, tc.wantCPU)
		}
	}
}

func TestLoopParallelismRunsIterationsTogether(t *testing.T) {
	res := runTask(t, context.Background(), "loop_parallel", nil, nil)
	if res.Err != nil || res.Returns != int64(2) {
		t.Fatalf("returns %v, err %v", res.Returns, res.Err)
	}
}

func TestParamsMustBeAMapping(t *testing.T) {
	res := runTask(t, context.Background(), "params_not_map", nil, nil)
	if res.Err == nil || !strings.Contains(res.Err.Error(), "params must evaluate to a mapping") {
		t.Fatalf("err = %v", res.Err)
	}
}

func TestRunTaskReachesActions(t *testing.T) {
	tk := task(t, "child")
	var gotTask string
	var gotInputs map[string]any
	r := New(Config{Actions: newTestActions()})
	res := r.Run(context.Background(), Request{
		Task: tk, TaskID: "run-1", Inputs: map[string]any{"x": int64(5)},
		RunTask: func(_ context.Context, task string, inputs map[string]any) (any, error) {
			gotTask, gotInputs = task, inputs
			return map[string]any{"child": "done"}, nil
		},
	})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if gotTask != "other" || !reflect.DeepEqual(gotInputs, map[string]any{"x": int64(5)}) {
		t.Errorf("RunTask got %q %v", gotTask, gotInputs)
	}
	if !reflect.DeepEqual(res.Returns, map[string]any{"child": "done"}) {
		t.Errorf("returns = %v", res.Returns)
	}
}

// TestRunTaskHoldsNoIOSlot: with one io slot, a parent step waiting on a
// child task must leave the slot to the child's steps, or neither finishes.
func TestRunTaskHoldsNoIOSlot(t *testing.T) {
	parent, child := task(t, "child"), task(t, "list")
	pool := workers.NewIOPool(1)
	defer pool.Close()
	r := New(Config{Actions: newTestActions(), IO: poolLane{pool}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := r.Run(ctx, Request{
		Task: parent,
		RunTask: func(ctx context.Context, _ string, _ map[string]any) (any, error) {
			inputs, err := child.ResolveInputs(nil)
			if err != nil {
				return nil, err
			}
			res := r.Run(ctx, Request{Task: child, Inputs: inputs})
			return res.Returns, res.Err
		},
	})
	if res.Err != nil {
		t.Fatalf("parent with one io slot: %v", res.Err)
	}
	if got := pool.Stats().Jobs; got == 0 {
		t.Errorf("the child's steps never ran on the io pool")
	}
}

// poolLane runs calls on an io pool, as the daemon does.
type poolLane struct{ pool *workers.IOPool }

func (l poolLane) Do(ctx context.Context, c Call) (any, error) { return l.pool.Do(ctx, c.Run) }

func TestObserverSeesEveryStep(t *testing.T) {
	rec := &recorder{}
	res := runTask(t, context.Background(), "when", nil, rec)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	want := []event{{"maybe", 0, "skipped"}, {"always", 1, "started"}, {"always", 1, "succeeded"}}
	if !reflect.DeepEqual(rec.events, want) {
		t.Errorf("events = %v\nwant %v", rec.events, want)
	}
	for _, s := range res.Steps {
		if s.StartedAt.IsZero() || s.FinishedAt.Before(s.StartedAt) {
			t.Errorf("step %s times %v..%v", s.ID, s.StartedAt, s.FinishedAt)
		}
	}
}

func TestNoTask(t *testing.T) {
	res := New(Config{}).Run(context.Background(), Request{})
	if !errors.Is(res.Err, ErrNoTask) {
		t.Fatalf("err = %v", res.Err)
	}
}

// cancelOnStart records like its recorder and cancels the run as soon as
// step has started, so that step is cut short while it runs.
type cancelOnStart struct {
	*recorder
	step   string
	cancel context.CancelFunc
}

func (c cancelOnStart) StepStarted(step string, attempt int) {
	c.recorder.StepStarted(step, attempt)
	if step == c.step {
		c.cancel()
	}
}

// BenchmarkNoopSteps measures the engine's per-step overhead: 100 noop
// steps as a list (inline), a dependency chain and a wide graph.
func BenchmarkNoopSteps(b *testing.B) {
	for _, name := range []string{"noop100", "noop100_chain", "noop100_wide"} {
		b.Run(name, func(b *testing.B) {
			tk := task(b, name)
			r := New(Config{Actions: newTestActions()})
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if res := r.Run(ctx, Request{Task: tk}); res.Err != nil {
					b.Fatal(res.Err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100/1000, "µs/step")
		})
	}
}

// TestLoopLimit: a loop longer than Config.MaxLoopIterations fails its step
// before any iteration runs, naming the limit.
func TestLoopLimit(t *testing.T) {
	tk := task(t, "loop")
	r := New(Config{Actions: newTestActions(), MaxLoopIterations: 4})
	in, err := tk.ResolveInputs(nil) // five items
	if err != nil {
		t.Fatal(err)
	}
	res := r.Run(context.Background(), Request{Task: tk, Inputs: in})
	var se *StepError
	if !errors.As(res.Err, &se) || se.Step != "each" || !strings.Contains(res.Err.Error(), "5 items, more than the limit of 4 iterations") {
		t.Fatalf("err = %v, want step each over the limit of 4", res.Err)
	}
	if got := res.Steps[0].Attempts; got != 1 {
		t.Errorf("each: %d attempts", got)
	}
	r = New(Config{Actions: newTestActions(), MaxLoopIterations: 5})
	if res := r.Run(context.Background(), Request{Task: tk, Inputs: in}); res.Err != nil {
		t.Fatalf("five items with a limit of five: %v", res.Err)
	}
}

// TestTaskOutputBudget: outputs that together pass Config.MaxTaskOutput
// fail the step whose call passed it, naming the limit.
func TestTaskOutputBudget(t *testing.T) {
	tk := task(t, "loop")
	in, err := tk.ResolveInputs(nil)
	if err != nil {
		t.Fatal(err)
	}
	res := New(Config{Actions: newTestActions(), MaxTaskOutput: 300}).Run(context.Background(), Request{Task: tk, Inputs: in})
	var se *StepError
	if !errors.As(res.Err, &se) || se.Step != "each" || !strings.Contains(res.Err.Error(), "--max-task-output") {
		t.Fatalf("err = %v, want step each over the output limit", res.Err)
	}
	if res := New(Config{Actions: newTestActions()}).Run(context.Background(), Request{Task: tk, Inputs: in}); res.Err != nil {
		t.Fatalf("with the default limit: %v", res.Err)
	}
}
