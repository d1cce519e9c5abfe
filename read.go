package stampede

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stampede-go/stampede/internal/entry"
	"github.com/stampede-go/stampede/internal/lease"
	"github.com/stampede-go/stampede/internal/lua"
)

// fetch is the pipeline; l1 is key's L1 entry as the caller found it, or nil.
func (c *Cache[V]) fetch(ctx context.Context, key string, ld loader[V], l1 *localEntry[V]) (Result[V], error) {
	if err := checkKey(key, c.opts.MaxKeyLen); err != nil {
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
			c.note(ctx, EventLocalHit, key)
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
		c.note(ctx, EventStale, key)
		return c.staleResult(key, staleCopy)
	}
	// 2-5. One caller per key per process reads Redis and, on a miss, leads
	// the rebuild; the callers arriving meanwhile share its result, so a
	// herd costs one round trip per node, not one per request.
	r, joined, err := c.loads.do(ctx, key, func(lctx context.Context) (Result[V], error) {
		if !c.enter() {
			return Result[V]{}, ErrClosed
		}
		defer c.wg.Done()
		return c.readOrLead(lctx, key, ld, staleCopy)
	})
	if joined {
		r.Waited = true
	}
	return r, err
}

// readOrLead is run by the single-flight leader: step 2, then the stale
// copy, then the rebuild.
func (c *Cache[V]) readOrLead(ctx context.Context, key string, ld loader[V], staleCopy *localEntry[V]) (Result[V], error) {
	// A flight that ended between this caller's L1 look and this one has
	// filled L1: use it rather than read Redis or load again.
	if e := c.getL1(key); e != nil {
		if now := c.now(); now < e.freshUntil {
			c.note(ctx, EventLocalHit, key)
			return e.result(SourceLocal, now)
		}
	}
	var prev *localEntry[V] // a kept value, for the load that replaces it
	answered := false       // Redis said what it has for key
	if !c.redisUsable() {
		if c.rdb != nil && c.opts.FailClosed {
			return Result[V]{}, errCircuitOpen
		}
	} else {
		e, f, err := c.readRedis(ctx, key, ld)
		answered = err == nil
		switch {
		case err != nil && c.opts.FailClosed:
			return Result[V]{}, err
		case err != nil || e == nil:
		case f == kept:
			prev = e
		case f == stale:
			return c.staleResult(key, e)
		default:
			return e.result(SourceRedis, c.now())
		}
	}
	// An L1 stale copy is served only when Redis is out of reach. When it
	// answered that it has nothing to serve, the value was deleted or ran
	// out, perhaps on a message this node lost (invariant 11).
	if staleCopy != nil && !answered {
		c.note(ctx, EventStale, key)
		c.refreshInBackground(ctx, key, ld, replacingNone, staleCopy, LoadRefresh)
		return c.staleResult(key, staleCopy)
	}
	c.note(ctx, EventMiss, key)
	return c.lead(ctx, key, ld, prev)
}

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
		rdb, d := c.readClient()
		defer d.release()
		pipe := rdb.TxPipeline()
		get = pipe.Get(ctx, vk)
		pttlCmd = pipe.PTTL(ctx, vk)
		_, err := pipe.Exec(ctx)
		return err
	})
	var ke *keyError
	switch {
	case errors.As(err, &ke):
		// A value of the wrong type: a miss; the fill overwrites it.
		c.corrupt(ctx, key, err)
		return nil, expired, nil
	case err != nil && !errors.Is(err, redis.Nil):
		return nil, expired, err
	}
	raw, err := get.Bytes()
	if err != nil { // redis.Nil: absent
		return nil, expired, nil
	}
	pttl := pttlCmd.Val()
	e, h, f, freshLeft := c.decodeRedis(ctx, key, raw, pttl, true)
	switch f {
	case fresh:
		c.note(ctx, EventRedisHit, key)
		c.setL1(key, e, gen)
		if !e.tombstone && shouldRefreshEarly(freshLeft, h.Delta, c.opts.Beta) {
			c.refreshInBackground(ctx, key, ld, replacingEntry(h.ID), e, LoadEarly)
		}
	case stale:
		// Kept in L1 too, so that while the refresh runs this process
		// serves it without reading Redis again.
		c.note(ctx, EventStale, key)
		c.setL1(key, e, gen)
		c.refreshInBackground(ctx, key, ld, replacingEntry(h.ID), e, LoadRefresh)
	}
	return e, f, nil
}

