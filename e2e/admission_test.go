package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/aura-dev/aura/client"
	"github.com/aura-dev/aura/internal/auth"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// Attacks between callers sharing one aurad: each principal is a token
// scoped to one plan, as a team's scheduler would hold.
//
//	plan-a: submit, read, hooks on plan e2e
//	plan-b: submit, read on plan demo
//	plan-a2: submit, read on plan e2e (a second caller of the same plan)
func admissionTokens(t *testing.T, extra string) string {
	t.Helper()
	return writeTokens(t, fmt.Sprintf(
		"  - {name: plan-a, sha256: %s, roles: [submit, read, hooks], plans: [e2e]}\n"+
			"  - {name: plan-b, sha256: %s, roles: [submit, read], plans: [demo]}\n"+
			"  - {name: plan-a2, sha256: %s, roles: [submit, read], plans: [e2e]}\n%s",
		auth.HashToken("tok-plan-a"), auth.HashToken("tok-plan-b"), auth.HashToken("tok-plan-a2"), extra))
}

// floodStream sends n copies of req on one SubmitStream and returns the
// ids accepted and the refusals, in order.
func floodStream(ctx context.Context, c *client.Client, req *aurav1.SubmitRequest, n int) (ids []string, refused []*aurav1.SubmitError, err error) {
	stream, err := c.Exec.SubmitStream(ctx)
	if err != nil {
		return nil, nil, err
	}
	sent := make(chan error, 1)
	go func() {
		for range n {
			if err := stream.Send(req); err != nil {
				sent <- err
				return
			}
		}
		sent <- stream.CloseSend()
	}()
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return ids, refused, err
		}
		if e := r.GetError(); e != nil {
			refused = append(refused, e)
		} else {
			ids = append(ids, r.GetTaskId())
		}
	}
	return ids, refused, <-sent
}

// Plan b's token uses an idempotency key; plan a's token (and a second
// caller of plan a) later send the same key. Each gets its own task, run
// for it; only a caller's own retry is deduplicated. Before keys were
// scoped, plan a got plan b's task id and status back and its task never ran.
func TestAdmissionIdempotencyKeyIsScopedToPrincipalAndTask(t *testing.T) {
	d := startDaemon(t, daemonOpts{args: []string{"--auth-tokens", admissionTokens(t, "")}})
	ctx := ctxT(t, 60*time.Second)
	a := dialAs(t, d.addr, client.WithToken("tok-plan-a"))
	b := dialAs(t, d.addr, client.WithToken("tok-plan-b"))
	a2 := dialAs(t, d.addr, client.WithToken("tok-plan-a2"))
	const key = "nightly-2026-12-01"

	bResp, err := b.Submit(ctx, &aurav1.SubmitRequest{Task: "demo/hello", IdempotencyKey: key})
	if err != nil {
		t.Fatal(err)
	}
	if task, err := b.Wait(ctx, bResp.TaskId); err != nil || task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("plan b's task: %v %v", task.GetStatus(), err)
	}
	submitOwn := func(c *client.Client, who string) string {
		t.Helper()
		resp, err := c.Submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick", IdempotencyKey: key})
		if err != nil {
			t.Fatalf("%s: %v", who, err)
		}
		if resp.Deduplicated || resp.TaskId == bResp.TaskId {
			t.Fatalf("%s got task %s (deduplicated %v, status %s) for its own submission; plan b's task is %s",
				who, resp.TaskId, resp.Deduplicated, resp.Status, bResp.TaskId)
		}
		task, err := c.Wait(ctx, resp.TaskId)
		if err != nil || task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED || task.Task != "e2e/quick" {
			t.Fatalf("%s's own task %s: %s %s, %v; want e2e/quick SUCCEEDED", who, resp.TaskId, task.GetTask(), task.GetStatus(), err)
		}
		return resp.TaskId
	}
	aID := submitOwn(a, "plan a")
	a2ID := submitOwn(a2, "plan a's second caller")
	if a2ID == aID {
		t.Fatalf("two principals of one plan share task %s", aID)
	}
	// A caller's own retry is deduplicated, and only to its own task.
	for _, c := range []struct {
		c    *client.Client
		task string
		want string
	}{{a, "e2e/quick", aID}, {a2, "e2e/quick", a2ID}, {b, "demo/hello", bResp.TaskId}} {
		resp, err := c.c.Submit(ctx, &aurav1.SubmitRequest{Task: c.task, IdempotencyKey: key})
		if err != nil || !resp.Deduplicated || resp.TaskId != c.want {
			t.Fatalf("retry of %s: %v (deduplicated %v) %v, want %s deduplicated", c.task, resp.GetTaskId(), resp.GetDeduplicated(), err, c.want)
		}
	}
}

