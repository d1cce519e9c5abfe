package stampede

import (
	"context"
	"math"
	"math/rand/v2"
	"time"

	"github.com/stampede-go/stampede/internal/entry"
)

// freshness is where an entry stands in its life.
type freshness uint8

const (
	expired freshness = iota // past TTL + stale + keep window: a miss
	kept                     // inside the keep window: a miss whose load gets the value
	stale                    // past TTL, inside the stale window: serve and refresh
	fresh                    // within TTL
)

// judge classifies an entry from its header and the value key's remaining
// PTTL as the Redis server counts it (invariant 5). It also returns the
// entry's age and the remaining fresh time.
func judge(h entry.Header, pttl time.Duration) (f freshness, age, freshLeft time.Duration) {
	if pttl <= 0 {
		// -1 (no expiry) is never written by this package; -2 is gone.
		return expired, 0, 0
	}
	age = max(h.TTL+h.Stale+h.Keep-pttl, 0)
	freshLeft = pttl - h.Stale - h.Keep
	switch {
	case freshLeft > 0:
		return fresh, age, freshLeft
	case pttl > h.Keep:
		return stale, age, 0
	default:
		return kept, age, 0
	}
}

// shouldRefreshEarly is XFetch (Vattani, Chierichetti, Lowenstein, "Optimal
// probabilistic cache stampede prevention", VLDB 2015): refresh before expiry
// with probability exp(-t/(beta*delta)), where t is the remaining fresh time
// and delta the duration of the last load. Slow loads and hot keys start their
// refresh earlier; almost every expiry sees exactly one early refresh.
func shouldRefreshEarly(freshLeft, delta time.Duration, beta float64) bool {
	if beta <= 0 || delta <= 0 {
		return false
	}
	// -ln(U) with U in (0, 1]: 1-Float64() never yields 0, so ln(0) cannot occur.
	u := 1 - rand.Float64()
	return float64(delta)*beta*-math.Log(u) >= float64(freshLeft)
}

// refreshRunning says whether this process is refreshing key.
func (c *Cache[V]) refreshRunning(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.refreshing[key]
	return ok
}

// staleResult serves a stale copy with the error of the last failed
// refresh of key, if any, in LoadErr.
func (c *Cache[V]) staleResult(key string, e *localEntry[V]) (Result[V], error) {
	r, err := e.result(SourceStale, c.now())
	c.mu.Lock()
	r.LoadErr = c.refreshErr[key]
	c.mu.Unlock()
	return r, err
}

// refreshEarly is XFetch on an L1 hit: the L1 copy of a value outlives no
// Redis read, so without it a hot key would be read from L1 until it
// expired and then wait for its load.
func (c *Cache[V]) refreshEarly(ctx context.Context, key string, ld loader[V], e *localEntry[V], now time.Duration) {
	if e.tombstone || !shouldRefreshEarly(e.valueFresh-now, e.delta, c.opts.Beta) {
		return
	}
	known := replacingAny
	if e.id != 0 {
		known = replacingEntry(e.id)
	}
	c.refreshInBackground(ctx, key, ld, known, e, LoadEarly)
}

// xfetchReach bounds how far before expiry XFetch is tried, in units of
// delta*beta: exp(-20) is about 2e-9 per hit.
const xfetchReach = 20

// noEarly is earlyFrom for entries XFetch never refreshes.
const noEarly = time.Duration(math.MaxInt64)

// earlyFrom returns when XFetch may start trying to refresh a value fresh
// until valueFresh whose load took delta.
func (c *Cache[V]) earlyFrom(valueFresh, delta time.Duration) time.Duration {
	if c.opts.Beta <= 0 || delta <= 0 {
		return noEarly
	}
	return valueFresh - time.Duration(float64(delta)*c.opts.Beta*xfetchReach)
}