// decodeRedis decodes an entry read from Redis with its PTTL. e is nil and
// f is expired when there is nothing usable; a kept entry (Entry.Keep) is
// never fresh or stale in L1, and serves only as a load's previous value. report counts and reports an
// undecodable entry; the leader's second look at the same bytes does not.
func (c *Cache[V]) decodeRedis(ctx context.Context, key string, raw []byte, pttl time.Duration, report bool) (e *localEntry[V], h entry.Header, f freshness, freshLeft time.Duration) {
	h, payload, err := entry.Decode(raw)
	if err != nil {
		if report {
			c.corrupt(ctx, key, err)
		}
		return nil, h, expired, 0
	}
	f, age, freshLeft := judge(h, pttl)
	if f == expired {
		return nil, h, expired, 0
	}
	var v V
	if !h.Tombstone {
		if v, err = c.decode(payload); err != nil {
			if report {
				c.corrupt(ctx, key, err)
			}
			return nil, h, expired, 0
		}
	}
	now := c.now()
	return &localEntry[V]{v: v, tombstone: h.Tombstone, loadedAt: now - age,
		freshUntil: now + freshLeft, staleUntil: now + max(pttl-h.Keep, 0),
		valueFresh: now + freshLeft, earlyFrom: c.earlyFrom(now+freshLeft, h.Delta), delta: h.Delta, id: h.ID}, h, f, freshLeft
}

// lead is run by one caller per key per process (the single-flight leader):
// re-check Redis and take the lease in one round trip, then load or wait.
// Every pass is bounded by what is left of WaitTimeout, Redis calls
// included (invariant 10). prev is a kept value the load will replace.
func (c *Cache[V]) lead(ctx context.Context, key string, ld loader[V], prev *localEntry[V]) (Result[V], error) {
	if !c.redisUsable() {
		return c.withoutRedis(ctx, key, ld, prev, LoadLocal)
	}
	// Register for the "filled" notification before looking, so that a fill
	// landing between the look and the wait still wakes us.
	slot := c.waiters.acquire(key)
	defer func() { c.waiters.release(key, slot) }()

	token := lease.NewValue()
	known := replacingNone
	if prev != nil {
		known = replacingEntry(prev.id)
	}
	deadline := time.Now().Add(c.opts.WaitTimeout)
	var (
		recheck   *time.Timer
		waitStart time.Time // when another node's lease was first found
		woken     bool      // the last wait ended by a notification
	)
	for pass := 0; ; pass++ {
		left := time.Until(deadline)
		if left <= 0 {
			c.waited(ctx, key, waitStart, WaitTimeout)
			return c.waitTimedOut(ctx, key, ld, prev)
		}
		gen := c.gens.of(key)
		sent := time.Now()
		got, err := c.readOrLock(ctx, key, token, known, min(left, c.opts.RedisTimeout))
		if err != nil {
			if ctx.Err() != nil {
				return Result[V]{}, ctx.Err()
			}
			c.dropLease(ctx, key, token)
			if c.opts.FailClosed {
				return Result[V]{}, err
			}
			return c.loadLocal(ctx, key, ld, true, prev, LoadLocal)
		}
		if got.kept != nil {
			prev, known = got.kept, replacingEntry(got.kept.id)
		}
		switch got.status {
		case lockGotValue:
			switch {
			case pass > 0 && woken:
				c.stats.wokenByNotify.Add(1)
				c.waited(ctx, key, waitStart, WaitNotify)
			case pass > 0:
				c.stats.wokenByRecheck.Add(1)
				c.waited(ctx, key, waitStart, WaitRecheck)
			}
			r, err := c.served(ctx, key, got.e, got.f, gen)
			r.Waited = pass > 0
			return r, err
		case lockWon:
			// First try, or the holder died or failed without a value.
			if recheck != nil {
				recheck.Stop()
			}
			return c.loadAndFill(ctx, key, ld, token, sent, prev, LoadMiss, gen)
		}
		if pass == 0 {
			c.note(ctx, EventLeaseContended, key)
			waitStart = time.Now()
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
		case <-c.closeCtx.Done():
			recheck.Stop()
			c.waited(ctx, key, waitStart, WaitClosed)
			return Result[V]{}, ErrClosed
		}
	}
}

// dropLease gives up, in the background, a lease this node may hold after a
// lock call whose answer did not come: the script may have run, and the
// lease would keep the other nodes waiting for LockTTL.
func (c *Cache[V]) dropLease(ctx context.Context, key, token string) {
	if !c.enter() {
		return
	}
	go func() {
		defer c.wg.Done()
		_, _ = c.fill(context.WithoutCancel(ctx), key, token, nil, 0)
	}()
}