// Without --auth-tokens every caller is one principal, so a key is shared
// by all callers, but only for the task it named: the same key on another
// task is another submission.
func TestAdmissionIdempotencyKeyWithoutAuthIsScopedToTask(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	ctx := ctxT(t, 60*time.Second)
	first := d.submit(ctx, &aurav1.SubmitRequest{Task: "demo/hello", IdempotencyKey: "k-1"})
	other, err := d.client.Submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick", IdempotencyKey: "k-1"})
	if err != nil || other.Deduplicated || other.TaskId == first {
		t.Fatalf("same key, another task: %v (deduplicated %v) %v, want a new task", other.GetTaskId(), other.GetDeduplicated(), err)
	}
	again, err := d.client.Submit(ctx, &aurav1.SubmitRequest{Task: "demo/hello", IdempotencyKey: "k-1"})
	if err != nil || !again.Deduplicated || again.TaskId != first {
		t.Fatalf("same key, same task: %v (deduplicated %v) %v, want %s", again.GetTaskId(), again.GetDeduplicated(), err, first)
	}
	if task := d.wait(ctx, other.TaskId); task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("the other task ended %s", task.Status)
	}
}

// A flood beyond the queue bounds is refused with RESOURCE_EXHAUSTED
// naming the bound, one principal's flood leaves room for others up to the
// total, and tasks recovered from the store at start count.
func TestAdmissionQueueBoundsRefuseAFlood(t *testing.T) {
	data := t.TempDir()
	tokens := admissionTokens(t, "")
	args := []string{"--auth-tokens", tokens, "--max-concurrent", "1", "--max-queued-per-principal", "50", "--max-queued", "80"}
	d := startDaemon(t, daemonOpts{data: data, args: args})
	ctx := ctxT(t, 120*time.Second)
	a := dialAs(t, d.addr, client.WithToken("tok-plan-a"))
	b := dialAs(t, d.addr, client.WithToken("tok-plan-b"))

	hold, err := structpb.NewStruct(map[string]any{"ms": 240_000})
	if err != nil {
		t.Fatal(err)
	}
	holder, err := a.Submit(ctx, &aurav1.SubmitRequest{Task: "e2e/hold", Inputs: hold})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the holder to run", 30*time.Second, func() bool {
		task, err := a.Get(ctx, holder.TaskId)
		return err == nil && task.Status == aurav1.TaskStatus_TASK_STATUS_RUNNING
	})

	// Each holds the slot as long as the first, so that after a restart
	// the recovered ones still wait.
	ids, refused, err := floodStream(ctx, a, &aurav1.SubmitRequest{Task: "e2e/hold", Inputs: hold}, 200)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 50 || len(refused) != 150 {
		t.Fatalf("plan a's flood of 200: %d accepted, %d refused; want 50 and 150", len(ids), len(refused))
	}
	if e := refused[0]; codes.Code(e.Code) != codes.ResourceExhausted || !strings.Contains(e.Message, "--max-queued-per-principal 50") {
		t.Fatalf("refusal %s %q, want RESOURCE_EXHAUSTED naming --max-queued-per-principal 50", codes.Code(e.Code), e.Message)
	}
	// Plan b still gets in, up to the total bound.
	ids, refused, err = floodStream(ctx, b, &aurav1.SubmitRequest{Task: "demo/hello"}, 40)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 30 || len(refused) != 10 || !strings.Contains(refused[0].Message, "--max-queued 80") {
		t.Fatalf("plan b's 40: %d accepted, %d refused (%v); want 30, then RESOURCE_EXHAUSTED naming --max-queued 80", len(ids), len(refused), refused)
	}
	_, err = b.Submit(ctx, &aurav1.SubmitRequest{Task: "demo/hello"})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "--max-queued 80") {
		t.Fatalf("unary Submit beyond the total bound: %v, want RESOURCE_EXHAUSTED naming the bound", err)
	}
	st, err := a.Exec.GetStats(ctx, &aurav1.GetStatsRequest{})
	if err != nil || st.CountsByStatus["TASK_STATUS_QUEUED"] != 80 {
		t.Fatalf("queued tasks: %v %v, want 80", st.GetCountsByStatus(), err)
	}

	// Restart: the 80 queued tasks come back and still count. The first
	// of a's starts (the holder was interrupted): a has 49 waiting, 79 in
	// all, so a gets one more place and then nobody any.
	d.kill()
	d = startDaemon(t, daemonOpts{data: data, args: args})
	a = dialAs(t, d.addr, client.WithToken("tok-plan-a"))
	b = dialAs(t, d.addr, client.WithToken("tok-plan-b"))
	if _, err := a.Submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"}); err != nil {
		t.Fatalf("after a restart, a's 50th waiting task: %v", err)
	}
	_, err = a.Submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "--max-queued-per-principal 50") {
		t.Fatalf("after a restart with a's 49 recovered tasks and one new: %v, want RESOURCE_EXHAUSTED per principal", err)
	}
	_, err = b.Submit(ctx, &aurav1.SubmitRequest{Task: "demo/hello"})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "--max-queued 80") {
		t.Fatalf("after a restart with 80 waiting: %v, want RESOURCE_EXHAUSTED for the total", err)
	}
}

