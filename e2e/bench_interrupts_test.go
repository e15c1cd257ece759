package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// BenchmarkInterruptPolling measures what interrupt rules cost aurad: 50
// phones each held by a task that waits, with no rules and with 100 rules
// polled on every phone every 2s (5,000 rule-phone pairs, 2,500 checks a
// second, none firing). It reports aurad's CPU time per second of wall
// time (cpu-ms/s) over b.N seconds once the polling has settled, the
// checks run per second (checks/s, from ListInterrupts) and the CPU time
// a check costs (cpu-µs/check, all of aurad's CPU divided by the checks).
func BenchmarkInterruptPolling(b *testing.B) {
	for _, n := range []int{0, 100} {
		b.Run(fmt.Sprint("rules=", n), func(b *testing.B) { benchInterruptPolling(b, n, 50) })
	}
}

func benchInterruptPolling(b *testing.B, rules, phones int) {
	plans := b.TempDir()
	dir := filepath.Join(plans, "busy")
	var names []string
	for i := range phones {
		names = append(names, fmt.Sprintf("p%02d", i))
	}
	var y strings.Builder
	y.WriteString("interrupts:\n")
	for i := range rules {
		fmt.Fprintf(&y, "  r%03d: {check: checks/popup, every: 2s, scope: device, handler: handlers/close}\n", i)
	}
	files := map[string]string{
		"tasks/hold.yaml": `meta:
  resource_tags: ["device:{{ inputs.serial }}"]
  timeout: 1h
inputs:
  - {name: serial, type: string, required: true}
steps:
  - action: exec
    params: {argv: [sh, -c, 'while [ ! -e release ]; do sleep 0.2; done']}
`,
		"tasks/checks/popup.yaml":   "steps:\n  - id: look\n    action: file.exists\n    params: {path: \"devices/{{ resources.device }}/popup\"}\nreturns: \"{{ nodes.look.output }}\"\n",
		"tasks/handlers/close.yaml": "steps:\n  - action: noop\n",
		"interrupts.yaml":           y.String(),
	}
	for rel, body := range files {
		path := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	res := filepath.Join(b.TempDir(), "resources.yaml")
	decl := fmt.Sprintf("resources:\n  device:\n    instances: [%s]\n    limit: 1\n", strings.Join(names, ", "))
	if err := os.WriteFile(res, []byte(decl), 0o644); err != nil {
		b.Fatal(err)
	}
	data := b.TempDir()
	d := startDaemonIn(b, plans, data, "--resources", res, "--max-concurrent", "100", "--io-workers", "128")
	b.Cleanup(func() {
		// Let the holders end, so the daemon stops without its grace.
		_ = os.WriteFile(filepath.Join(data, "work", "busy", "release"), nil, 0o644)
	})
	ctx := b.Context()
	var ids []string
	for _, p := range names {
		in, err := structpb.NewStruct(map[string]any{"serial": p})
		if err != nil {
			b.Fatal(err)
		}
		resp, err := d.client.Submit(ctx, &aurav1.SubmitRequest{Task: "busy/hold", Inputs: in})
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, resp.TaskId)
	}
	waitFor(b, "every phone held", time.Minute, func() bool {
		for _, id := range ids {
			t, err := d.client.Get(ctx, id)
			if err != nil || t.Status != aurav1.TaskStatus_TASK_STATUS_RUNNING {
				return false
			}
		}
		return true
	})
	checks := func() uint64 {
		resp, err := aurav1.NewInterruptServiceClient(d.client.Conn()).ListInterrupts(ctx, &aurav1.ListInterruptsRequest{})
		if err != nil {
			b.Fatal(err)
		}
		var n uint64
		for _, r := range resp.Rules {
			n += r.ChecksRun
		}
		return n
	}
	pid := d.cmd.Process.Pid
	time.Sleep(5 * time.Second) // settle: the first checks start one interval after the phones are held
	b.ResetTimer()
	cpu0, checks0, wall0 := cpuTime(b, pid), checks(), time.Now()
	time.Sleep(time.Duration(b.N) * time.Second)
	cpu, ran, wall := cpuTime(b, pid)-cpu0, checks()-checks0, time.Since(wall0)
	b.StopTimer()
	b.ReportMetric(float64(cpu.Milliseconds())/wall.Seconds(), "cpu-ms/s")
	b.ReportMetric(float64(ran)/wall.Seconds(), "checks/s")
	if ran > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(ran), "cpu-µs/check")
	}
}
