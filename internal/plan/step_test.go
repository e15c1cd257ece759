package plan

import (
	"testing"
	"time"
)

func TestRetryDelayBefore(t *testing.T) {
	r := Retry{MaxAttempts: 6, Delay: 100 * time.Millisecond, Backoff: 2, MaxDelay: 500 * time.Millisecond}
	want := map[int]time.Duration{2: 100 * time.Millisecond, 3: 200 * time.Millisecond, 4: 400 * time.Millisecond, 5: 500 * time.Millisecond, 6: 500 * time.Millisecond}
	for attempt, d := range want {
		if got := r.DelayBefore(attempt); got != d {
			t.Errorf("DelayBefore(%d) = %v, want %v", attempt, got, d)
		}
	}
	flat := Retry{Delay: time.Second, Backoff: 1}
	if got := flat.DelayBefore(5); got != time.Second {
		t.Errorf("constant backoff gave %v", got)
	}
}
