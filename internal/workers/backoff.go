package workers

import "time"

// restartBackoff spaces out the replacement of crashing workers: the delay
// doubles with each crash up to max, and starts over from base once a
// worker has stayed up for healthy. It is plain data, owned by one slot
// goroutine.
type restartBackoff struct {
	base, max, healthy time.Duration
	next               time.Duration
}

func newRestartBackoff(base, max, healthy time.Duration) restartBackoff {
	return restartBackoff{base: base, max: max, healthy: healthy, next: base}
}

// delay returns how long to wait before replacing a worker that crashed
// after uptime (0 for one that never came up).
func (b *restartBackoff) delay(uptime time.Duration) time.Duration {
	if uptime >= b.healthy {
		b.next = b.base
	}
	d := b.next
	b.next = min(2*b.next, b.max)
	return d
}
