package stampede

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/redis/go-redis/v9"
)

// Errors returned by the cache. Check them with errors.Is.
var (
	// ErrNotFound is returned by a loader to say the key has no value. It is
	// cached as a short tombstone (Options.NotFoundTTL) and returned to callers.
	ErrNotFound = errors.New("stampede: not found")
	// ErrWaitTimeout: another node's rebuild did not land within
	// Options.WaitTimeout and the policy is WaitReturnError.
	ErrWaitTimeout = errors.New("stampede: timed out waiting for another node's rebuild")
	// ErrInvalidKey: the key is empty, longer than Options.MaxKeyLen, or
	// starts with '}' (which would split its Redis keys across hash slots).
	ErrInvalidKey = errors.New("stampede: invalid key")
	// ErrNilLoader: Get or Fetch was called with a nil loader.
	ErrNilLoader = errors.New("stampede: nil loader")
	// ErrInvalidOptions: New was given options that make no sense.
	ErrInvalidOptions = errors.New("stampede: invalid options")
	// ErrRedisUnavailable wraps Redis errors when FailClosed is set, and Set
	// and Delete errors always.
	ErrRedisUnavailable = errors.New("stampede: redis unavailable")
	// ErrClosed: the cache was closed.
	ErrClosed = errors.New("stampede: cache closed")
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
	// LocalTTL caps how long a value stays in L1. L1 entries are evicted on
	// every node by Set, Delete and rebuilds through pub/sub, so the default
	// is no cap beyond the value's own freshness.
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
	// MaxKeyLen is the longest key accepted, in bytes. Default: 1024.
	MaxKeyLen int
	// Codec encodes values for Redis. Default: string and []byte values are
	// stored as they are, anything else as JSON.
	Codec Codec
	// OnError, if set, receives errors nobody else sees: failed background
	// refreshes (the callers were already served a stale or fresh copy),
	// lease renewal errors, undecodable entries. Default: nil (counted in
	// Stats, not reported).
	OnError func(key string, err error)
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
)

// withDefaults validates o and fills in its zero fields.
func (o Options) withDefaults() (Options, error) {
	bad := func(format string, a ...any) (Options, error) {
		return o, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, a...)...)
	}
	if strings.ContainsAny(o.Namespace, "{}") {
		return bad("namespace %q contains a brace", o.Namespace)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"TTL", o.TTL}, {"Stale", o.Stale}, {"LockTTL", o.LockTTL}, {"Recheck", o.Recheck},
		{"WaitTimeout", o.WaitTimeout}, {"LoadTimeout", o.LoadTimeout}, {"LocalTTL", o.LocalTTL},
		{"BreakerCooldown", o.BreakerCooldown}} {
		if d.v < 0 {
			return bad("%s is negative (%v)", d.name, d.v)
		}
	}
	if o.MaxKeyLen < 0 {
		return bad("MaxKeyLen is negative")
	}
	if o.OnWaitTimeout > WaitReturnError {
		return bad("unknown OnWaitTimeout %d", o.OnWaitTimeout)
	}
	if o.Namespace == "" {
		o.Namespace = defaultNamespace
	}
	if o.TTL == 0 {
		o.TTL = defaultTTL
	}
	if o.LockTTL == 0 {
		o.LockTTL = defaultLockTTL
	}
	if o.LockTTL < 3*time.Millisecond {
		return bad("LockTTL %v is too short to renew", o.LockTTL)
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
	return o, nil
}

// Entry lets a loader passed to Fetch steer how its value is stored.
type Entry struct {
	// TTL overrides Options.TTL for this value when positive.
	TTL time.Duration
	// Stale overrides Options.Stale when positive; negative means no stale
	// window for this value.
	Stale time.Duration
	// NoStore returns the value to the callers waiting for it and stores it
	// nowhere: not in Redis, not in L1.
	NoStore bool
}

// Source says where a value came from.
type Source uint8

const (
	SourceLocal  Source = iota + 1 // this process's L1
	SourceRedis                    // Redis, fresh (possibly written by another node's load)
	SourceLoader                   // a load this call took part in
	SourceStale                    // a copy past its TTL, inside its stale window
)

func (s Source) String() string {
	switch s {
	case SourceLocal:
		return "local"
	case SourceRedis:
		return "redis"
	case SourceLoader:
		return "loader"
	case SourceStale:
		return "stale"
	}
	return "unknown"
}

