package stampede

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// WaitPolicy says what a caller does when another node's rebuild has not
// landed within Options.WaitTimeout and there is no stale copy to serve.
type WaitPolicy uint8

const (
	// WaitLoadLocally calls the loader itself and returns its value without
	// storing it anywhere. This is the default: callers always get an answer.
	WaitLoadLocally WaitPolicy = iota
	// WaitReturnError returns an error wrapping ErrWaitTimeout.
	WaitReturnError
)

// Codec turns values into bytes and back. encoding/json's Marshal and
// Unmarshal have this shape.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// Options configures a Cache. The zero value of every field means its
// documented default.
type Options struct {
	// Namespace prefixes every Redis key and the pub/sub channel. It may not
	// contain '{' or '}'. Default: "stampede".
	Namespace string
	// TTL is how long a value is fresh. Default: 1 minute.
	TTL time.Duration
	// Stale is how long after TTL a value may still be served, at once,
	// while one node rebuilds it in the background. Default: 0 (no stale
	// serving: a value past TTL is a miss).
	Stale time.Duration
	// LockTTL is the rebuild lease. A node that dies mid-load blocks the
	// others for at most this long; a live one renews it every LockTTL/3
	// while its loader runs. Default: 5 seconds.
	LockTTL time.Duration
	// Recheck is how often a waiter re-reads Redis in case it missed the
	// "filled" notification. Default: 50 ms.
	Recheck time.Duration
	// WaitTimeout bounds how long a caller waits for another node's rebuild
	// before OnWaitTimeout applies. Default: 2 × LockTTL, so that a crashed
	// holder's lease runs out and a waiter takes over before anyone gives up.
	WaitTimeout time.Duration
	// OnWaitTimeout is what happens when WaitTimeout passes and there is no
	// stale copy. Default: WaitLoadLocally.
	OnWaitTimeout WaitPolicy
	// LoadTimeout bounds a loader's context. Loads run detached from the
	// callers' contexts, so that one caller giving up does not fail the
	// others; this is their own deadline. Default: 30 seconds.
	LoadTimeout time.Duration
	// NotFoundTTL is how long a loader's ErrNotFound is cached as a
	// tombstone. Default: 5 seconds. Negative: not-found is never cached.
	NotFoundTTL time.Duration
	// LocalCapacity is the number of entries the in-process cache (L1)
	// holds. Default: 10,000. Negative: no L1.
	LocalCapacity int
	// LocalMaxCost, when positive, bounds L1 by the sum of its entries'
	// costs (LocalCost), for example their size in bytes, instead of their
	// number; LocalCapacity is then how many entries it expects to hold, to
	// size its admission counters. Default: 0, L1 holds LocalCapacity
	// entries.
	LocalMaxCost int64
	// LocalCost says what a value costs in L1 when LocalMaxCost is set. A
	// value costing more than LocalMaxCost stays out of L1. Default: nil,
	// every value costs 1.
	LocalCost func(v any) int64
	// LocalTTL caps how long a value stays fresh in L1 before this node
	// reads Redis again. Set, Delete and rebuilds evict L1 copies on every
	// node through pub/sub within about one delivery; LocalTTL is the bound
	// when messages are lost in a way this node cannot notice. Default: 5
	// seconds with Redis; none without (rdb nil). Negative: no cap beyond
	// the value's own freshness.
	LocalTTL time.Duration
	// Beta scales XFetch early refresh: the larger, the earlier a hot key is
	// refreshed before it expires. Default: 1. Negative: no early refresh.
	Beta float64
	// FailClosed makes Get return an error wrapping ErrRedisUnavailable when
	// Redis fails, instead of falling back to L1, in-process single-flight
	// and the loader. Default: false (fail open).
	FailClosed bool
	// BreakerCooldown is how long, after a Redis error, Gets skip Redis
	// altogether before one of them probes it again, so a dead Redis does not
	// cost a timeout per request. Default: 1 second.
	BreakerCooldown time.Duration
	// RedisTimeout bounds every Redis call made on a caller's behalf (and
	// the library's background calls), whatever the client's own timeouts:
	// a call that takes longer counts as Redis failing, opens the circuit,
	// and the caller goes on without it. A waiter's calls are bounded by
	// what is left of WaitTimeout as well. Default: 1 second.
	RedisTimeout time.Duration
	// MaxKeyLen is the longest key accepted, in bytes. Default: 1024.
	MaxKeyLen int
	// Codec encodes values for Redis. Default: string and []byte values are
	// stored as they are, anything else as JSON.
	Codec Codec
	// Observer, if set, sees every event of the cache: hits, misses, loads
	// and their durations, waits and how they ended, leases, Redis errors,
	// the circuit breaker (see Event). Default: nil; Stats counts the
	// events either way.
	Observer Observer
	// Logger, if set, gets the events an operator should read, at the level
	// they deserve: failed background refreshes, loader panics (with the
	// stack), lost leases, refused write-backs, the circuit opening and
	// closing, unusable entries, L1 flushes. Default: nil, silent.
	Logger *slog.Logger
	// Invalidation is how Sets, Deletes and fills reach the other nodes'
	// L1. Default: InvalidateAuto (Redis tracks which node read which key
	// and tells only those, where the client and server allow it; else
	// every node hears every write). See Invalidation.
	Invalidation Invalidation
	// OnClient, if set, is called with every client the cache makes of
	// its own (in tracking mode: the client of the reads Redis tracks, made
	// again whenever a subscription reconnects, and one client per
	// server's subscription), before the cache uses it: to add the hooks or
	// instrumentation the client passed to New has, which the cache cannot
	// copy. Default: nil.
	OnClient func(redis.UniversalClient)
}

