package execmgr

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/aura-dev/aura/internal/actions"
	"github.com/aura-dev/aura/internal/engine"
	"github.com/aura-dev/aura/internal/hooks"
	"github.com/aura-dev/aura/internal/plan"
	"github.com/aura-dev/aura/internal/resources"
	"github.com/aura-dev/aura/internal/store"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// newFarm builds a Manager over testdata/farm with a pool "device" of
// instances a, b and c.
func newFarm(t *testing.T) (*Manager, *finishCounter, store.DB) {
	t.Helper()
	return newPoolManager(t, "testdata/farm", []string{"a", "b", "c"}, 8, true)
}

// newPoolManager builds a Manager over the plans in dir with a pool
// "device" of instances and the global limit.
func newPoolManager(t testing.TB, dir string, instances []string, limit int, watching bool) (*Manager, *finishCounter, store.DB) {
	t.Helper()
	decl := &resources.Declarations{Pools: []resources.Pool{{Name: "device", Instances: instances, Limit: 1}}}
	reg := actions.Builtin()
	set, err := plan.Load(dir, plan.Options{ResourceTagValid: decl.CheckTagString})
	if err != nil {
		t.Fatal(err)
	}
	st := store.NewMemory(store.Options{Logger: quiet})
	t.Cleanup(func() { st.Close() })
	hr := hooks.NewRegistry(quiet)
	fc := &finishCounter{done: map[string]chan struct{}{}}
	fc.watching.Store(watching)
	hr.Register(fc)
	m, err := New(Config{Plans: set, Store: st, Hooks: hr, Engine: engine.New(engine.Config{Actions: farmActions{reg: reg, work: t.TempDir()}, Logger: quiet}),
		GlobalLimit: limit, Logger: quiet, Resources: decl})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Shutdown(context.Background())
		reg.Close()
	})
	return m, fc, st
}

// farmActions are the builtin actions with run_task wired and a
// workspace per plan under work.
type farmActions struct {
	reg  *actions.Registry
	work string
}

func (f farmActions) Lookup(name string) (engine.Action, bool) {
	s, ok := f.reg.Lookup(name)
	return farmAct{s, f.work}, ok
}

type farmAct struct {
	s    actions.Spec
	work string
}

func (a farmAct) Portable() bool { return a.s.Portable }
func (a farmAct) Run(ctx context.Context, env *engine.ActionEnv, p map[string]any) (any, error) {
	return a.s.Run(ctx, &actions.Env{PlanDir: env.Plan.Dir, WorkDir: filepath.Join(a.work, env.Plan.Name), RunTask: env.RunTask}, p)
}

func runToEnd(t *testing.T, m *Manager, fc *finishCounter, req *aurav1.SubmitRequest) *aurav1.Task {
	t.Helper()
	resp, err := m.Submit(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	<-fc.watch(resp.TaskId)
	task, err := m.Get(context.Background(), resp.TaskId)
	if err != nil {
		t.Fatal(err)
	}
	if task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("%s ended %s: %v", req.Task, task.Status, task.Error)
	}
	return task
}

func TestBindingReachesStepsChildrenAndChecks(t *testing.T) {
	m, fc, st := newFarm(t)
	task := runToEnd(t, m, fc, &aurav1.SubmitRequest{Task: "farm/any"})
	dev := task.Resources["device"]
	if dev == "" {
		t.Fatalf("Task.resources = %v, want a device", task.Resources)
	}
	// The step's template, the run_task child and (since planning
	// succeeded) the check task all saw the same device.
	got := task.Result.GetStructValue().AsMap()
	if got["step"] != dev || got["child"] != dev {
		t.Fatalf("returns %v, want the bound device %q everywhere", got, dev)
	}
	// The stored record keeps the binding (it survives a restart).
	row, err := st.GetTask(context.Background(), task.Id)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := decodeTask(row)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Resources["device"] != dev {
		t.Fatalf("stored resources %v, want device %s", stored.Resources, dev)
	}
	// So do the snapshots the task's events and hook events carry.
	evs, err := st.Events(context.Background(), 0, store.EventFilter{TaskID: task.Id, Types: []string{"task.running", "after_task_run"}}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 {
		t.Fatalf("got %d task.running and after_task_run events, want 2", len(evs))
	}
	for _, ev := range evs {
		var snap *aurav1.Task
		if ev.Hook {
			var he aurav1.HookEvent
			if err := proto.Unmarshal(ev.Data, &he); err != nil {
				t.Fatal(err)
			}
			snap = he.GetTask()
		} else {
			var te aurav1.TaskEvent
			if err := proto.Unmarshal(ev.Data, &te); err != nil {
				t.Fatal(err)
			}
			snap = te.GetTask()
		}
		if snap.GetResources()["device"] != dev {
			t.Fatalf("%s snapshot resources %v, want device %s", ev.Type, snap.GetResources(), dev)
		}
	}
	// Hooks read it from their TaskContext.
	if got := fc.resources(task.Id); got["device"] != dev {
		t.Fatalf("after_task_run hook saw resources %v, want device %s", got, dev)
	}
}

// TestTransitionsInheritTheBinding: the transition state planning runs
// writes the marker of the parent's device, the recorded transition task
// carries the parent's Task.resources, and the parent then finds it.
func TestTransitionsInheritTheBinding(t *testing.T) {
	m, fc, _ := newFarm(t)
	task := runToEnd(t, m, fc, &aurav1.SubmitRequest{Task: "marks/use"})
	dev := task.Resources["device"]
	if dev == "" || task.Result.GetStringValue() != dev {
		t.Fatalf("resources %v, returns %v", task.Resources, task.Result)
	}
	list, err := m.List(context.Background(), &aurav1.ListTasksRequest{LabelSelector: "aura.parent=" + task.Id})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Tasks) != 1 || list.Tasks[0].Task != "marks/mark" || list.Tasks[0].Resources["device"] != dev {
		t.Fatalf("transition tasks %v, want marks/mark bound to %s", list.Tasks, dev)
	}
}