// Result is what Fetch returns: the value and how it was obtained.
type Result[V any] struct {
	Value  V
	Source Source
	// Age is how long ago the value was loaded, as far as this node can
	// tell (from the Redis server's clock for values read from Redis).
	Age time.Duration
	// LoadErr is set when a stale copy was served because the load that
	// should have replaced it failed or did not land in time: the stale value
	// is in Value and the reason here. Get returns such values with a nil
	// error; use Fetch to see why.
	LoadErr error
	// Stored reports, for a value this call's load produced (SourceLoader),
	// whether it was written to the cache: to Redis, or to L1 for a cache
	// without Redis. It is false after a wait timeout (loaded locally), for
	// Entry.NoStore, for a write-back the lease no longer allowed, and while
	// Redis is unreachable.
	Stored bool
}

// Cache is a fleet-wide, stampede-proof cache-aside in front of Redis.
// It is safe for concurrent use. Values handed out are shared between
// callers: do not mutate them.
type Cache[V any] struct {
	rdb   redis.UniversalClient // nil: one process, no Redis
	opts  Options
	codec Codec
	l1    *ristretto.Cache[string, *localEntry[V]] // nil: no L1

	loads   flight[Result[V]]
	waiters waitRegistry
	breaker breaker
	stats   counters

	channel string // pub/sub channel of this namespace
	nodeID  string // tells this node's own messages apart
	pubsub  *redis.PubSub

	l1mu sync.Mutex    // orders L1 writes against invalidations
	gen  atomic.Uint64 // bumped by every invalidation; see setL1

	closeCtx context.Context // cancelled by Close; ends all background work
	closeFn  context.CancelFunc

	mu         sync.Mutex          // guards closed, refreshing, refreshErr, and wg.Add
	closed     atomic.Bool         // set by Close, under mu
	refreshing map[string]struct{} // keys with a background refresh running
	refreshErr map[string]error    // the last failed refresh of a key, until one succeeds
	wg         sync.WaitGroup      // everything started by New or a Get
}

// localEntry is what L1 holds for a key.
type localEntry[V any] struct {
	v          V
	tombstone  bool
	loadedAt   time.Duration // on the coarse clock
	freshUntil time.Duration
	staleUntil time.Duration
}

// New returns a cache over rdb. rdb may be any redis.UniversalClient
// (single node, Sentinel, Cluster) or nil for a single-process cache made of
// L1 and in-process single-flight only. Close releases what New starts.
func New[V any](rdb redis.UniversalClient, opts Options) (*Cache[V], error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Cache[V]{
		rdb:        rdb,
		opts:       o,
		codec:      o.Codec,
		channel:    o.Namespace + ":events",
		nodeID:     newLeaseValue()[:nodeIDLen],
		refreshing: make(map[string]struct{}),
		refreshErr: make(map[string]error),
	}
	c.waiters.m = make(map[string]*waitSlot)
	c.breaker.cooldown = o.BreakerCooldown
	c.closeCtx, c.closeFn = context.WithCancel(context.Background())
	clock.acquire()
	if o.LocalCapacity > 0 {
		c.l1, err = ristretto.NewCache(&ristretto.Config[string, *localEntry[V]]{
			NumCounters:        int64(o.LocalCapacity) * 10,
			MaxCost:            int64(o.LocalCapacity),
			BufferItems:        64,
			IgnoreInternalCost: true,
		})
		if err != nil {
			clock.release()
			return nil, fmt.Errorf("stampede: local cache: %w", err)
		}
	}
	if rdb != nil {
		c.subscribe()
	}
	return c, nil
}

// Get returns the value for key, calling load at most once per key and
// expiry across the whole fleet when it is missing. See Fetch for a variant
// that reports where the value came from and lets the loader steer storage.
func (c *Cache[V]) Get(ctx context.Context, key string, load func(ctx context.Context, key string) (V, error)) (V, error) {
	if load == nil {
		var zero V
		return zero, ErrNilLoader
	}
	// The L1 hit, kept lean: no Result, one atomic clock read.
	e := c.getL1(key)
	if e != nil && c.now() < e.freshUntil {
		c.stats.localHits.Add(1)
		if e.tombstone {
			var zero V
			return zero, ErrNotFound
		}
		return e.v, nil
	}
	r, err := c.fetch(ctx, key, loader[V]{plain: load}, e)
	return r.Value, err
}

// Fetch is Get with a loader that returns an Entry alongside its value, to
// override the TTL and stale window or to say "do not store", and with a
// Result that tells where the value came from, its age, and, for a stale
// copy served because a load failed, the load's error.
func (c *Cache[V]) Fetch(ctx context.Context, key string, load func(ctx context.Context, key string) (V, Entry, error)) (Result[V], error) {
	if load == nil {
		return Result[V]{}, ErrNilLoader
	}
	return c.fetch(ctx, key, loader[V]{full: load}, c.getL1(key))
}

