package stampede

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stampede-go/stampede/internal/entry"
	"github.com/stampede-go/stampede/internal/lease"
	"github.com/stampede-go/stampede/internal/lua"
)

// maxRefreshErrs bounds the failed refreshes remembered for Result.LoadErr.
const maxRefreshErrs = 1024

// loader holds one of the three loader shapes without allocating a closure
// on the hit path.
type loader[V any] struct {
	plain func(context.Context, string) (V, error)
	full  func(context.Context, string) (V, Entry, error)
	prev  func(context.Context, string, Prev[V]) (V, Entry, error)
}

func (l loader[V]) call(ctx context.Context, key string, prev Prev[V]) (V, Entry, error) {
	switch {
	case l.prev != nil:
		return l.prev(ctx, key, prev)
	case l.full != nil:
		return l.full(ctx, key)
	}
	v, err := l.plain(ctx, key)
	return v, Entry{}, err
}

// loadOut is a loader's value and storage instructions.
type loadOut[V any] struct {
	v   V
	ent Entry
}

// callLoader runs the loader safely with its own timeout. prev is the value
// the load replaces, if any; reason says why it loads (LoadMiss, ...).
func (c *Cache[V]) callLoader(ctx context.Context, key string, ld loader[V], prev *localEntry[V], reason string) (V, Entry, time.Duration, error) {
	c.noteTimed(ctx, EventLoadStart, key, 0, reason, nil)
	var p Prev[V]
	if prev != nil && !prev.tombstone {
		p = Prev[V]{Value: prev.v, OK: true, Age: c.now() - prev.loadedAt}
	}
	lctx, cancel := c.loaderContext(ctx)
	defer cancel()
	start := time.Now()
	out, err := callSafely(lctx, func(ctx context.Context) (loadOut[V], error) {
		v, ent, err := ld.call(ctx, key, p)
		return loadOut[V]{v, ent}, err
	})
	took := time.Since(start)
	var pe *PanicError
	if errors.As(err, &pe) || errors.Is(err, errGoexit) {
		c.noteErr(ctx, EventLoaderPanic, key, err)
	}
	c.noteTimed(ctx, EventLoad, key, took, reason, err)
	return out.v, out.ent, took, err
}

