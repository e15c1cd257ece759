package workers

import (
	"testing"
	"time"
)

func TestRestartBackoff(t *testing.T) {
	const ms = time.Millisecond
	b := newRestartBackoff(10*ms, 80*ms, time.Minute)
	steps := []struct {
		uptime time.Duration
		want   time.Duration
	}{
		{0, 10 * ms},           // first crash
		{time.Second, 20 * ms}, // crash loop: doubling
		{0, 40 * ms},
		{0, 80 * ms},
		{0, 80 * ms},           // capped
		{time.Minute, 10 * ms}, // it had been healthy: start over
		{0, 20 * ms},
	}
	for i, s := range steps {
		if got := b.delay(s.uptime); got != s.want {
			t.Fatalf("crash %d (uptime %s): delay %s, want %s", i+1, s.uptime, got, s.want)
		}
	}
}