// getL1 returns key's L1 entry, fresh or not, or nil.
func (c *Cache[V]) getL1(key string) *localEntry[V] {
	if c.l1 == nil {
		return nil
	}
	e, _ := c.l1.Get(key)
	return e
}

// loader holds one of the two loader shapes without allocating a closure on
// the hit path.
type loader[V any] struct {
	plain func(context.Context, string) (V, error)
	full  func(context.Context, string) (V, Entry, error)
}

func (l loader[V]) call(ctx context.Context, key string) (V, Entry, error) {
	if l.full != nil {
		return l.full(ctx, key)
	}
	v, err := l.plain(ctx, key)
	return v, Entry{}, err
}

func (c *Cache[V]) checkKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	case len(key) > c.opts.MaxKeyLen:
		return fmt.Errorf("%w: key of %d bytes is longer than MaxKeyLen (%d)", ErrInvalidKey, len(key), c.opts.MaxKeyLen)
	case key[0] == '}':
		return fmt.Errorf("%w: key starts with '}'", ErrInvalidKey)
	}
	return nil
}

// now is the time on the coarse monotonic clock.
func (c *Cache[V]) now() time.Duration { return clock.Now() }

// fetch is the pipeline; l1 is key's L1 entry as the caller found it, or nil.
func (c *Cache[V]) fetch(ctx context.Context, key string, ld loader[V], l1 *localEntry[V]) (Result[V], error) {
	if err := c.checkKey(key); err != nil {
		return Result[V]{}, err
	}
	// 1. L1.
	var staleCopy *localEntry[V]
	if l1 != nil {
		now := c.now()
		if now < l1.freshUntil {
			c.stats.localHits.Add(1)
			return l1.result(SourceLocal, now)
		}
		if now < l1.staleUntil {
			staleCopy = l1
		}
	}
	if c.isClosed() {
		return Result[V]{}, ErrClosed
	}
	// A stale copy that this process is already refreshing is served as it
	// is: no Redis read, nobody waits.
	if staleCopy != nil && c.refreshRunning(key) {
		c.stats.staleServed.Add(1)
		return c.staleResult(key, staleCopy)
	}
	// 2-5. One caller per key per process reads Redis and, on a miss, leads
	// the rebuild; the callers arriving meanwhile share its result, so a
	// herd costs one round trip per node, not one per request.
	return c.loads.do(ctx, key, c.detach, func(lctx context.Context) (Result[V], error) {
		if !c.enter() {
			return Result[V]{}, ErrClosed
		}
		defer c.wg.Done()
		return c.readOrLead(lctx, key, ld, staleCopy)
	})
}

// readOrLead is run by the single-flight leader: step 2, then the stale
// copy, then the rebuild.
func (c *Cache[V]) readOrLead(ctx context.Context, key string, ld loader[V], staleCopy *localEntry[V]) (Result[V], error) {
	// A flight that ended between this caller's L1 look and this one has
	// filled L1: use it rather than read Redis or load again.
	if e := c.getL1(key); e != nil {
		if now := c.now(); now < e.freshUntil {
			c.stats.localHits.Add(1)
			return e.result(SourceLocal, now)
		}
	}
	if c.redisUsable() {
		e, f, err := c.readRedis(ctx, key, ld)
		if err != nil {
			if c.opts.FailClosed {
				return Result[V]{}, err
			}
		} else if e != nil {
			if f == stale {
				return c.staleResult(key, e)
			}
			return e.result(SourceRedis, c.now())
		}
	} else if c.rdb != nil && c.opts.FailClosed {
		return Result[V]{}, fmt.Errorf("%w: circuit open after recent errors", ErrRedisUnavailable)
	}
	// An L1 stale copy is served when Redis had nothing better (or is out).
	if staleCopy != nil {
		c.stats.staleServed.Add(1)
		c.refreshInBackground(ctx, key, ld, "")
		return c.staleResult(key, staleCopy)
	}
	c.stats.misses.Add(1)
	return c.lead(ctx, key, ld)
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

// result turns an L1 entry into a Result.
func (e *localEntry[V]) result(src Source, now time.Duration) (Result[V], error) {
	if e.tombstone {
		return Result[V]{Source: src, Age: now - e.loadedAt}, ErrNotFound
	}
	return Result[V]{Value: e.v, Source: src, Age: now - e.loadedAt}, nil
}

// readRedis is step 2: one round trip for the value and its remaining TTL,
// read together.
// e is nil on a miss (absent, expired, or undecodable). A fresh value goes
// to L1 and may start an XFetch early refresh; a stale one starts a
// background refresh.
func (c *Cache[V]) readRedis(ctx context.Context, key string, ld loader[V]) (*localEntry[V], freshness, error) {
	vk := c.valueKey(key)
	gen := c.gen.Load()
	// MULTI/EXEC, still one round trip: a write landing between GET and
	// PTTL would pair an old value with a new entry's TTL.
	pipe := c.rdb.TxPipeline()
	get := pipe.Get(ctx, vk)
	pttlCmd := pipe.PTTL(ctx, vk)
	_, err := pipe.Exec(ctx)
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, expired, c.redisFailed(ctx, err)
	}
	c.breaker.success()
	raw, err := get.Bytes()
	if err != nil { // redis.Nil: absent
		return nil, expired, nil
	}
	pttl := pttlCmd.Val()
	e, h, f, freshLeft := c.decodeRedis(key, raw, pttl, true)
	switch f {
	case fresh:
		c.stats.redisHits.Add(1)
		c.setL1(key, e, gen)
		if !e.tombstone && shouldRefreshEarly(freshLeft, h.delta, c.opts.Beta) {
			c.refreshInBackground(ctx, key, ld, idArg(h.id))
		}
	case stale:
		// Kept in L1 too, so that while the refresh runs this process
		// serves it without reading Redis again.
		c.stats.staleServed.Add(1)
		c.setL1(key, e, gen)
		c.refreshInBackground(ctx, key, ld, idArg(h.id))
	}
	return e, f, nil
}

