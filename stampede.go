package stampede

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stampede-go/stampede/internal/bounded"
	"github.com/stampede-go/stampede/internal/entry"
	"github.com/stampede-go/stampede/internal/lease"
	"github.com/stampede-go/stampede/internal/lua"
)

// Entry lets a loader passed to Fetch or FetchPrev steer how its value is
// stored.
type Entry struct {
	// TTL overrides Options.TTL for this value when positive.
	TTL time.Duration
	// Stale overrides Options.Stale when positive; negative means no stale
	// window for this value.
	Stale time.Duration
	// Keep keeps the value in Redis this long past TTL and Stale, for the
	// next load to build on (FetchPrev's prev) but never served: a caller
	// meeting a kept value waits for the load that replaces it, as on a
	// miss, with one load fleet-wide. A load that fails leaves the kept value
	// for the next attempt. Default 0: none.
	Keep time.Duration
	// NoStore returns the value to the callers waiting for it and stores it
	// nowhere: not in Redis, not in L1.
	NoStore bool
}

// Prev is the value a load replaces, for a loader that builds on it: one
// that revalidates it with its origin, or fetches only what changed.
type Prev[V any] struct {
	Value V
	// OK says there is a previous value: a copy past its TTL (stale or
	// kept, see Entry.Keep) or one refreshed early. A miss has none, and
	// neither has a value the loader said was not found.
	OK bool
	// Age is how long ago the previous value was loaded, as Result.Age.
	Age time.Duration
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
	// Waited says this call waited for work another caller did: it joined
	// another caller's read or load in this process, or waited for another
	// node's load to land (RFC 9211 calls such a request "collapsed").
	Waited bool
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
	obs          Observer      // Options.Observer and Options.Logger; nil: neither
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

	mode Invalidation // what New chose (tracking.go, invalidation.go)
	trk  *tracker     // tracking mode's state; nil in broadcast mode

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

// New returns a cache over rdb. rdb may be any redis.UniversalClient
// (single node, Sentinel, Cluster, Ring) or nil for a single-process cache
// made of L1 and in-process single-flight only. Close releases what New
// starts.
func New[V any](rdb redis.UniversalClient, opts Options) (*Cache[V], error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	o := opts
	o.setDefaults()
	c := &Cache[V]{
		rdb:        rdb,
		opts:       o,
		codec:      o.Codec,
		channel:    o.Namespace + ":events",
		nodeID:     lease.NewValue()[:nodeIDLen],
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
	c.obs = observers(o.Observer, o.Logger)
	// Values loaded while the circuit was open, and invalidations missed
	// meanwhile, must not outlive it.
	c.breaker.onClose = func() {
		c.note(c.closeCtx, EventBreakerClosed, "")
		c.flushL1(flushCircuit)
	}
	c.closeCtx, c.closeFn = context.WithCancel(context.Background())
	clock.acquire()
	if o.LocalCapacity > 0 {
		maxCost := int64(o.LocalCapacity)
		if o.LocalMaxCost > 0 {
			maxCost = o.LocalMaxCost
		}
		var err error
		c.l1, err = ristretto.NewCache(&ristretto.Config[string, *localEntry[V]]{
			NumCounters:        int64(o.LocalCapacity) * 10,
			MaxCost:            maxCost,
			BufferItems:        64,
			IgnoreInternalCost: true,
		})
		if err != nil {
			clock.release()
			return nil, fmt.Errorf("stampede: local cache: %w", err)
		}
	}
	if rdb != nil {
		c.ctxDeadlines = bounded.HonorsContext(rdb)
		if err := c.startInvalidation(); err != nil {
			_ = c.Close()
			return nil, err
		}
	}
	return c, nil
}

// Get returns the value for key, calling load at most once per key and
// expiry across the whole fleet when it is missing. See Fetch for a variant
// that reports where the value came from and lets the loader steer storage.
func (c *Cache[V]) Get(ctx context.Context, key string, load func(ctx context.Context, key string) (V, error)) (V, error) {
	// The L1 hit, kept lean: no Result, one atomic clock read.
	if e := c.getL1(key); e != nil && load != nil {
		if now := c.now(); now < e.freshUntil && now < e.earlyFrom {
			c.note(ctx, EventLocalHit, key)
			if e.tombstone {
				var zero V
				return zero, ErrNotFound
			}
			return e.v, nil
		}
	}
	return c.getSlow(ctx, key, load)
}

// getSlow is Get past an L1 hit. Its first branch is a herd's path: every
// caller on this node but one joins the call in flight and waits for it.
// That path is written out in one frame, so that a fresh goroutine's stack
// holds it and the runtime's own work when it parks.
func (c *Cache[V]) getSlow(ctx context.Context, key string, load func(ctx context.Context, key string) (V, error)) (V, error) {
	if call := c.loads.find(key); call != nil && load != nil {
		if done := ctx.Done(); done != nil {
			select {
			case <-call.done:
			case <-done:
				var zero V
				return zero, ctx.Err()
			}
		} else {
			<-call.done
		}
		return call.res.Value, call.err
	}
	return c.getMiss(ctx, key, load)
}

// getMiss is the rest of Get: L1 near expiry (XFetch), then the pipeline.
func (c *Cache[V]) getMiss(ctx context.Context, key string, load func(ctx context.Context, key string) (V, error)) (V, error) {
	if load == nil {
		var zero V
		return zero, ErrNilLoader
	}
	e := c.getL1(key)
	if e != nil {
		if now := c.now(); now < e.freshUntil {
			c.refreshEarly(ctx, key, loader[V]{plain: load}, e, now)
			c.note(ctx, EventLocalHit, key)
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

// FetchPrev is Fetch with a loader that is also given the value its load
// replaces, if any (Prev): a stale copy being refreshed, a value refreshed
// early, or one kept past its life for this purpose (Entry.Keep).
func (c *Cache[V]) FetchPrev(ctx context.Context, key string, load func(ctx context.Context, key string, prev Prev[V]) (V, Entry, error)) (Result[V], error) {
	if load == nil {
		return Result[V]{}, ErrNilLoader
	}
	return c.fetch(ctx, key, loader[V]{prev: load}, c.getL1(key))
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

// Set stores v under key in Redis and L1, drops any rebuild lease so that a
// rebuild already in flight cannot overwrite v with older data (invariant 2),
// and evicts key from L1 on every other node. In tracking mode
// (Options.Invalidation) v goes to L1 when the next Get reads it back.
func (c *Cache[V]) Set(ctx context.Context, key string, v V) error {
	if err := checkKey(key, c.opts.MaxKeyLen); err != nil {
		return err
	}
	if !c.enter() {
		return ErrClosed
	}
	defer c.wg.Done()
	before := c.forget(key)
	ttl, stl := c.opts.TTL, c.opts.Stale
	var id entry.ID
	if c.rdb != nil {
		raw, wid, err := c.encodeEntry(v, entry.Header{TTL: ttl, Stale: stl})
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
	// in L1 (invariant 11). v goes to L1 only if nothing else invalidated
	// key meanwhile: another Set or Delete of this node, whose write may
	// have landed after this one, or another node's.
	if after := c.invalidateL1(key); after == before+1 && c.keepsOwnWrites() {
		c.store(key, c.newLocal(v, false, ttl, stl, 0, id), after)
	}
	return nil
}

// Delete removes key from Redis and from L1 on every node, and drops any
// rebuild lease so that a rebuild already in flight cannot write back.
func (c *Cache[V]) Delete(ctx context.Context, key string) error {
	if err := checkKey(key, c.opts.MaxKeyLen); err != nil {
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
// the last refresh error. It returns key's L1 generation after it.
func (c *Cache[V]) forget(key string) uint64 {
	c.loads.forget(key)
	gen := c.invalidateL1(key)
	c.forgetRefreshErr(key)
	return gen
}

// write runs write.lua. With the circuit open it fails at once rather than
// wait out a dead Redis. When it fails, whether the write landed is
// unknown: L1 is invalidated again either way.
func (c *Cache[V]) write(ctx context.Context, key string, raw []byte, px time.Duration) error {
	if !c.redisUsable() {
		return errCircuitOpen
	}
	err := c.call(ctx, key, 0, func(ctx context.Context) error {
		return lua.Write.Run(ctx, c.rdb, c.keys(key), raw, pxMillis(px), c.channel, c.message(msgInvalidated, key)).Err()
	})
	if err != nil {
		// Whether it landed is unknown: invalidate either way.
		c.invalidateL1(key)
		c.noteKeyError(ctx, key, err)
		return err // the caller's ctx error, a reply error about key, or ErrRedisUnavailable
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