// loadAndFill runs the loader while holding the lease, renewing it, then
// writes back through the fenced script (invariants 2 and 3). leased is
// when the request that took the lease was sent; prev is the value the load
// replaces, if any; reason says why it loads; gen is key's L1 generation
// read before the request that took the lease, so that a Set or Delete of
// this node after it keeps the loaded value out of L1.
func (c *Cache[V]) loadAndFill(ctx context.Context, key string, ld loader[V], token string, leased time.Time, prev *localEntry[V], reason string, gen uint64) (Result[V], error) {
	c.note(ctx, EventLeaseWon, key)
	kctx, stopKeeping := context.WithCancel(c.closeCtx)
	kept := make(chan struct{})
	go func() {
		defer close(kept)
		err := lease.Keep(kctx, c.rdb, c.lockKey(key), token, c.opts.LockTTL, leased, c.ctxDeadlines,
			func() { c.note(ctx, EventLeaseRenewed, key) })
		if err != nil {
			// Set or Delete dropped it, it ran out, or Redis stopped
			// answering: the write-back will be refused, which is the point.
			c.noteErr(ctx, EventLeaseLost, key, err)
		}
	}()
	v, ent, delta, err := c.callLoader(ctx, key, ld, prev, reason)
	stopKeeping()
	<-kept // no renewal after the load ends (invariant 3)

	tombstone := errors.Is(err, ErrNotFound) && c.opts.NotFoundTTL > 0
	if (err != nil && !tombstone) || ent.NoStore {
		// Never cache an error (invariant 9): drop the lease and wake the
		// waiters, one of whom will take over.
		_, _ = c.fill(ctx, key, token, nil, 0)
		if err != nil {
			return Result[V]{}, err
		}
		return Result[V]{Value: v, Source: SourceLoader}, nil
	}
	ttl, stl := c.entryTTLs(ent)
	h := entry.Header{TTL: ttl, Stale: stl, Delta: delta, Keep: max(ent.Keep, 0)}
	if tombstone {
		v, ttl, stl = zero[V](), c.opts.NotFoundTTL, 0
		h = entry.Header{Tombstone: true, TTL: ttl}
	}
	raw, id, eerr := c.encodeEntry(v, h)
	if eerr != nil {
		_, _ = c.fill(ctx, key, token, nil, 0)
		return Result[V]{}, eerr
	}
	stored, ferr := c.fill(ctx, key, token, raw, h.TTL+h.Stale+h.Keep)
	if (stored || ferr != nil) && c.keepsOwnWrites() { // a refused write-back means newer data exists
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

// encodeEntry makes the bytes stored in Redis for a value with header h,
// under a new write id.
func (c *Cache[V]) encodeEntry(v V, h entry.Header) ([]byte, entry.ID, error) {
	var payload []byte
	if !h.Tombstone {
		var err error
		if payload, err = c.encode(v); err != nil {
			return nil, 0, fmt.Errorf("stampede: encoding value: %w", err)
		}
	}
	h.ID = entry.NewID()
	return entry.Append(make([]byte, 0, entry.MaxHeaderLen+len(payload)), h, payload), h.ID, nil
}

// fill runs fill.lua: store raw (nil stores nothing) iff lease still holds,
// drop the lease, publish "filled".
func (c *Cache[V]) fill(ctx context.Context, key, token string, raw []byte, px time.Duration) (bool, error) {
	var n int64
	err := c.call(ctx, key, 0, func(ctx context.Context) error {
		var err error
		n, err = lua.Fill.Run(ctx, c.rdb, c.keys(key), token, raw, pxMillis(px), c.channel, c.message(msgFilled, key)).Int64()
		return err
	})
	if err != nil {
		c.noteKeyError(ctx, key, err)
		return false, err
	}
	if n == 0 && raw != nil {
		c.note(ctx, EventWriteBackRejected, key)
	}
	return n == 1, nil
}

// loadLocal loads without the lease: Redis is out (fail open), or a wait
// timed out. store says whether L1 may keep the value; prev is the value
// the load replaces, if any; reason says why it loads.
func (c *Cache[V]) loadLocal(ctx context.Context, key string, ld loader[V], store bool, prev *localEntry[V], reason string) (Result[V], error) {
	gen := c.gens.of(key)
	v, ent, delta, err := c.callLoader(ctx, key, ld, prev, reason)
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

// refreshInBackground starts one refresh of key in this process, unless one
// is running. known is the entry to replace, prev its value; reason is
// LoadRefresh or LoadEarly.
func (c *Cache[V]) refreshInBackground(ctx context.Context, key string, ld loader[V], known replacing, prev *localEntry[V], reason string) {
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
			return struct{}{}, c.refresh(ctx, key, ld, known, prev, reason)
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
func (c *Cache[V]) refresh(ctx context.Context, key string, ld loader[V], known replacing, prev *localEntry[V], reason string) error {
	if !c.redisUsable() {
		_, err := c.withoutRedis(ctx, key, ld, prev, reason)
		return err
	}
	token := lease.NewValue()
	gen := c.gens.of(key)
	sent := time.Now()
	got, err := c.readOrLock(ctx, key, token, known, 0)
	if err != nil {
		c.dropLease(ctx, key, token)
		return err
	}
	if got.status != lockWon {
		return nil
	}
	if known != replacingNone {
		c.stats.earlyRefreshes.Add(1)
	}
	_, err = c.loadAndFill(ctx, key, ld, token, sent, prev, reason, gen)
	return err
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

func zero[V any]() (v V) { return v }

// loaderContext is the context a loader runs on: ctx (detached from the
// callers already), ended by Close (cause ErrClosed) and by LoadTimeout.
func (c *Cache[V]) loaderContext(ctx context.Context) (context.Context, context.CancelFunc) {
	cctx, cancelClosed := context.WithCancelCause(ctx)
	stop := context.AfterFunc(c.closeCtx, func() { cancelClosed(ErrClosed) })
	lctx, cancel := context.WithTimeout(cctx, c.opts.LoadTimeout)
	return lctx, func() {
		cancel()
		cancelClosed(nil)
		stop()
	}
}