// decodeRedis decodes an entry read from Redis with its PTTL. e is nil and
// f is expired when there is nothing usable. report counts and reports an
// undecodable entry; the leader's second look at the same bytes does not.
func (c *Cache[V]) decodeRedis(key string, raw []byte, pttl time.Duration, report bool) (e *localEntry[V], h header, f freshness, freshLeft time.Duration) {
	h, payload, err := decodeEntry(raw)
	if err != nil {
		if report {
			c.corrupt(key, err)
		}
		return nil, h, expired, 0
	}
	f, age, freshLeft := judge(h, pttl)
	if f == expired {
		return nil, h, expired, 0
	}
	var v V
	if !h.tombstone {
		if v, err = c.decode(payload); err != nil {
			if report {
				c.corrupt(key, err)
			}
			return nil, h, expired, 0
		}
	}
	now := c.now()
	return &localEntry[V]{v: v, tombstone: h.tombstone, loadedAt: now - age,
		freshUntil: now + freshLeft, staleUntil: now + pttl}, h, f, freshLeft
}

// lead is run by one caller per key per process (the single-flight leader):
// re-check Redis and take the lease in one round trip, then load or wait.
func (c *Cache[V]) lead(ctx context.Context, key string, ld loader[V]) (Result[V], error) {
	if !c.redisUsable() {
		if c.rdb != nil && c.opts.FailClosed {
			return Result[V]{}, fmt.Errorf("%w: circuit open after recent errors", ErrRedisUnavailable)
		}
		return c.loadLocal(ctx, key, ld, true)
	}
	// Register for the "filled" notification before looking, so that a fill
	// landing between the look and the wait still wakes us.
	slot := c.waiters.acquire(key)
	defer func() { c.waiters.release(key, slot) }()

	lease := newLeaseValue()
	var (
		timeout  *time.Timer
		tick     *time.Ticker
		byNotify bool
	)
	for attempt := 0; ; attempt++ {
		gen := c.gen.Load()
		e, f, status, err := c.readOrLock(ctx, key, lease, "")
		if err != nil {
			if c.opts.FailClosed {
				return Result[V]{}, err
			}
			return c.loadLocal(ctx, key, ld, true)
		}
		switch status {
		case lockGotValue:
			if attempt > 0 && byNotify {
				c.stats.wokenByNotify.Add(1)
			} else if attempt > 0 {
				c.stats.wokenByRecheck.Add(1)
			}
			return c.served(key, e, f, gen)
		case lockWon:
			// First try, or the holder died or failed without a value.
			return c.loadAndFill(ctx, key, ld, lease)
		}
		if attempt == 0 {
			c.stats.lockContended.Add(1)
			timeout = time.NewTimer(c.opts.WaitTimeout)
			defer timeout.Stop()
			tick = time.NewTicker(c.opts.Recheck)
			defer tick.Stop()
		}
		byNotify = false
		select {
		case <-slot.ch:
			byNotify = true
		case <-tick.C:
		case <-timeout.C:
			return c.waitTimedOut(ctx, key, ld)
		case <-ctx.Done():
			return Result[V]{}, context.Cause(ctx)
		case <-c.closeCtx.Done():
			return Result[V]{}, ErrClosed
		}
		c.waiters.release(key, slot)
		slot = c.waiters.acquire(key)
	}
}

