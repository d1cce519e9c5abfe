package stampede

import (
	"math/rand/v2"
	"time"
)

// RetryStrategy decides whether and when Obtain tries again after finding a
// lock held by someone else. Implementations must be safe for concurrent use;
// the ones in this package keep no state between calls.
type RetryStrategy interface {
	// Backoff is called after the n-th failed attempt (n starts at 1) and
	// returns how long to wait before the next one, or false to give up.
	Backoff(n int) (wait time.Duration, retry bool)
}

// NoRetry returns a strategy that makes a single attempt.
func NoRetry() RetryStrategy { return noRetry{} }

type noRetry struct{}

func (noRetry) Backoff(int) (time.Duration, bool) { return 0, false }

// ConstantBackoff returns a strategy that makes at most attempts attempts in
// all, waiting d between them. attempts below 1 count as 1.
func ConstantBackoff(d time.Duration, attempts int) RetryStrategy {
	return constantBackoff{d: max(d, 0), attempts: attempts}
}

type constantBackoff struct {
	d        time.Duration
	attempts int
}

func (c constantBackoff) Backoff(n int) (time.Duration, bool) {
	if n >= c.attempts {
		return 0, false
	}
	return c.d, true
}

// ExponentialBackoff returns a strategy that makes at most attempts attempts
// in all. The n-th wait is drawn uniformly from [b/2, b], where b doubles
// from minWait on each attempt and is capped at maxWait; the jitter keeps
// waiters that lost the same race from retrying in lockstep. attempts below 1
// count as 1; maxWait below minWait counts as minWait.
func ExponentialBackoff(minWait, maxWait time.Duration, attempts int) RetryStrategy {
	minWait = max(minWait, time.Millisecond)
	return expBackoff{min: minWait, max: max(maxWait, minWait), attempts: attempts}
}

type expBackoff struct {
	min, max time.Duration
	attempts int
}

func (e expBackoff) Backoff(n int) (time.Duration, bool) {
	if n >= e.attempts {
		return 0, false
	}
	b := e.max
	// Shift only while it cannot overflow past the cap.
	if shift := n - 1; shift < 62 && e.min<<shift>>shift == e.min && e.min<<shift < e.max {
		b = e.min << shift
	}
	half := b / 2
	return half + rand.N(b-half+1), true
}

// defaultRetry is the strategy used when neither LockerOptions.Retry nor an
// ObtainOption sets one: 12 attempts over roughly 1.5 to 3 seconds.
func defaultRetry() RetryStrategy {
	return ExponentialBackoff(8*time.Millisecond, 512*time.Millisecond, 12)
}
