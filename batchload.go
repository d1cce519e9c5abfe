package stampede

// A batch's loads: the loader call for the keys whose leases this node
// won, the fenced write-back of each key, the renewal of the leases while
// the loader runs, and the loads without Redis.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stampede-go/stampede/internal/bounded"
	"github.com/stampede-go/stampede/internal/entry"
	"github.com/stampede-go/stampede/internal/lease"
	"github.com/stampede-go/stampede/internal/lua"
)

// withoutRedis is what a batch does with Redis out of reach: fail closed,
// or load in this process.
func (b *batch[V]) withoutRedis(ctx context.Context, keys []string, reason string) {
	if b.c.rdb != nil && b.c.opts.FailClosed {
		for _, k := range keys {
			b.finish(k, Result[V]{}, errCircuitOpen)
		}
		return
	}
	b.loadLocal(ctx, keys, true, reason)
}

// callLoader runs the batch loader safely with its own timeout, for keys.
func (b *batch[V]) callLoader(ctx context.Context, keys []string, reason string) (map[string]Loaded[V], time.Duration, error) {
	c := b.c
	c.noteTimed(ctx, EventLoadStart, keys[0], 0, reason, nil)
	lctx, cancel := c.loaderContext(ctx)
	defer cancel()
	start := time.Now()
	got, err := callSafely(lctx, func(ctx context.Context) (map[string]Loaded[V], error) {
		return b.ld.call(ctx, keys)
	})
	took := time.Since(start)
	var pe *PanicError
	if errors.As(err, &pe) || errors.Is(err, errGoexit) {
		c.noteErr(ctx, EventLoaderPanic, keys[0], err)
	}
	c.noteTimed(ctx, EventLoad, keys[0], took, reason, err)
	return got, took, err
}

// loadLocal loads keys without leases; store says whether L1 may keep the
// values (briefly, as Cache.loadLocal does).
func (b *batch[V]) loadLocal(ctx context.Context, keys []string, store bool, reason string) {
	c := b.c
	gens := make(map[string]uint64, len(keys))
	for _, k := range keys {
		gens[k] = c.gens.of(k)
	}
	got, delta, err := b.callLoader(ctx, keys, reason)
	if c.rdb != nil {
		delta = 0 // no early refresh of a value Redis never saw
	}
	for _, k := range keys {
		if err != nil {
			b.finish(k, Result[V]{}, err)
			continue
		}
		l, found := got[k]
		if !found {
			if store && c.opts.NotFoundTTL > 0 {
				c.store(k, c.newLocal(zero[V](), true, c.opts.NotFoundTTL, 0, 0, 0), gens[k])
			}
			b.finish(k, Result[V]{Source: SourceLoader}, ErrNotFound)
			continue
		}
		r := Result[V]{Value: l.Value, Source: SourceLoader}
		if store && !l.Entry.NoStore {
			ttl, stl := c.entryTTLs(l.Entry)
			e := c.newLocal(l.Value, false, ttl, stl, delta, 0)
			if c.rdb != nil {
				e.freshUntil = min(e.freshUntil, e.loadedAt+c.opts.BreakerCooldown)
			}
			c.store(k, e, gens[k])
			c.forgetRefreshErr(k)
			r.Stored = c.rdb == nil && c.l1 != nil
		}
		b.finish(k, r, nil)
	}
}