// served turns an entry that another node wrote into a Result.
func (c *Cache[V]) served(key string, e *localEntry[V], f freshness, gen uint64) (Result[V], error) {
	now := c.now()
	if f == stale {
		c.stats.staleServed.Add(1)
		return e.result(SourceStale, now)
	}
	c.stats.redisHits.Add(1)
	c.setL1(key, e, gen)
	return e.result(SourceRedis, now)
}

// waitTimedOut applies Options.OnWaitTimeout (invariant 10).
func (c *Cache[V]) waitTimedOut(ctx context.Context, key string, ld loader[V]) (Result[V], error) {
	if c.opts.OnWaitTimeout == WaitReturnError {
		return Result[V]{}, fmt.Errorf("%w after %v (key %q)", ErrWaitTimeout, c.opts.WaitTimeout, key)
	}
	return c.loadLocal(ctx, key, ld, false)
}

// Outcomes of lock.lua.
const (
	lockGotValue = 0
	lockWon      = 1
	lockHeld     = 2
)

// seenNothing makes lock.lua go for the lease past whatever value is there
// (an undecodable one).
const seenNothing = "*"

// readOrLock runs lock.lua: the value if there is one to use, else an
// attempt at the lease. seen is "" on a miss, or the write id (idArg) of the
// entry a refresh means to replace.
func (c *Cache[V]) readOrLock(ctx context.Context, key, lease, seen string) (*localEntry[V], freshness, int, error) {
	for range 2 {
		res, err := lockScript.Run(ctx, c.rdb, c.keys(key), lease, c.opts.LockTTL.Milliseconds(), seen).Slice()
		if err != nil {
			return nil, expired, 0, c.redisFailed(ctx, err)
		}
		c.breaker.success()
		status, _ := res[0].(int64)
		if status != lockGotValue {
			return nil, expired, int(status), nil
		}
		raw, _ := res[1].(string)
		pttl, _ := res[2].(int64)
		e, _, f, _ := c.decodeRedis(key, []byte(raw), time.Duration(pttl)*time.Millisecond, false)
		if e != nil {
			return e, f, lockGotValue, nil
		}
		// Undecodable (counted by decodeRedis) or expired in between: go
		// for the lease past it.
		seen = seenNothing
	}
	return nil, expired, lockHeld, nil
}

// loadOut is a loader's value and storage instructions.
type loadOut[V any] struct {
	v   V
	ent Entry
}

// callLoader runs the loader safely with its own timeout.
func (c *Cache[V]) callLoader(ctx context.Context, key string, ld loader[V]) (V, Entry, time.Duration, error) {
	c.stats.loads.Add(1)
	cctx, cancelClosed := context.WithCancelCause(ctx)
	stop := context.AfterFunc(c.closeCtx, func() { cancelClosed(ErrClosed) })
	defer stop()
	defer cancelClosed(nil)
	lctx, cancel := context.WithTimeout(cctx, c.opts.LoadTimeout)
	defer cancel()
	start := time.Now()
	out, err := callSafely(lctx, func(ctx context.Context) (loadOut[V], error) {
		v, ent, err := ld.call(ctx, key)
		return loadOut[V]{v, ent}, err
	})
	var pe *PanicError
	if errors.As(err, &pe) || errors.Is(err, errGoexit) {
		c.stats.loaderPanics.Add(1)
	}
	return out.v, out.ent, time.Since(start), err
}

// loadAndFill runs the loader while holding the lease, renewing it, then
// writes back through the fenced script (invariants 2 and 3).
func (c *Cache[V]) loadAndFill(ctx context.Context, key string, ld loader[V], lease string) (Result[V], error) {
	c.stats.lockWon.Add(1)
	gen := c.gen.Load()
	stop := make(chan struct{})
	var hb sync.WaitGroup
	hb.Add(1)
	go c.heartbeat(key, lease, stop, &hb)
	v, ent, delta, err := c.callLoader(ctx, key, ld)
	close(stop)
	hb.Wait() // no renewal after the load ends (invariant 3)

	if err != nil {
		if errors.Is(err, ErrNotFound) && c.opts.NotFoundTTL > 0 {
			raw := appendEntry(nil, header{id: newWriteID(), tombstone: true, ttl: c.opts.NotFoundTTL}, nil)
			if stored, ferr := c.fill(ctx, key, lease, raw, c.opts.NotFoundTTL); stored || ferr != nil {
				c.setL1(key, c.newLocal(zero[V](), true, c.opts.NotFoundTTL, 0), gen)
				c.settleL1()
			}
			return Result[V]{Source: SourceLoader}, err
		}
		// Never cache an error (invariant 9): drop the lease and wake the
		// waiters, one of whom will take over.
		_, _ = c.fill(ctx, key, lease, nil, 0)
		return Result[V]{}, err
	}
	if ent.NoStore {
		_, _ = c.fill(ctx, key, lease, nil, 0)
		return Result[V]{Value: v, Source: SourceLoader}, nil
	}
	ttl, stl := c.entryTTLs(ent)
	payload, err := c.encode(v)
	if err != nil {
		_, _ = c.fill(ctx, key, lease, nil, 0)
		return Result[V]{}, fmt.Errorf("stampede: encoding value of key %q: %w", key, err)
	}
	raw := appendEntry(make([]byte, 0, maxHeaderLen+len(payload)), header{id: newWriteID(), ttl: ttl, stale: stl, delta: delta}, payload)
	stored, ferr := c.fill(ctx, key, lease, raw, ttl+stl)
	if stored || ferr != nil { // a rejected write-back means newer data exists
		c.setL1(key, c.newLocal(v, false, ttl, stl), gen)
		c.settleL1()
	}
	return Result[V]{Value: v, Source: SourceLoader, Stored: stored}, nil
}