const (
	defaultNamespace   = "stampede"
	defaultTTL         = time.Minute
	defaultLockTTL     = 5 * time.Second
	defaultRecheck     = 50 * time.Millisecond
	defaultLoadTimeout = 30 * time.Second
	defaultNotFoundTTL = 5 * time.Second
	defaultCapacity    = 10_000
	defaultCooldown    = time.Second
	defaultMaxKeyLen   = 1024
	defaultLocalTTL    = 5 * time.Second
	defaultRedisTO     = time.Second
)

// validate reports the first field of o that makes no sense, wrapping
// ErrInvalidOptions.
func (o Options) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, a...)...)
	}
	if strings.ContainsAny(o.Namespace, "{}") {
		return bad("namespace %q contains a brace", o.Namespace)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"TTL", o.TTL}, {"Stale", o.Stale}, {"LockTTL", o.LockTTL}, {"Recheck", o.Recheck},
		{"WaitTimeout", o.WaitTimeout}, {"LoadTimeout", o.LoadTimeout},
		{"BreakerCooldown", o.BreakerCooldown}, {"RedisTimeout", o.RedisTimeout}} {
		if d.v < 0 {
			return bad("%s is negative (%v)", d.name, d.v)
		}
	}
	if o.MaxKeyLen < 0 {
		return bad("MaxKeyLen is negative")
	}
	if o.LocalMaxCost < 0 {
		return bad("LocalMaxCost is negative")
	}
	if o.OnWaitTimeout > WaitReturnError {
		return bad("unknown OnWaitTimeout %d", o.OnWaitTimeout)
	}
	if o.Invalidation > InvalidateTracking {
		return bad("unknown Invalidation %d", o.Invalidation)
	}
	if o.LockTTL != 0 && o.LockTTL < 3*time.Millisecond {
		return bad("LockTTL %v is too short to renew", o.LockTTL)
	}
	return nil
}

// setDefaults fills in the zero fields of o with their documented defaults.
func (o *Options) setDefaults() {
	if o.Namespace == "" {
		o.Namespace = defaultNamespace
	}
	if o.TTL == 0 {
		o.TTL = defaultTTL
	}
	if o.LockTTL == 0 {
		o.LockTTL = defaultLockTTL
	}
	if o.Recheck == 0 {
		o.Recheck = defaultRecheck
	}
	if o.WaitTimeout == 0 {
		o.WaitTimeout = 2 * o.LockTTL
	}
	if o.LoadTimeout == 0 {
		o.LoadTimeout = defaultLoadTimeout
	}
	if o.NotFoundTTL == 0 {
		o.NotFoundTTL = defaultNotFoundTTL
	}
	if o.LocalCapacity == 0 {
		o.LocalCapacity = defaultCapacity
	}
	if o.Beta == 0 {
		o.Beta = 1
	}
	if o.BreakerCooldown == 0 {
		o.BreakerCooldown = defaultCooldown
	}
	if o.MaxKeyLen == 0 {
		o.MaxKeyLen = defaultMaxKeyLen
	}
	if o.RedisTimeout == 0 {
		o.RedisTimeout = defaultRedisTO
	}
}