func TestPinnedThroughInput(t *testing.T) {
	m, fc, _ := newFarm(t)
	in, _ := structpb.NewStruct(map[string]any{"serial": "b"})
	task := runToEnd(t, m, fc, &aurav1.SubmitRequest{Task: "farm/pinned", Inputs: in})
	if task.Resources["device"] != "b" || task.Result.GetStringValue() != "b" {
		t.Fatalf("resources %v, returns %v; want device b", task.Resources, task.Result)
	}
	if want := []string{"device:b:1", "api"}; strings.Join(task.ResourceTags, ",") != strings.Join(want, ",") {
		t.Fatalf("recorded tags %v, want the rendered %v", task.ResourceTags, want)
	}
}

func TestUnknownInstanceOrPoolIsRefused(t *testing.T) {
	m, _, _ := newFarm(t)
	cases := []struct {
		name  string
		req   *aurav1.SubmitRequest
		wants string
	}{
		{"unknown instance from an input", &aurav1.SubmitRequest{Task: "farm/pinned", Inputs: mustStruct(t, map[string]any{"serial": "zz"})}, `"device:zz:1"`},
		{"input that renders to whitespace", &aurav1.SubmitRequest{Task: "farm/pinned", Inputs: mustStruct(t, map[string]any{"serial": "a b"})}, `device:{{ inputs.serial }}`},
		{"unknown pool on the request", &aurav1.SubmitRequest{Task: "farm/report", ResourceTags: []string{"phone:*"}}, `no pool "phone"`},
		{"a pool's bare name", &aurav1.SubmitRequest{Task: "farm/report", ResourceTags: []string{"device"}}, `device is a pool`},
		{"two instances of one pool", &aurav1.SubmitRequest{Task: "farm/any", ResourceTags: []string{"device:a"}}, `at most one instance of pool "device"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := m.Submit(context.Background(), c.req)
			var inv *InvalidError
			if !errors.As(err, &inv) || inv.Field != "resource_tags" || !strings.Contains(err.Error(), c.wants) {
				t.Fatalf("got %v, want an InvalidError on resource_tags naming %s", err, c.wants)
			}
		})
	}
	list, err := m.List(context.Background(), &aurav1.ListTasksRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Tasks) != 0 {
		t.Fatalf("refused submissions created %d tasks", len(list.Tasks))
	}
}

func mustStruct(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// BenchmarkManagerPoolTasks pushes no-op tasks asking for any instance of
// a pool through the whole in-process lifecycle, as BenchmarkManagerNoopTasks
// does for plain keys: global limit 64 and a pool of 64 instances (every
// running task holds one; admission picks it) or 16 (the pool is the
// limit: tasks wait for an instance). The figure is tasks/s.
func BenchmarkManagerPoolTasks(b *testing.B) {
	for _, n := range []int{64, 16} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			instances := make([]string, n)
			for i := range instances {
				instances[i] = fmt.Sprint("emulator-", 5554+2*i)
			}
			m, fc, _ := newPoolManager(b, "testdata/farm", instances, 64, false)
			submitParallel(b, m, fc, &aurav1.SubmitRequest{Task: "farm/noop_any"})
		})
	}
}
