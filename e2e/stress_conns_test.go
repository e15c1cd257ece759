//go:build stress

package e2e

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestStressIdleConnections is the full-size idle-connection attack (make
// stress): two attacker processes on two loopback addresses open
// AURA_STRESS_CONNS connections in all (default 22,000, more than aurad's
// descriptor limit on most machines), then a legitimate client submits a
// task. AURA_STRESS_ARGS adds aurad flags (space-separated), e.g. to
// measure with the limits off. It reports aurad's RSS and descriptors.
func TestStressIdleConnections(t *testing.T) {
	n := 22000
	if v := os.Getenv("AURA_STRESS_CONNS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	d := startDaemon(t, daemonOpts{args: strings.Fields(os.Getenv("AURA_STRESS_ARGS"))})
	pid := d.cmd.Process.Pid
	if err := legitSubmit(t, d.addr, 30*time.Second); err != nil {
		t.Fatalf("before the attack: %v", err)
	}
	rssBefore, fdsBefore := rssKiB(t, pid), openFDs(t, pid)
	attack := idleAttack(t, d.addr, n/2, "127.0.0.1", "127.0.0.2")
	rssDuring, fdsDuring := rssKiB(t, pid), openFDs(t, pid)
	start := time.Now()
	err := legitSubmit(t, d.addr, 10*time.Second)
	took := time.Since(start).Round(time.Millisecond)
	t.Logf("%d idle connections from 2 addresses: the attackers hold %d open", n, attack.held())
	t.Logf("aurad RSS %d -> %d KiB, descriptors %d -> %d", rssBefore, rssDuring, fdsBefore, fdsDuring)
	t.Logf("legitimate Submit+Wait (from an attacker's address) during the attack: err=%v after %s", err, took)
	if err != nil {
		t.Errorf("a legitimate client was not served during the attack: %v", err)
	}
}
