package stampede

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stampede-go/stampede/internal/bounded"
)

// breaker is the circuit that keeps a dead Redis from costing a timeout per
// request (invariant 8): after an error, Redis is skipped for cooldown; then
// a single caller probes it, and a success closes the circuit.
type breaker struct {
	cooldown  time.Duration
	openUntil atomic.Int64 // on the cache's clock, in ns; 0: closed
	onClose   func()       // called once each time the circuit closes
}

// allow says whether this call may use Redis. now is called only when the
// circuit is open.
func (b *breaker) allow(now func() time.Duration) bool {
	u := b.openUntil.Load()
	if u == 0 {
		return true
	}
	t := int64(now())
	if t < u {
		return false
	}
	// Cooldown over: the one caller that moves the deadline probes.
	return b.openUntil.CompareAndSwap(u, t+int64(b.cooldown))
}

// trip opens the circuit. It reports whether it was closed until now.
func (b *breaker) trip(now time.Duration) bool {
	return b.openUntil.Swap(int64(now+b.cooldown)) == 0
}

// success closes the circuit after a Redis call that worked.
func (b *breaker) success() {
	if u := b.openUntil.Load(); u != 0 && b.openUntil.CompareAndSwap(u, 0) && b.onClose != nil {
		b.onClose()
	}
}

// unavailable says whether err means Redis itself is unreachable, hung or
// unable to serve any key (invariant 13): those open the circuit. A reply
// error about one key (wrong type, a script error on its data) does not.
func unavailable(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) {
		return false
	}
	if errors.Is(err, bounded.ErrTimeout) || errors.Is(err, redis.ErrClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var re redis.Error
	if errors.As(err, &re) {
		// Server states that refuse every key, not just this one.
		msg := re.Error()
		// OOM: under maxmemory with noeviction, Redis refuses the leases
		// and fills of every key, and inside MULTI even reads
		// (EXECABORT).
		for _, p := range []string{"LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY", "READONLY", "NOREPLICAS", "MISCONF", "OOM", "EXECABORT"} {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	}
	// Anything else (pool timeouts, dial failures, unknown transport
	// errors) is taken as Redis being unavailable.
	return true
}

// redisUsable says whether this call should talk to Redis.
func (c *Cache[V]) redisUsable() bool {
	return c.rdb != nil && c.breaker.allow(c.now)
}