// heartbeat renews the lease every LockTTL/3 until stop is closed or the
// lease is lost.
func (c *Cache[V]) heartbeat(key, lease string, stop <-chan struct{}, done *sync.WaitGroup) {
	defer done.Done()
	every := c.opts.LockTTL / 3
	t := time.NewTicker(every)
	defer t.Stop()
	lk := c.lockKey(key)
	for {
		select {
		case <-stop:
			return
		case <-c.closeCtx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(c.closeCtx, every)
		held, err := extendLease(ctx, c.rdb, lk, lease, c.opts.LockTTL)
		cancel()
		switch {
		case err != nil:
			c.stats.redisErrors.Add(1)
			c.report(key, fmt.Errorf("stampede: renewing lease: %w", err))
		case !held:
			// Set or Delete dropped it, or it ran out: the write-back will
			// be rejected, which is the point.
			c.stats.leasesLost.Add(1)
			return
		default:
			c.stats.leaseRenewals.Add(1)
		}
	}
}

// fill runs fill.lua: store raw (nil stores nothing) iff lease still holds,
// drop the lease, publish "filled".
func (c *Cache[V]) fill(ctx context.Context, key, lease string, raw []byte, px time.Duration) (bool, error) {
	n, err := fillScript.Run(ctx, c.rdb, c.keys(key), lease, raw, pxMillis(px), c.channel, c.message(msgFilled, key)).Int64()
	if err != nil {
		return false, c.redisFailed(ctx, err)
	}
	if n == 0 && raw != nil {
		c.stats.writeBacksRejected.Add(1)
	}
	return n == 1, nil
}

// loadLocal loads without the lease: Redis is out (fail open), or a wait
// timed out. store says whether L1 may keep the value.
func (c *Cache[V]) loadLocal(ctx context.Context, key string, ld loader[V], store bool) (Result[V], error) {
	gen := c.gen.Load()
	v, ent, _, err := c.callLoader(ctx, key, ld)
	if err != nil {
		if store && errors.Is(err, ErrNotFound) && c.opts.NotFoundTTL > 0 {
			c.setL1(key, c.newLocal(zero[V](), true, c.opts.NotFoundTTL, 0), gen)
			c.settleL1()
		}
		return Result[V]{}, err
	}
	if store && !ent.NoStore {
		ttl, stl := c.entryTTLs(ent)
		c.setL1(key, c.newLocal(v, false, ttl, stl), gen)
		c.settleL1()
		return Result[V]{Value: v, Source: SourceLoader, Stored: c.rdb == nil && c.l1 != nil}, nil
	}
	return Result[V]{Value: v, Source: SourceLoader}, nil
}

// refreshInBackground starts one refresh of key in this process, unless one
// is running. seen is the value's PTTL as read (-1: none).
func (c *Cache[V]) refreshInBackground(ctx context.Context, key string, ld loader[V], seen string) {
	c.mu.Lock()
	if _, busy := c.refreshing[key]; c.closed.Load() || busy {
		c.mu.Unlock()
		return
	}
	c.refreshing[key] = struct{}{}
	c.wg.Add(1)
	c.mu.Unlock()
	rctx, cancel := c.detach(ctx)
	go func() {
		defer c.wg.Done()
		defer cancel()
		defer func() {
			c.mu.Lock()
			delete(c.refreshing, key)
			c.mu.Unlock()
		}()
		_, err := recovered(rctx, func(ctx context.Context) (struct{}, error) {
			return struct{}{}, c.refresh(ctx, key, ld, seen)
		})
		c.mu.Lock()
		if err != nil && !errors.Is(err, ErrNotFound) {
			c.refreshErr[key] = err
		} else {
			delete(c.refreshErr, key)
		}
		c.mu.Unlock()
		if err != nil && !errors.Is(err, ErrNotFound) {
			c.report(key, fmt.Errorf("stampede: background refresh: %w", err))
		}
	}()
}

// refresh rebuilds a value that is stale or near expiry, once across the
// fleet: it takes the lease only if nobody rewrote the value since it was
// read (lock.lua compares PTTLs).
func (c *Cache[V]) refresh(ctx context.Context, key string, ld loader[V], seen string) error {
	if !c.redisUsable() {
		if c.rdb != nil && c.opts.FailClosed {
			return ErrRedisUnavailable
		}
		_, err := c.loadLocal(ctx, key, ld, true)
		return err
	}
	lease := newLeaseValue()
	_, _, status, err := c.readOrLock(ctx, key, lease, seen)
	if err != nil || status != lockWon {
		return err
	}
	if seen != "" {
		c.stats.earlyRefreshes.Add(1)
	}
	_, err = c.loadAndFill(ctx, key, ld, lease)
	return err
}

// Set stores v under key in Redis and L1, drops any rebuild lease so that a
// rebuild already in flight cannot overwrite v with older data (invariant 2),
// and evicts key from L1 on every other node.
func (c *Cache[V]) Set(ctx context.Context, key string, v V) error {
	if err := c.checkKey(key); err != nil {
		return err
	}
	if c.isClosed() {
		return ErrClosed
	}
	c.forget(key)
	gen := c.gen.Load()
	ttl, stl := c.opts.TTL, c.opts.Stale
	if c.rdb != nil {
		payload, err := c.encode(v)
		if err != nil {
			return fmt.Errorf("stampede: encoding value of key %q: %w", key, err)
		}
		raw := appendEntry(make([]byte, 0, maxHeaderLen+len(payload)), header{id: newWriteID(), ttl: ttl, stale: stl}, payload)
		if err := c.write(ctx, key, raw, ttl+stl); err != nil {
			return err
		}
	}
	c.setL1(key, c.newLocal(v, false, ttl, stl), gen)
	c.settleL1()
	return nil
}

// Delete removes key from Redis and from L1 on every node, and drops any
// rebuild lease so that a rebuild already in flight cannot write back.
func (c *Cache[V]) Delete(ctx context.Context, key string) error {
	if err := c.checkKey(key); err != nil {
		return err
	}
	if c.isClosed() {
		return ErrClosed
	}
	c.forget(key)
	if c.rdb == nil {
		return nil
	}
	return c.write(ctx, key, nil, 0)
}

// forget drops everything this process remembers of key before a Set or
// Delete: the load in flight (later callers start a new one), the L1 copy,
// the last refresh error.
func (c *Cache[V]) forget(key string) {
	c.loads.forget(key)
	c.invalidateL1(key)
	c.mu.Lock()
	delete(c.refreshErr, key)
	c.mu.Unlock()
}

// write runs write.lua. With the circuit open it fails at once rather than
// wait out a dead Redis.
func (c *Cache[V]) write(ctx context.Context, key string, raw []byte, px time.Duration) error {
	if !c.redisUsable() {
		return fmt.Errorf("%w: circuit open after recent errors", ErrRedisUnavailable)
	}
	err := writeScript.Run(ctx, c.rdb, c.keys(key), raw, pxMillis(px), c.channel, c.message(msgInvalidated, key)).Err()
	if err != nil {
		c.redisFailed(ctx, err)
		return fmt.Errorf("%w: %w", ErrRedisUnavailable, err)
	}
	return nil
}

// Close stops everything New and Get started: the pub/sub subscription,
// background refreshes (their contexts are cancelled), the L1 goroutines.
// Gets after Close return ErrClosed.
func (c *Cache[V]) Close() error {
	c.mu.Lock()
	if c.closed.Load() {
		c.mu.Unlock()
		return nil
	}
	c.closed.Store(true)
	c.mu.Unlock()
	c.closeFn()
	var err error
	if c.pubsub != nil {
		err = c.pubsub.Close()
	}
	c.wg.Wait()
	if c.l1 != nil {
		c.l1.Close()
	}
	clock.release()
	return err
}

func (c *Cache[V]) isClosed() bool { return c.closed.Load() }

// enter registers a unit of work that Close must wait for.
func (c *Cache[V]) enter() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return false
	}
	c.wg.Add(1)
	return true
}