// behindTheFlood submits one demo/hello as b once a has flooded the queue,
// waits for it to succeed, and says how long it waited for a slot and how
// many of a's e2e tasks (of how many) were admitted meanwhile.
func behindTheFlood(t *testing.T, ctx context.Context, a, b *client.Client) (waited time.Duration, overtook, total int) {
	t.Helper()
	resp, err := b.Submit(ctx, &aurav1.SubmitRequest{Task: "demo/hello"})
	if err != nil {
		t.Fatal(err)
	}
	task, err := b.Wait(ctx, resp.TaskId)
	if err != nil || task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("plan b's task: %v %v", task.GetStatus(), err)
	}
	from, to := task.CreatedAt.AsTime(), task.AdmittedAt.AsTime()
	token := ""
	for {
		resp, err := a.Exec.ListTasks(ctx, &aurav1.ListTasksRequest{Plan: "e2e", PageSize: 1000, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range resp.Tasks {
			total++
			if at := task.GetAdmittedAt(); at != nil && at.AsTime().After(from) && at.AsTime().Before(to) {
				overtook++
			}
		}
		if token = resp.NextPageToken; token == "" {
			return to.Sub(from), overtook, total
		}
	}
}

// plan a floods the queue with tasks that each hold a slot for a while;
// plan b then submits one task. b's task starts at the first slot that
// frees instead of behind a's whole backlog, whatever priority a asks for.
func TestAdmissionFairShareAgainstAFlood(t *testing.T) {
	d := startDaemon(t, daemonOpts{args: []string{"--auth-tokens", admissionTokens(t, ""), "--max-concurrent", "2"}})
	ctx := ctxT(t, 120*time.Second)
	a := dialAs(t, d.addr, client.WithToken("tok-plan-a"))
	b := dialAs(t, d.addr, client.WithToken("tok-plan-b"))
	hold, err := structpb.NewStruct(map[string]any{"ms": 300})
	if err != nil {
		t.Fatal(err)
	}
	const flood = 40 // 40 x 300 ms on 2 slots: 6 s behind a's queue
	if ids, refused, err := floodStream(ctx, a, &aurav1.SubmitRequest{Task: "e2e/hold", Inputs: hold, Priority: auth.DefaultMaxPriority}, flood); err != nil || len(ids) != flood {
		t.Fatalf("plan a's flood: %d accepted, %v, %v", len(ids), refused, err)
	}
	waited, overtook, total := behindTheFlood(t, ctx, a, b)
	t.Logf("plan b's task waited %s for a slot; %d of plan a's %d tasks started in the meantime", waited, overtook, total)
	// The slots a held when b arrived free one by one; the first goes to b.
	// (One more of a's may start while b's submission is being recorded.)
	if overtook > 2 {
		t.Fatalf("%d of plan a's tasks started while plan b's task waited; fair shares allow at most 2", overtook)
	}
}

// plan a registers an interceptor for its own plan that never answers, so
// each of its tasks holds a slot for the interceptor's timeout. Plan b's
// task still starts at the first slot that frees: a stalled plan holds its
// share, not every slot in turn.
func TestAdmissionStalledInterceptorHoldsOnlyItsShare(t *testing.T) {
	d := startDaemon(t, daemonOpts{args: []string{"--auth-tokens", admissionTokens(t, ""), "--max-concurrent", "2"}})
	ctx := ctxT(t, 120*time.Second)
	a := dialAs(t, d.addr, client.WithToken("tok-plan-a"))
	b := dialAs(t, d.addr, client.WithToken("tok-plan-b"))

	ictx, stop := context.WithCancel(ctx)
	defer stop()
	stream, err := a.Hooks.Intercept(ictx)
	if err != nil {
		t.Fatal(err)
	}
	reg := &aurav1.InterceptRegistration{Name: "stalls", Plan: "e2e", Timeout: durationpb.New(time.Second), FailOpen: true}
	if err := stream.Send(&aurav1.InterceptReply{Msg: &aurav1.InterceptReply_Register{Register: reg}}); err != nil {
		t.Fatal(err)
	}
	go func() { // read the calls, answer none
		for {
			if _, err := stream.Recv(); err != nil {
				return
			}
		}
	}()
	waitFor(t, "the interceptor to register", 10*time.Second, func() bool {
		s, err := a.Exec.GetStats(ctx, &aurav1.GetStatsRequest{})
		return err == nil && s.Interceptors >= 1
	})

	const flood = 12 // 12 x 1 s on 2 slots: 6 s behind a's queue
	if ids, refused, err := floodStream(ctx, a, &aurav1.SubmitRequest{Task: "e2e/quick"}, flood); err != nil || len(ids) != flood {
		t.Fatalf("plan a's tasks: %d accepted, %v, %v", len(ids), refused, err)
	}
	waited, overtook, total := behindTheFlood(t, ctx, a, b)
	t.Logf("plan b's task waited %s for a slot; %d of plan a's %d stalled tasks started in the meantime", waited, overtook, total)
	if overtook > 2 {
		t.Fatalf("%d of plan a's stalled tasks took a slot while plan b's task waited; fair shares allow at most 2", overtook)
	}
}

// Clients may not forge the label aurad puts on state transitions, nor
// hide text in label values with bidirectional or zero-width characters.
func TestAdmissionLabelsRefuseInternalKeysAndInvisibleCharacters(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	ctx := ctxT(t, 30*time.Second)
	for _, c := range []struct {
		labels map[string]string
		field  string
	}{
		{map[string]string{"aura.parent": "0190a0b2-0000-7000-8000-000000000000"}, "labels[aura.parent]"},
		{map[string]string{"owner": "alice\u202Eecila"}, "labels[owner]"},
		{map[string]string{"team": "ops\u200B"}, "labels[team]"},
		{map[string]string{"note": "a\u2066b\u2069"}, "labels[note]"},
	} {
		_, err := d.client.Submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick", Labels: c.labels})
		if status.Code(err) != codes.InvalidArgument || !strings.HasPrefix(status.Convert(err).Message(), c.field+": ") {
			t.Errorf("labels %q: %v, want INVALID_ARGUMENT naming %s", c.labels, err, c.field)
		}
	}
	resp, err := d.client.Exec.ListTasks(ctx, &aurav1.ListTasksRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.Tasks); n != 0 {
		t.Fatalf("%d tasks recorded from refused submissions", n)
	}
	// Ordinary text, accents and all, is still fine.
	id := d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick", Labels: map[string]string{"owner": "Zoë Ångström"}})
	if task := d.wait(ctx, id); !slices.Equal([]string{task.Labels["owner"]}, []string{"Zoë Ångström"}) {
		t.Fatalf("labels %v", task.Labels)
	}
}

// The priority a caller may set is capped: MaxInt32 no longer buys the
// front of the queue.
func TestAdmissionPriorityIsCapped(t *testing.T) {
	extra := fmt.Sprintf("  - {name: low-cap, sha256: %s, roles: [submit], max_priority: 10}\n", auth.HashToken("tok-low-cap"))
	d := startDaemon(t, daemonOpts{args: []string{"--auth-tokens", admissionTokens(t, extra)}})
	ctx := ctxT(t, 30*time.Second)
	for _, c := range []struct {
		token    string
		priority int32
	}{{"tok-plan-a", 2147483647}, {"tok-plan-a", auth.DefaultMaxPriority + 1}, {"tok-low-cap", 11}} {
		cl := dialAs(t, d.addr, client.WithToken(c.token))
		_, err := cl.Submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick", Priority: c.priority})
		if status.Code(err) != codes.PermissionDenied || !strings.HasPrefix(status.Convert(err).Message(), "priority: ") {
			t.Errorf("%s with priority %d: %v, want PERMISSION_DENIED naming priority", c.token, c.priority, err)
		}
	}
	low := dialAs(t, d.addr, client.WithToken("tok-low-cap"))
	if _, err := low.Submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick", Priority: 10}); err != nil {
		t.Fatalf("priority at the cap: %v", err)
	}
}