// waited notes the end of a wait for another node's load (EventWait).
func (c *Cache[V]) waited(ctx context.Context, key string, since time.Time, how string) {
	if !since.IsZero() {
		c.noteTimed(ctx, EventWait, key, time.Since(since), how, nil)
	}
}

// withoutRedis is what a caller does with Redis out of reach (invariant 8):
// fail closed, or load in this process and keep the value in L1, where the
// circuit closing flushes it.
func (c *Cache[V]) withoutRedis(ctx context.Context, key string, ld loader[V], prev *localEntry[V], reason string) (Result[V], error) {
	if c.rdb != nil && c.opts.FailClosed {
		return Result[V]{}, errCircuitOpen
	}
	return c.loadLocal(ctx, key, ld, true, prev, reason)
}

// served turns an entry that another node wrote into a Result.
func (c *Cache[V]) served(ctx context.Context, key string, e *localEntry[V], f freshness, gen uint64) (Result[V], error) {
	now := c.now()
	if f == stale {
		c.note(ctx, EventStale, key)
		return e.result(SourceStale, now)
	}
	c.note(ctx, EventRedisHit, key)
	c.setL1(key, e, gen)
	return e.result(SourceRedis, now)
}

// waitTimedOut applies Options.OnWaitTimeout (invariant 10).
func (c *Cache[V]) waitTimedOut(ctx context.Context, key string, ld loader[V], prev *localEntry[V]) (Result[V], error) {
	if c.opts.OnWaitTimeout == WaitReturnError {
		return Result[V]{}, fmt.Errorf("%w after %v (key %q)", ErrWaitTimeout, c.opts.WaitTimeout, key)
	}
	return c.loadLocal(ctx, key, ld, false, prev, LoadLocal)
}

// lockStatus is what lock.lua did, as it says in its reply.
type lockStatus int64

const (
	lockGotValue lockStatus = 0 // there is a value to use
	lockWon      lockStatus = 1 // the lease is the caller's
	lockHeld     lockStatus = 2 // another holder has the lease
)

// lockReply is lock.lua's answer: a value to use (e, f), or what became of
// the lease, and a kept value found on the way (Entry.Keep).
type lockReply[V any] struct {
	status lockStatus
	e      *localEntry[V]
	f      freshness
	kept   *localEntry[V]
}

// replacing tells lock.lua which value the caller knows of (its ARGV[3]):
// none, on a miss, so any value is news; the entry with a given write id,
// for a refresh, so only a value written since is news; or any, to take
// the lease past an undecodable value.
type replacing string

const (
	replacingNone replacing = ""
	replacingAny  replacing = "*"
)

func replacingEntry(id entry.ID) replacing { return replacing(id.Arg()) }

// readOrLock runs lock.lua within limit: the value if there is one to use,
// else an attempt at the lease.
func (c *Cache[V]) readOrLock(ctx context.Context, key, token string, known replacing, limit time.Duration) (lockReply[V], error) {
	var found *localEntry[V] // a kept value
	for range 2 {
		var res []any
		err := c.call(ctx, key, limit, func(ctx context.Context) error {
			rdb, d := c.readClient()
			defer d.release()
			var err error
			res, err = lua.Lock.Run(ctx, rdb, c.keys(key), token, c.opts.LockTTL.Milliseconds(), string(known)).Slice()
			return err
		})
		if err != nil {
			return lockReply[V]{}, err
		}
		status, _ := res[0].(int64)
		if lockStatus(status) != lockGotValue {
			return lockReply[V]{status: lockStatus(status), kept: found}, nil
		}
		raw, _ := res[1].(string)
		pttl, _ := res[2].(int64)
		e, _, f, _ := c.decodeRedis(ctx, key, []byte(raw), time.Duration(pttl)*time.Millisecond, false)
		switch {
		case e != nil && f == kept:
			// Not to be served: go for the lease, unless someone rewrote
			// it meanwhile, and give it to the load.
			found, known = e, replacingEntry(e.id)
		case e != nil:
			return lockReply[V]{status: lockGotValue, e: e, f: f, kept: found}, nil
		default:
			// Undecodable (counted by decodeRedis) or expired in between:
			// go for the lease past it.
			known = replacingAny
		}
	}
	return lockReply[V]{status: lockHeld, kept: found}, nil
}
