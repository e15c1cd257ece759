package auth

import (
	"sync"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Limits bound what one principal may use at once. Zero means unlimited.
type Limits struct {
	// Rate is requests per second per principal (a streamed SubmitStream
	// message counts as one request); Burst is how many may come at once.
	Rate  float64
	Burst int
	// MaxStreams bounds a principal's concurrent streaming RPCs.
	MaxStreams int
	// MaxSubscribers bounds a principal's concurrent Subscribe and
	// Intercept streams (they also count as streams).
	MaxSubscribers int
}

var (
	errRateLimited     = status.Error(codes.ResourceExhausted, "rate limit exceeded; retry later")
	errTooManyStreams  = status.Error(codes.ResourceExhausted, "too many concurrent streams for this caller")
	errTooManyHookSubs = status.Error(codes.ResourceExhausted, "too many concurrent hook subscribers for this caller")
)

// quotas tracks each principal's rate limiter and open streams. Principals
// come from the tokens file (or are one anonymous caller), so the map stays
// as small as that file.
type quotas struct {
	limits Limits

	mu sync.Mutex
	by map[string]*quota // guarded by mu, as are the counters inside
}

type quota struct {
	limiter *rate.Limiter // safe for concurrent use on its own
	streams int
	subs    int
}

func newQuotas(l Limits) *quotas {
	return &quotas{limits: l, by: map[string]*quota{}}
}

func (q *quotas) get(name string) *quota {
	q.mu.Lock()
	defer q.mu.Unlock()
	u, ok := q.by[name]
	if !ok {
		u = &quota{}
		if q.limits.Rate > 0 {
			burst := q.limits.Burst
			if burst < 1 { // one second's worth
				burst = max(1, int(q.limits.Rate))
			}
			u.limiter = rate.NewLimiter(rate.Limit(q.limits.Rate), burst)
		}
		q.by[name] = u
	}
	return u
}

// allow takes one request from the principal's rate budget.
func (q *quotas) allow(name string) error {
	if u := q.get(name); u.limiter != nil && !u.limiter.Allow() {
		return errRateLimited
	}
	return nil
}

// openStream reserves a stream (and a subscriber slot when subscriber);
// the returned func gives them back.
func (q *quotas) openStream(name string, subscriber bool) (release func(), err error) {
	u := q.get(name)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.limits.MaxStreams > 0 && u.streams >= q.limits.MaxStreams {
		return nil, errTooManyStreams
	}
	if subscriber && q.limits.MaxSubscribers > 0 && u.subs >= q.limits.MaxSubscribers {
		return nil, errTooManyHookSubs
	}
	u.streams++
	if subscriber {
		u.subs++
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			q.mu.Lock()
			u.streams--
			if subscriber {
				u.subs--
			}
			q.mu.Unlock()
		})
	}, nil
}