// GetStats shows each principal's part of admission: the slots it holds,
// its tasks waiting against its bound, and its fair share of the global
// limit, so an operator can see who is flooding and who is held back. A
// caller without the admin role sees only its own entry: the others'
// names would tell it which tokens exist. auractl stats prints them.
func TestAdmissionStatsShowEachPrincipalsShare(t *testing.T) {
	tokens := admissionTokens(t, "") // "ops" holds every role, admin included
	d := startDaemon(t, daemonOpts{args: []string{"--auth-tokens", tokens, "--max-concurrent", "2",
		"--max-queued-per-principal", "50", "--max-queued", "80"}})
	ctx := ctxT(t, 90*time.Second)
	a := dialAs(t, d.addr, client.WithToken("tok-plan-a"))
	a2 := dialAs(t, d.addr, client.WithToken("tok-plan-a2"))
	ops := dialAs(t, d.addr, client.WithToken("ops"))
	hold, err := structpb.NewStruct(map[string]any{"ms": 120_000})
	if err != nil {
		t.Fatal(err)
	}
	submit := func(c *client.Client) string {
		t.Helper()
		resp, err := c.Submit(ctx, &aurav1.SubmitRequest{Task: "e2e/hold", Inputs: hold})
		if err != nil {
			t.Fatal(err)
		}
		return resp.TaskId
	}
	running := func(c *client.Client, id string) {
		t.Helper()
		waitFor(t, "task "+id+" to run", 30*time.Second, func() bool {
			task, err := c.Get(ctx, id)
			return err == nil && task.Status == aurav1.TaskStatus_TASK_STATUS_RUNNING
		})
	}
	// One slot each, then plan a waits with 3 tasks and plan a2 with 1.
	running(a, submit(a))
	running(a2, submit(a2))
	for range 3 {
		submit(a)
	}
	submit(a2)

	want := map[string]*aurav1.PrincipalStats{
		"plan-a":  {Principal: "plan-a", InUse: 1, Waiting: 3, MaxWaiting: 50, FairShare: 1},
		"plan-a2": {Principal: "plan-a2", InUse: 1, Waiting: 1, MaxWaiting: 50, FairShare: 1},
	}
	var last *aurav1.Stats
	matches := func(st *aurav1.Stats, names ...string) bool {
		if len(st.GetPrincipals()) != len(names) {
			return false
		}
		for i, p := range st.GetPrincipals() {
			w := want[names[i]]
			if p.Principal != w.Principal || p.InUse != w.InUse || p.Waiting != w.Waiting || p.MaxWaiting != w.MaxWaiting || p.FairShare != w.FairShare {
				return false
			}
		}
		return true
	}
	waitFor(t, "GetStats to show both principals' shares", 30*time.Second, func() bool {
		last, err = ops.Exec.GetStats(ctx, &aurav1.GetStatsRequest{})
		return err == nil && matches(last, "plan-a", "plan-a2") && last.MaxQueued == 80
	})
	// A caller without admin sees only itself.
	own, err := a2.Exec.GetStats(ctx, &aurav1.GetStatsRequest{})
	if err != nil || !matches(own, "plan-a2") {
		t.Fatalf("plan a2's own GetStats: %v %v; want only its own entry", own.GetPrincipals(), err)
	}

	cmd := exec.Command(bin.auractl, "--addr", d.addr, "stats")
	cmd.Env = append(os.Environ(), "AURA_TOKEN=ops")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("auractl stats: %v\n%s", err, out)
	}
	for _, line := range []string{"PRINCIPAL", "plan-a ", "plan-a2 ", "queued in all at most 80"} {
		if !strings.Contains(string(out), line) {
			t.Fatalf("auractl stats lacks %q:\n%s", line, out)
		}
	}
	if !regexp.MustCompile(`(?m)^plan-a\s+1\s+3\s+50\s+1\.0\s*$`).Match(out) {
		t.Fatalf("auractl stats: no row for plan-a with 1 in use, 3 waiting of 50, fair share 1.0:\n%s", out)
	}
}