// detach gives shared work a context that keeps ctx's values but not its
// cancellation (invariant 6). Close reaches the shared work where it can
// take long: the loader's context (callLoader) and the wait (lead).
func (c *Cache[V]) detach(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithoutCancel(ctx), func() {}
}

// valueKey and lockKey share the hash tag {key}, so the scripts touch one
// Cluster slot.
func (c *Cache[V]) valueKey(key string) string {
	return c.opts.Namespace + ":{" + key + "}"
}

func (c *Cache[V]) lockKey(key string) string { return c.valueKey(key) + ":lock" }

func (c *Cache[V]) keys(key string) []string {
	vk := c.valueKey(key)
	return []string{vk, vk + ":lock"}
}

func (c *Cache[V]) entryTTLs(ent Entry) (ttl, stl time.Duration) {
	ttl, stl = c.opts.TTL, c.opts.Stale
	if ent.TTL > 0 {
		ttl = ent.TTL
	}
	if ent.Stale > 0 {
		stl = ent.Stale
	} else if ent.Stale < 0 {
		stl = 0
	}
	return ttl, stl
}

// newLocal makes an L1 entry for a value loaded or set just now.
func (c *Cache[V]) newLocal(v V, tombstone bool, ttl, stl time.Duration) *localEntry[V] {
	now := c.now()
	return &localEntry[V]{v: v, tombstone: tombstone, loadedAt: now, freshUntil: now + ttl, staleUntil: now + ttl + stl}
}