// loadAndFill loads the keys whose leases the batch won, in one loader
// call, keeping the leases meanwhile, then writes each back under its own
// lease (invariants 2 and 3), one script call per slot group. gens are the
// keys' L1 generations read before the leases were taken.
func (b *batch[V]) loadAndFill(ctx context.Context, token string, keys []string, leased time.Time, gens map[string]uint64) {
	defer b.loads.Done()
	c := b.c
	for _, k := range keys {
		c.note(ctx, EventLeaseWon, k)
	}
	kctx, stopKeeping := context.WithCancel(c.closeCtx)
	kept := make(chan struct{})
	go func() {
		defer close(kept)
		b.keep(kctx, ctx, token, keys, leased)
	}()
	reason := LoadMiss
	if b.refreshing {
		reason = LoadRefresh
	}
	got, delta, err := b.callLoader(ctx, keys, reason)
	stopKeeping()
	<-kept // no renewal after the load ends (invariant 3)

	type out struct {
		raw       []byte // nil: store nothing, drop the lease
		px        time.Duration
		e         *localEntry[V]
		r         Result[V]
		err       error
		tombstone bool
	}
	outs := make(map[string]*out, len(keys))
	for _, k := range keys {
		o := &out{}
		outs[k] = o
		if err != nil {
			o.err = err // never cached (invariant 9): the lease is dropped
			continue
		}
		l, found := got[k]
		switch {
		case !found && c.opts.NotFoundTTL > 0:
			raw, id, _ := c.encodeEntry(zero[V](), entry.Header{Tombstone: true, TTL: c.opts.NotFoundTTL})
			o.raw, o.px, o.tombstone = raw, c.opts.NotFoundTTL, true
			o.e = c.newLocal(zero[V](), true, c.opts.NotFoundTTL, 0, 0, id)
			o.r, o.err = Result[V]{Source: SourceLoader}, ErrNotFound
		case !found:
			o.r, o.err = Result[V]{Source: SourceLoader}, ErrNotFound
		case l.Entry.NoStore:
			o.r = Result[V]{Value: l.Value, Source: SourceLoader}
		default:
			ttl, stl := c.entryTTLs(l.Entry)
			h := entry.Header{TTL: ttl, Stale: stl, Delta: delta, Keep: max(l.Entry.Keep, 0)}
			raw, id, eerr := c.encodeEntry(l.Value, h)
			if eerr != nil {
				o.err = fmt.Errorf("stampede: key %q: %w", k, eerr)
				continue
			}
			o.raw, o.px = raw, ttl+stl+h.Keep
			o.e = c.newLocal(l.Value, false, ttl, stl, delta, id)
			o.r = Result[V]{Value: l.Value, Source: SourceLoader}
		}
	}
	for _, g := range c.groups(keys) {
		redisKeys := make([]string, 0, 2*len(g.keys))
		args := make([]any, 0, 2+3*len(g.keys))
		args = append(args, token, c.channel)
		for _, k := range g.keys {
			o := outs[k]
			vk := c.valueKey(k)
			redisKeys = append(redisKeys, vk, vk+":lock")
			args = append(args, o.raw, pxMillis(o.px), c.message(msgFilled, k))
		}
		var res []any
		ferr := c.call(ctx, g.keys[0], 0, func(ctx context.Context) error {
			var err error
			res, err = lua.FillMany.Run(ctx, g.rdb, redisKeys, args...).Slice()
			return err
		})
		if ferr != nil {
			c.noteKeyError(ctx, g.keys[0], ferr)
		}
		for i, k := range g.keys {
			o := outs[k]
			stored := false
			if ferr == nil && i < len(res) {
				n, _ := res[i].(int64)
				stored = n == 1
				if n == 0 && o.raw != nil {
					c.note(ctx, EventWriteBackRejected, k)
				}
			}
			// A refused write-back means newer data exists.
			if o.e != nil && (stored || ferr != nil) && c.keepsOwnWrites() {
				c.store(k, o.e, gens[k])
			}
			if stored {
				c.forgetRefreshErr(k)
			}
			o.r.Stored = stored && o.raw != nil && !o.tombstone
			b.finish(k, o.r, o.err)
		}
	}
}

// keep renews the leases of keys, one ExtendMany per slot group every
// LockTTL/3, until kctx ends. Each group gives up, as lease.Keep does, when
// its leases could not be confirmed while a third of them was left; a key
// whose lease is found gone, or given up, is noted lost once. A lost lease
// makes its key's write-back fail, which is the point.
func (b *batch[V]) keep(kctx, ctx context.Context, token string, keys []string, leased time.Time) {
	c := b.c
	ttl := c.opts.LockTTL
	interval := max(ttl/3, time.Millisecond)
	t := time.NewTimer(interval)
	defer t.Stop()
	type kept struct {
		group
		lastOK time.Time
	}
	var groups []*kept
	for _, g := range c.groups(keys) {
		groups = append(groups, &kept{group: g, lastOK: leased})
	}
	lost := map[string]bool{}
	loseAll := func(keys []string, err error) {
		for _, k := range keys {
			if !lost[k] {
				lost[k] = true
				c.noteErr(ctx, EventLeaseLost, k, err)
			}
		}
	}
	for len(lost) < len(keys) {
		select {
		case <-kctx.Done():
			return
		case <-t.C:
		}
		for _, g := range groups {
			giveUp := time.Until(g.lastOK.Add(ttl - interval))
			if giveUp <= 0 {
				loseAll(g.keys, fmt.Errorf("%w: could not be renewed in time", lease.ErrLost))
				continue
			}
			lockKeys := make([]string, 0, len(g.keys))
			for _, k := range g.keys {
				lockKeys = append(lockKeys, c.lockKey(k))
			}
			sent := time.Now()
			var res []any
			err := bounded.Call(kctx, giveUp, c.ctxDeadlines, func(ctx context.Context) error {
				var err error
				res, err = lua.ExtendMany.Run(ctx, g.rdb, lockKeys, token, ttl.Milliseconds()).Slice()
				return err
			})
			switch {
			case kctx.Err() != nil:
				return
			case err != nil:
				continue // tried again next time, until it gives up
			}
			g.lastOK = sent
			for i, k := range g.keys {
				if n, _ := res[i].(int64); n == 1 {
					c.note(ctx, EventLeaseRenewed, k)
				} else {
					loseAll([]string{k}, fmt.Errorf("%w: was released, taken over or expired", lease.ErrLost))
				}
			}
		}
		t.Reset(interval)
	}
}