// Every check Submit makes holds on SubmitStream too, where each message
// goes through the stream's own path: a priority above the cap, a forged
// aura. label and an invisible character are refused in place with
// Submit's code and message, and an idempotency key finds only the
// caller's own task (two copies of a new key on one stream make one task).
func TestAdmissionSubmitStreamMakesSubmitsChecks(t *testing.T) {
	d := startDaemon(t, daemonOpts{args: []string{"--auth-tokens", admissionTokens(t, "")}})
	ctx := ctxT(t, 60*time.Second)
	a := dialAs(t, d.addr, client.WithToken("tok-plan-a"))
	a2 := dialAs(t, d.addr, client.WithToken("tok-plan-a2"))
	const key = "nightly-2026-12-01"
	first, err := a.Submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick", IdempotencyKey: key})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		req    *aurav1.SubmitRequest
		code   codes.Code
		prefix string
	}{
		{&aurav1.SubmitRequest{Task: "e2e/quick", Priority: 2147483647}, codes.PermissionDenied, "priority: "},
		{&aurav1.SubmitRequest{Task: "e2e/quick", Labels: map[string]string{"aura.parent": first.TaskId}}, codes.InvalidArgument, "labels[aura.parent]: "},
		{&aurav1.SubmitRequest{Task: "e2e/quick", Labels: map[string]string{"owner": "alice\u202Eecila"}}, codes.InvalidArgument, "labels[owner]: "},
	} {
		ids, refused, err := floodStream(ctx, a, c.req, 2)
		if err != nil || len(ids) != 0 || len(refused) != 2 {
			t.Fatalf("%v on SubmitStream: accepted %v, refused %v, %v; want both refused", c.req, ids, refused, err)
		}
		for _, e := range refused {
			if codes.Code(e.Code) != c.code || !strings.HasPrefix(e.Message, c.prefix) {
				t.Errorf("%v on SubmitStream: %s %q; want %s starting %q", c.req, codes.Code(e.Code), e.Message, c.code, c.prefix)
			}
		}
	}
	// Another principal's key is its own: one new task for both copies.
	ids, refused, err := floodStream(ctx, a2, &aurav1.SubmitRequest{Task: "e2e/quick", IdempotencyKey: key}, 2)
	if err != nil || len(refused) != 0 || len(ids) != 2 || ids[0] != ids[1] || ids[0] == first.TaskId {
		t.Fatalf("plan a2's key on SubmitStream: %v, refused %v, %v; want one task of its own, not %s", ids, refused, err, first.TaskId)
	}
	if task, err := a2.Wait(ctx, ids[0]); err != nil || task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("plan a2's own task: %v %v", task.GetStatus(), err)
	}
	// The owner's retry on a stream finds its own task.
	ids, _, err = floodStream(ctx, a, &aurav1.SubmitRequest{Task: "e2e/quick", IdempotencyKey: key}, 1)
	if err != nil || len(ids) != 1 || ids[0] != first.TaskId {
		t.Fatalf("plan a's retry on SubmitStream: %v %v; want %s", ids, err, first.TaskId)
	}
	resp, err := a.Exec.ListTasks(ctx, &aurav1.ListTasksRequest{Plan: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.Tasks); n != 2 {
		t.Fatalf("%d tasks recorded; want 2 (plan a's and plan a2's)", n)
	}
}