// setL1 stores e unless an invalidation happened since gen was read: a value
// read or loaded before a Set or Delete must not land in L1 after it.
func (c *Cache[V]) setL1(key string, e *localEntry[V], gen uint64) {
	if c.l1 == nil {
		return
	}
	if c.opts.LocalTTL > 0 {
		e.freshUntil = min(e.freshUntil, c.now()+c.opts.LocalTTL)
	}
	if e.staleUntil <= c.now() {
		return
	}
	c.l1mu.Lock()
	defer c.l1mu.Unlock()
	if c.gen.Load() != gen {
		return
	}
	// No TTL for ristretto: its expiry check would read the clock a second
	// time on every hit. Entries carry their own deadlines; expired ones are
	// overwritten by the next fill or evicted by capacity.
	c.l1.Set(key, e, 1)
}

// settleL1 waits until L1 has applied the writes queued so far. ristretto
// applies writes asynchronously; after a load or a Set, the next Get in this
// process must see the value rather than load again.
func (c *Cache[V]) settleL1() {
	if c.l1 != nil {
		c.l1.Wait()
	}
}

// invalidateL1 evicts key and makes in-progress reads skip their L1 fill.
func (c *Cache[V]) invalidateL1(key string) {
	if c.l1 == nil {
		return
	}
	c.l1mu.Lock()
	defer c.l1mu.Unlock()
	c.gen.Add(1)
	c.l1.Del(key)
}

func (c *Cache[V]) encode(v V) (b []byte, err error) {
	if c.codec != nil {
		defer func() {
			if p := recover(); p != nil {
				err = newPanicError(p)
			}
		}()
		return c.codec.Marshal(v)
	}
	switch x := any(v).(type) {
	case string:
		return []byte(x), nil
	case []byte:
		return x, nil
	}
	return json.Marshal(v)
}

func (c *Cache[V]) decode(b []byte) (v V, err error) {
	if c.codec != nil {
		defer func() {
			if p := recover(); p != nil {
				err = newPanicError(p)
			}
		}()
		err = c.codec.Unmarshal(b, &v)
		return v, err
	}
	switch p := any(&v).(type) {
	case *string:
		*p = string(b)
		return v, nil
	case *[]byte:
		*p = append([]byte{}, b...)
		return v, nil
	}
	err = json.Unmarshal(b, &v)
	return v, err
}

// corrupt counts and reports an entry that could not be decoded; the caller
// treats it as a miss and the next fill overwrites it.
func (c *Cache[V]) corrupt(key string, err error) {
	c.stats.corrupt.Add(1)
	c.report(key, fmt.Errorf("stampede: undecodable entry: %w", err))
}

func (c *Cache[V]) report(key string, err error) {
	if c.opts.OnError != nil {
		c.opts.OnError(key, err)
	}
}

// redisUsable says whether this call should talk to Redis.
func (c *Cache[V]) redisUsable() bool {
	return c.rdb != nil && c.breaker.allow(c.now)
}

// redisFailed records a Redis error and opens the circuit, unless the error
// is the caller's own cancellation.
func (c *Cache[V]) redisFailed(ctx context.Context, err error) error {
	if ctx.Err() == nil {
		c.stats.redisErrors.Add(1)
		c.breaker.trip(c.now())
	}
	return fmt.Errorf("%w: %w", ErrRedisUnavailable, err)
}

func pxMillis(d time.Duration) int64 { return max(d.Milliseconds(), 1) }

func zero[V any]() (v V) { return v }
