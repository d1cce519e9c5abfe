package stampede

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
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
	defaultLocalTTL    = 5 * time.Second
	defaultRedisTO     = time.Second
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
		{"WaitTimeout", o.WaitTimeout}, {"LoadTimeout", o.LoadTimeout},
		{"BreakerCooldown", o.BreakerCooldown}, {"RedisTimeout", o.RedisTimeout}} {
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
	if o.RedisTimeout == 0 {
		o.RedisTimeout = defaultRedisTO
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

	localTTL     time.Duration // cap on L1 freshness; 0: none
	ctxDeadlines bool          // rdb ends calls at their context's deadline

	loads   flight[Result[V]]
	waiters waitRegistry
	breaker breaker
	stats   counters

	channel string        // pub/sub channel of this namespace
	nodeID  string        // tells this node's own messages apart
	seq     atomic.Uint64 // numbers this node's messages
	gaps    gapTracker    // what other nodes' numbers say about lost messages

	subMu  sync.Mutex             // guards subs and shards
	subs   map[*sub]bool          // open subscriptions, closed by Close
	shards map[*redis.Client]bool // Ring shards subscribed to

	l1mu sync.Mutex  // orders L1 writes against invalidations
	gens generations // see setL1

	closeCtx context.Context // cancelled by Close; ends all background work
	closeFn  context.CancelFunc

	mu         sync.Mutex          // guards closed, refreshing, refreshErr, and wg.Add
	closed     atomic.Bool         // set by Close, under mu
	refreshing map[string]struct{} // keys with a background refresh running
	refreshErr map[string]error    // the last failed refresh of a key, bounded
	wg         sync.WaitGroup      // everything started by New, a Get, a Set or a Delete
}

// maxRefreshErrs bounds the failed refreshes remembered for Result.LoadErr.
const maxRefreshErrs = 1024

// New returns a cache over rdb. rdb may be any redis.UniversalClient
// (single node, Sentinel, Cluster, Ring) or nil for a single-process cache
// made of L1 and in-process single-flight only. Close releases what New
// starts.
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
		subs:       make(map[*sub]bool),
		shards:     make(map[*redis.Client]bool),
		refreshing: make(map[string]struct{}),
		refreshErr: make(map[string]error),
	}
	switch {
	case o.LocalTTL > 0:
		c.localTTL = o.LocalTTL
	case o.LocalTTL == 0 && rdb != nil:
		c.localTTL = defaultLocalTTL
	}
	c.gens.seed = maphash.MakeSeed()
	c.waiters.m = make(map[string]*waitSlot)
	c.breaker.cooldown = o.BreakerCooldown
	// Values loaded while the circuit was open, and invalidations missed
	// meanwhile, must not outlive it.
	c.breaker.onClose = c.flushL1
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
		c.ctxDeadlines = honorsContext(rdb)
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
	if e != nil {
		if now := c.now(); now < e.freshUntil {
			if now >= e.earlyFrom {
				c.refreshEarly(ctx, key, loader[V]{plain: load}, e, now)
			}
			c.stats.localHits.Add(1)
			if e.tombstone {
				var zero V
				return zero, ErrNotFound
			}
			return e.v, nil
		}
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
			if now >= l1.earlyFrom {
				c.refreshEarly(ctx, key, ld, l1, now)
			}
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
	return c.loads.do(ctx, key, func(lctx context.Context) (Result[V], error) {
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
	if !c.redisUsable() {
		if c.rdb != nil && c.opts.FailClosed {
			return Result[V]{}, errCircuitOpen
		}
	} else {
		e, f, err := c.readRedis(ctx, key, ld)
		switch {
		case err != nil && c.opts.FailClosed:
			return Result[V]{}, err
		case err == nil && e != nil && f == stale:
			return c.staleResult(key, e)
		case err == nil && e != nil:
			return e.result(SourceRedis, c.now())
		}
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

// errCircuitOpen is returned, with FailClosed, while the circuit is open.
var errCircuitOpen = fmt.Errorf("%w: circuit open after recent errors", ErrRedisUnavailable)

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

// call runs one Redis call for key under the library's deadline: limit, or
// RedisTimeout when limit is 0 (invariant 10). Its error is classified:
// the caller's own cancellation is returned as it is; Redis being
// unavailable opens the circuit and wraps ErrRedisUnavailable; any other
// reply error is about this key alone (invariant 13).
func (c *Cache[V]) call(ctx context.Context, key string, limit time.Duration, fn func(context.Context) error) error {
	if limit <= 0 {
		limit = c.opts.RedisTimeout
	}
	err := bounded(ctx, limit, c.ctxDeadlines, fn)
	switch {
	case err == nil || errors.Is(err, redis.Nil):
		c.breaker.success()
		return err
	case ctx.Err() != nil:
		return err
	case unavailable(err):
		c.stats.redisErrors.Add(1)
		c.breaker.trip(c.now())
		return fmt.Errorf("%w: %w", ErrRedisUnavailable, err)
	default:
		// Redis answered: it is up, the key is bad.
		c.breaker.success()
		return &keyError{key: key, err: err}
	}
}

// keyError is a reply error about one key: a wrong type, a script error on
// its data. It is counted and reported like a corrupt entry.
type keyError struct {
	key string
	err error
}

func (e *keyError) Error() string { return fmt.Sprintf("stampede: key %q: %v", e.key, e.err) }
func (e *keyError) Unwrap() error { return e.err }

// readRedis is step 2: one round trip for the value and its remaining TTL,
// read together.
// e is nil on a miss (absent, expired, or undecodable). A fresh value goes
// to L1 and may start an XFetch early refresh; a stale one starts a
// background refresh.
func (c *Cache[V]) readRedis(ctx context.Context, key string, ld loader[V]) (*localEntry[V], freshness, error) {
	vk := c.valueKey(key)
	gen := c.gens.of(key)
	var (
		get     *redis.StringCmd
		pttlCmd *redis.DurationCmd
	)
	// MULTI/EXEC, still one round trip: a write landing between GET and
	// PTTL would pair an old value with a new entry's TTL.
	err := c.call(ctx, key, 0, func(ctx context.Context) error {
		pipe := c.rdb.TxPipeline()
		get = pipe.Get(ctx, vk)
		pttlCmd = pipe.PTTL(ctx, vk)
		_, err := pipe.Exec(ctx)
		return err
	})
	var ke *keyError
	switch {
	case errors.As(err, &ke):
		// A value of the wrong type: a miss; the fill overwrites it.
		c.corrupt(key, err)
		return nil, expired, nil
	case err != nil && !errors.Is(err, redis.Nil):
		return nil, expired, err
	}
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
		freshUntil: now + freshLeft, staleUntil: now + pttl,
		valueFresh: now + freshLeft, earlyFrom: c.earlyFrom(now+freshLeft, h.delta), delta: h.delta, id: h.id}, h, f, freshLeft
}

// lead is run by one caller per key per process (the single-flight leader):
// re-check Redis and take the lease in one round trip, then load or wait.
// Every pass is bounded by what is left of WaitTimeout, Redis calls
// included (invariant 10).
func (c *Cache[V]) lead(ctx context.Context, key string, ld loader[V]) (Result[V], error) {
	if !c.redisUsable() {
		return c.withoutRedis(ctx, key, ld)
	}
	// Register for the "filled" notification before looking, so that a fill
	// landing between the look and the wait still wakes us.
	slot := c.waiters.acquire(key)
	defer func() { c.waiters.release(key, slot) }()

	lease := newLeaseValue()
	deadline := time.Now().Add(c.opts.WaitTimeout)
	var recheck *time.Timer
	woken := false // the last wait ended by a notification
	for pass := 0; ; pass++ {
		left := time.Until(deadline)
		if left <= 0 {
			return c.waitTimedOut(ctx, key, ld)
		}
		gen := c.gens.of(key)
		sent := time.Now()
		e, f, status, err := c.readOrLock(ctx, key, lease, "", min(left, c.opts.RedisTimeout))
		if err != nil {
			if ctx.Err() != nil {
				return Result[V]{}, ctx.Err()
			}
			if c.opts.FailClosed {
				return Result[V]{}, err
			}
			return c.loadLocal(ctx, key, ld, true)
		}
		switch status {
		case lockGotValue:
			if pass > 0 && woken {
				c.stats.wokenByNotify.Add(1)
			} else if pass > 0 {
				c.stats.wokenByRecheck.Add(1)
			}
			return c.served(key, e, f, gen)
		case lockWon:
			// First try, or the holder died or failed without a value.
			if recheck != nil {
				recheck.Stop()
			}
			return c.loadAndFill(ctx, key, ld, lease, sent)
		}
		if pass == 0 {
			c.stats.lockContended.Add(1)
			recheck = time.NewTimer(min(c.opts.Recheck, left))
		} else {
			recheck.Reset(min(c.opts.Recheck, left))
		}
		woken = false
		select {
		case <-slot.ch:
			woken = true
			recheck.Stop()
			// The slot fired; the next notification closes a new one.
			c.waiters.release(key, slot)
			slot = c.waiters.acquire(key)
		case <-recheck.C:
		case <-ctx.Done():
			recheck.Stop()
			return Result[V]{}, context.Cause(ctx)
		case <-c.closeCtx.Done():
			recheck.Stop()
			return Result[V]{}, ErrClosed
		}
	}
}

// withoutRedis is what a caller does with Redis out of reach (invariant 8):
// fail closed, or load in this process and keep the value in L1, where the
// circuit closing flushes it.
func (c *Cache[V]) withoutRedis(ctx context.Context, key string, ld loader[V]) (Result[V], error) {
	if c.rdb != nil && c.opts.FailClosed {
		return Result[V]{}, errCircuitOpen
	}
	return c.loadLocal(ctx, key, ld, true)
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

// readOrLock runs lock.lua within limit: the value if there is one to use,
// else an attempt at the lease. seen is "" on a miss, or the write id
// (idArg) of the entry a refresh means to replace.
func (c *Cache[V]) readOrLock(ctx context.Context, key, lease, seen string, limit time.Duration) (*localEntry[V], freshness, int, error) {
	for range 2 {
		var res []any
		err := c.call(ctx, key, limit, func(ctx context.Context) error {
			var err error
			res, err = lockScript.Run(ctx, c.rdb, c.keys(key), lease, c.opts.LockTTL.Milliseconds(), seen).Slice()
			return err
		})
		if err != nil {
			return nil, expired, 0, err
		}
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
// writes back through the fenced script (invariants 2 and 3). leased is
// when the request that took the lease was sent.
func (c *Cache[V]) loadAndFill(ctx context.Context, key string, ld loader[V], lease string, leased time.Time) (Result[V], error) {
	c.stats.lockWon.Add(1)
	gen := c.gens.of(key)
	kctx, stopKeeping := context.WithCancel(c.closeCtx)
	kept := make(chan struct{})
	go func() {
		defer close(kept)
		err := keepLease(kctx, c.rdb, c.lockKey(key), lease, c.opts.LockTTL, leased, c.ctxDeadlines,
			func() { c.stats.leaseRenewals.Add(1) })
		if err != nil {
			// Set or Delete dropped it, it ran out, or Redis stopped
			// answering: the write-back will be refused, which is the point.
			c.stats.leasesLost.Add(1)
			c.report(key, err)
		}
	}()
	v, ent, delta, err := c.callLoader(ctx, key, ld)
	stopKeeping()
	<-kept // no renewal after the load ends (invariant 3)

	tombstone := errors.Is(err, ErrNotFound) && c.opts.NotFoundTTL > 0
	if (err != nil && !tombstone) || ent.NoStore {
		// Never cache an error (invariant 9): drop the lease and wake the
		// waiters, one of whom will take over.
		_, _ = c.fill(ctx, key, lease, nil, 0)
		if err != nil {
			return Result[V]{}, err
		}
		return Result[V]{Value: v, Source: SourceLoader}, nil
	}
	ttl, stl := c.entryTTLs(ent)
	if tombstone {
		v, ttl, stl = zero[V](), c.opts.NotFoundTTL, 0
	}
	raw, id, eerr := c.encodeEntry(v, tombstone, ttl, stl, delta)
	if eerr != nil {
		_, _ = c.fill(ctx, key, lease, nil, 0)
		return Result[V]{}, eerr
	}
	stored, ferr := c.fill(ctx, key, lease, raw, ttl+stl)
	if stored || ferr != nil { // a refused write-back means newer data exists
		c.store(key, c.newLocal(v, tombstone, ttl, stl, delta, id), gen)
	}
	if stored {
		c.forgetRefreshErr(key)
	}
	if tombstone {
		return Result[V]{Source: SourceLoader, Stored: stored}, err
	}
	return Result[V]{Value: v, Source: SourceLoader, Stored: stored}, nil
}

// encodeEntry makes the bytes stored in Redis for a value, with a new write
// id.
func (c *Cache[V]) encodeEntry(v V, tombstone bool, ttl, stl, delta time.Duration) ([]byte, uint64, error) {
	var payload []byte
	if !tombstone {
		var err error
		if payload, err = c.encode(v); err != nil {
			return nil, 0, fmt.Errorf("stampede: encoding value: %w", err)
		}
	}
	id := newWriteID()
	h := header{id: id, tombstone: tombstone, ttl: ttl, stale: stl, delta: delta}
	return appendEntry(make([]byte, 0, maxHeaderLen+len(payload)), h, payload), id, nil
}

// fill runs fill.lua: store raw (nil stores nothing) iff lease still holds,
// drop the lease, publish "filled".
func (c *Cache[V]) fill(ctx context.Context, key, lease string, raw []byte, px time.Duration) (bool, error) {
	var n int64
	err := c.call(ctx, key, 0, func(ctx context.Context) error {
		var err error
		n, err = fillScript.Run(ctx, c.rdb, c.keys(key), lease, raw, pxMillis(px), c.channel, c.message(msgFilled, key)).Int64()
		return err
	})
	if err != nil {
		c.reportKeyError(key, err)
		return false, err
	}
	if n == 0 && raw != nil {
		c.stats.writeBacksRejected.Add(1)
	}
	return n == 1, nil
}

// loadLocal loads without the lease: Redis is out (fail open), or a wait
// timed out. store says whether L1 may keep the value.
func (c *Cache[V]) loadLocal(ctx context.Context, key string, ld loader[V], store bool) (Result[V], error) {
	gen := c.gens.of(key)
	v, ent, delta, err := c.callLoader(ctx, key, ld)
	if c.rdb != nil {
		delta = 0 // no early refresh of a value Redis never saw
	}
	if err != nil {
		if store && errors.Is(err, ErrNotFound) && c.opts.NotFoundTTL > 0 {
			c.store(key, c.newLocal(zero[V](), true, c.opts.NotFoundTTL, 0, 0, 0), gen)
		}
		return Result[V]{}, err
	}
	if store && !ent.NoStore {
		ttl, stl := c.entryTTLs(ent)
		e := c.newLocal(v, false, ttl, stl, delta, 0)
		if c.rdb != nil {
			// Loaded with Redis out of reach: fresh only until the circuit
			// may be probed again, then a stale copy that callers are served
			// while Redis is asked again, so that no value loaded alone
			// outlives the outage (and the circuit closes as soon as Redis
			// answers).
			e.freshUntil = min(e.freshUntil, e.loadedAt+c.opts.BreakerCooldown)
		}
		c.store(key, e, gen)
		c.forgetRefreshErr(key)
		return Result[V]{Value: v, Source: SourceLoader, Stored: c.rdb == nil && c.l1 != nil}, nil
	}
	return Result[V]{Value: v, Source: SourceLoader}, nil
}

// refreshEarly is XFetch on an L1 hit: the L1 copy of a value outlives no
// Redis read, so without it a hot key would be read from L1 until it
// expired and then wait for its load.
func (c *Cache[V]) refreshEarly(ctx context.Context, key string, ld loader[V], e *localEntry[V], now time.Duration) {
	if e.tombstone || !shouldRefreshEarly(e.valueFresh-now, e.delta, c.opts.Beta) {
		return
	}
	seen := seenNothing
	if e.id != 0 {
		seen = idArg(e.id)
	}
	c.refreshInBackground(ctx, key, ld, seen)
}

// refreshInBackground starts one refresh of key in this process, unless one
// is running. seen is the write id of the entry to replace ("": none).
func (c *Cache[V]) refreshInBackground(ctx context.Context, key string, ld loader[V], seen string) {
	c.mu.Lock()
	if _, busy := c.refreshing[key]; c.closed.Load() || busy {
		c.mu.Unlock()
		return
	}
	c.refreshing[key] = struct{}{}
	c.wg.Add(1)
	c.mu.Unlock()
	rctx := context.WithoutCancel(ctx)
	go func() {
		defer c.wg.Done()
		_, err := recovered(rctx, func(ctx context.Context) (struct{}, error) {
			return struct{}{}, c.refresh(ctx, key, ld, seen)
		})
		c.mu.Lock()
		delete(c.refreshing, key)
		if err != nil && !errors.Is(err, ErrNotFound) {
			if _, known := c.refreshErr[key]; !known && len(c.refreshErr) >= maxRefreshErrs {
				for k := range c.refreshErr { // any one: the map stays bounded
					delete(c.refreshErr, k)
					break
				}
			}
			c.refreshErr[key] = err
		}
		c.mu.Unlock()
		if err != nil && !errors.Is(err, ErrNotFound) {
			c.report(key, fmt.Errorf("stampede: background refresh: %w", err))
		}
	}()
}

// forgetRefreshErr drops key's last refresh error: a value was stored since.
func (c *Cache[V]) forgetRefreshErr(key string) {
	c.mu.Lock()
	delete(c.refreshErr, key)
	c.mu.Unlock()
}

// refresh rebuilds a value that is stale or near expiry, once across the
// fleet: it takes the lease only if nobody rewrote the value since it was
// read (lock.lua compares write ids).
func (c *Cache[V]) refresh(ctx context.Context, key string, ld loader[V], seen string) error {
	if !c.redisUsable() {
		_, err := c.withoutRedis(ctx, key, ld)
		return err
	}
	lease := newLeaseValue()
	sent := time.Now()
	_, _, status, err := c.readOrLock(ctx, key, lease, seen, 0)
	if err != nil || status != lockWon {
		return err
	}
	if seen != "" {
		c.stats.earlyRefreshes.Add(1)
	}
	_, err = c.loadAndFill(ctx, key, ld, lease, sent)
	return err
}

// Set stores v under key in Redis and L1, drops any rebuild lease so that a
// rebuild already in flight cannot overwrite v with older data (invariant 2),
// and evicts key from L1 on every other node.
func (c *Cache[V]) Set(ctx context.Context, key string, v V) error {
	if err := c.checkKey(key); err != nil {
		return err
	}
	if !c.enter() {
		return ErrClosed
	}
	defer c.wg.Done()
	c.forget(key)
	ttl, stl := c.opts.TTL, c.opts.Stale
	var id uint64
	if c.rdb != nil {
		raw, wid, err := c.encodeEntry(v, false, ttl, stl, 0)
		if err != nil {
			return fmt.Errorf("stampede: key %q: %w", key, err)
		}
		if err := c.write(ctx, key, raw, ttl+stl); err != nil {
			return err
		}
		id = wid
	}
	// Invalidate again now that the write landed: a Get of this node that
	// read Redis between forget and the write must not leave the old value
	// in L1 (invariant 11).
	c.store(key, c.newLocal(v, false, ttl, stl, 0, id), c.invalidateL1(key))
	return nil
}

// Delete removes key from Redis and from L1 on every node, and drops any
// rebuild lease so that a rebuild already in flight cannot write back.
func (c *Cache[V]) Delete(ctx context.Context, key string) error {
	if err := c.checkKey(key); err != nil {
		return err
	}
	if !c.enter() {
		return ErrClosed
	}
	defer c.wg.Done()
	c.forget(key)
	if c.rdb == nil {
		return nil
	}
	err := c.write(ctx, key, nil, 0)
	c.invalidateL1(key) // as in Set
	return err
}

// forget drops everything this process remembers of key before a Set or
// Delete: the load in flight (later callers start a new one), the L1 copy,
// the last refresh error.
func (c *Cache[V]) forget(key string) {
	c.loads.forget(key)
	c.invalidateL1(key)
	c.forgetRefreshErr(key)
}

// write runs write.lua. With the circuit open it fails at once rather than
// wait out a dead Redis. When it fails, whether the write landed is
// unknown: L1 is invalidated again either way.
func (c *Cache[V]) write(ctx context.Context, key string, raw []byte, px time.Duration) error {
	if !c.redisUsable() {
		return errCircuitOpen
	}
	err := c.call(ctx, key, 0, func(ctx context.Context) error {
		return writeScript.Run(ctx, c.rdb, c.keys(key), raw, pxMillis(px), c.channel, c.message(msgInvalidated, key)).Err()
	})
	if err != nil {
		c.invalidateL1(key)
		c.reportKeyError(key, err)
		if !errors.Is(err, ErrRedisUnavailable) {
			return fmt.Errorf("%w: %w", ErrRedisUnavailable, err)
		}
		return err
	}
	return nil
}

// Close stops everything New and Get started: the pub/sub subscription,
// background refreshes (their contexts are cancelled), the L1 goroutines.
// Gets, Sets and Deletes after Close return ErrClosed; those running when it
// is called finish first.
func (c *Cache[V]) Close() error {
	c.mu.Lock()
	if c.closed.Load() {
		c.mu.Unlock()
		return nil
	}
	c.closed.Store(true)
	c.mu.Unlock()
	c.closeFn()
	err := c.closeSubs()
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

// corrupt counts and reports an entry that could not be used; the caller
// treats it as a miss and the next fill overwrites it.
func (c *Cache[V]) corrupt(key string, err error) {
	c.stats.corrupt.Add(1)
	c.report(key, fmt.Errorf("stampede: unusable entry: %w", err))
}

// reportKeyError counts a reply error about key like a corrupt entry.
func (c *Cache[V]) reportKeyError(key string, err error) {
	var ke *keyError
	if errors.As(err, &ke) {
		c.corrupt(key, err)
	}
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

func pxMillis(d time.Duration) int64 { return max(d.Milliseconds(), 1) }

func zero[V any]() (v V) { return v }
