package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkSchedulesIdleCPU starts aurad with none and with 10,000
// schedules that do not fire during the run (a yearly cron each, in three
// zones) and reports the CPU time aurad spends while idle, per second of
// wall time (idle-cpu-ms/s), measured over b.N seconds once it has
// settled, and the CPU time it took to start serving (start-cpu-ms: CPU
// rather than wall time, which a loaded machine stretches).
func BenchmarkSchedulesIdleCPU(b *testing.B) {
	for _, n := range []int{0, 10000} {
		b.Run(fmt.Sprint("schedules=", n), func(b *testing.B) { benchIdleCPU(b, n) })
	}
}

func benchIdleCPU(b *testing.B, n int) {
	plans := b.TempDir()
	copyDir(b, "testdata/plans/sched", filepath.Join(plans, "many"))
	var y strings.Builder
	y.WriteString("schedules:\n")
	zones := []string{"UTC", "Europe/Berlin", "America/New_York"}
	for i := range n {
		fmt.Fprintf(&y, "  s%05d:\n    task: many/tick\n    cron: \"%d %d 1 1 *\"\n    timezone: %s\n", i, i%60, i%24, zones[i%3])
	}
	if err := os.WriteFile(filepath.Join(plans, "many", "schedules.yaml"), []byte(y.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	d := startDaemonIn(b, plans, b.TempDir())
	pid := d.cmd.Process.Pid
	startCPU := cpuTime(b, pid)
	time.Sleep(2 * time.Second) // settle: the first reads and GCs after start
	b.ResetTimer()
	cpu0 := cpuTime(b, pid)
	wall0 := time.Now()
	time.Sleep(time.Duration(b.N) * time.Second)
	cpu := cpuTime(b, pid) - cpu0
	wall := time.Since(wall0)
	b.StopTimer()
	b.ReportMetric(float64(cpu.Milliseconds())/wall.Seconds(), "idle-cpu-ms/s")
	b.ReportMetric(float64(startCPU.Milliseconds()), "start-cpu-ms")
}

// cpuTime reads a process's user+system CPU time from /proc.
func cpuTime(b *testing.B, pid int) time.Duration {
	b.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the ")" that ends the command name: utime is the 12th,
	// stime the 13th (fields 14 and 15 of the whole line).
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("/proc/%d/stat: %q", pid, stat)
	}
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticksPerSecond
}
