package stampede

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/stampede-go/stampede/internal/lease"
	"github.com/stampede-go/stampede/internal/lua"
)

// batch is the work of one GetMany or FetchMany for the keys whose calls
// it made: it runs detached from its caller and finishes every call it
// made, whatever happens.
type batch[V any] struct {
	c     *Cache[V]
	ld    manyLoader[V]
	stale map[string]*localEntry[V] // L1 stale copies, served while Redis is out of reach

	// refreshing: the batch refreshes stale values in the background; it
	// has no calls, and a value found means someone refreshed it first.
	refreshing bool

	mu    sync.Mutex                        // guards calls
	calls map[string]*flightCall[Result[V]] // calls not yet finished
	loads sync.WaitGroup                    // loads started by the batch
}

// finish finishes key's call, once.
func (b *batch[V]) finish(key string, r Result[V], err error) {
	b.mu.Lock()
	call := b.calls[key]
	delete(b.calls, key)
	b.mu.Unlock()
	if call != nil {
		b.c.loads.finish(key, call, r, err)
	}
}

// unfinished returns the keys whose calls are not finished.
func (b *batch[V]) unfinished() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	keys := make([]string, 0, len(b.calls))
	for k := range b.calls {
		keys = append(keys, k)
	}
	return keys
}

// run is the batch's work: read what Redis has and lease what it lacks,
// load what this node leased in one loader call, wait for the rest.
func (b *batch[V]) run(ctx context.Context, keys []string) {
	c := b.c
	defer c.wg.Done()
	defer func() {
		// Whatever went wrong, no call is left unfinished (invariant 7).
		var err error = ErrClosed
		if v := recover(); v != nil {
			err = newPanicError(v)
		}
		b.loads.Wait()
		for _, key := range b.unfinished() {
			b.finish(key, Result[V]{}, err)
		}
	}()
	if !c.redisUsable() {
		b.withoutRedis(ctx, keys, LoadLocal)
		return
	}
	// Register for every key's "filled" before looking, as lead does.
	wake := make(chan struct{}, 1)
	slots := make(map[string]*waitSlot, len(keys))
	for _, key := range keys {
		slots[key] = c.waiters.watch(key, wake)
	}
	defer func() {
		for key, s := range slots {
			c.waiters.release(key, s)
		}
	}()
	pending := make(map[string]replacing, len(keys))
	for _, key := range keys {
		pending[key] = replacingNone
	}
	b.lead(ctx, pending, wake, slots)
}

// lead takes the leases of pending keys it can, loads those, and waits for
// the others to be filled elsewhere, re-checking every Recheck, until
// WaitTimeout; pending maps each key to what is known of its value.
func (b *batch[V]) lead(ctx context.Context, pending map[string]replacing, wake chan struct{}, slots map[string]*waitSlot) {
	c := b.c
	token := lease.NewValue()
	start := time.Now()
	deadline := start.Add(c.opts.WaitTimeout)
	recheck := time.NewTimer(time.Hour)
	recheck.Stop()
	defer recheck.Stop()
	how := ""      // how the last wait ended
	again := false // look again at once: a kept or undecodable value was found
	for pass := 0; len(pending) > 0; pass++ {
		left := time.Until(deadline)
		if left <= 0 {
			for k := range pending {
				c.noteTimed(ctx, EventWait, k, time.Since(start), WaitTimeout, nil)
			}
			b.timedOut(ctx, pending)
			return
		}
		var look []string // the keys to look at: all pending, or those notified
		if pass > 0 && !again {
			recheck.Reset(min(c.opts.Recheck, left))
			select {
			case <-wake:
				recheck.Stop()
				how = WaitNotify
			case <-recheck.C:
				how = WaitRecheck
			case <-c.closeCtx.Done():
				return // the caller's deferred finish says ErrClosed
			}
			// Slots that fired are gone: the next notification closes new
			// ones. Woken, only their keys are looked at: the others'
			// fills have not come, and a batch re-reading all its keys on
			// each of their fills would cost Redis the square of them.
			for key, s := range slots {
				select {
				case <-s.ch:
					c.waiters.release(key, s)
					slots[key] = c.waiters.watch(key, wake)
					if _, ok := pending[key]; ok && how == WaitNotify {
						look = append(look, key)
					}
				default:
				}
			}
			if how == WaitNotify && len(look) == 0 {
				continue
			}
		}
		if look == nil {
			look = make([]string, 0, len(pending))
			for k := range pending {
				look = append(look, k)
			}
		}
		gens := make(map[string]uint64, len(look))
		for _, k := range look {
			gens[k] = c.gens.of(k)
		}
		sent := time.Now()
		var won []string
		won, again = b.lockMany(ctx, token, look, pending, min(left, c.opts.RedisTimeout), pass, how, start)
		if len(won) > 0 {
			b.loads.Add(1)
			go b.loadAndFill(ctx, token, won, sent, gens)
		}
	}
}

// lockMany runs lock_many.lua for keys, of the pending ones, one call per slot
// group, and settles each key it can: a value served, a lease won (in won,
// for the caller to load), or still held elsewhere (left pending). again
// says a kept or undecodable value was found, whose lease is to be tried at
// once. A group Redis fails for is settled without Redis. how and since say
// how and since when the keys waited, for the waits that end here.
func (b *batch[V]) lockMany(ctx context.Context, token string, keys []string, pending map[string]replacing, limit time.Duration, pass int, how string, since time.Time) (won []string, again bool) {
	c := b.c
	var stales []string
	var staleEntries []*localEntry[V]
	for _, g := range c.groups(keys) {
		gen := make(map[string]uint64, len(g.keys))
		redisKeys := make([]string, 0, 2*len(g.keys))
		args := make([]any, 0, 2+len(g.keys))
		args = append(args, token, c.opts.LockTTL.Milliseconds())
		for _, k := range g.keys {
			gen[k] = c.gens.of(k)
			vk := c.valueKey(k)
			redisKeys = append(redisKeys, vk, vk+":lock")
			args = append(args, string(pending[k]))
		}
		var res []any
		err := c.call(ctx, g.keys[0], limit, func(ctx context.Context) error {
			rdb, d := c.groupReader(g)
			defer d.release()
			var err error
			res, err = lua.LockMany.Run(ctx, rdb, redisKeys, args...).Slice()
			return err
		})
		if err != nil || len(res) != len(g.keys) {
			if err == nil {
				err = fmt.Errorf("stampede: lock_many.lua replied %d results for %d keys", len(res), len(g.keys))
			}
			for _, k := range g.keys {
				c.dropLease(ctx, k, token) // the script may have taken some
			}
			var local []string
			for _, k := range g.keys {
				delete(pending, k)
				switch s := b.stale[k]; {
				case c.opts.FailClosed:
					b.finish(k, Result[V]{}, err)
				case s != nil:
					c.note(ctx, EventStale, k)
					r, err := c.staleResult(k, s)
					b.finish(k, r, err)
				default:
					local = append(local, k)
				}
			}
			if len(local) > 0 && !b.refreshing {
				// Fail open for these keys, loading them here without Redis.
				b.loads.Add(1)
				go func() {
					defer b.loads.Done()
					b.loadLocal(ctx, local, true, LoadLocal)
				}()
			}
			continue
		}
		for i, k := range g.keys {
			reply, _ := res[i].([]any)
			status := lockHeld
			if len(reply) > 0 {
				s, _ := reply[0].(int64)
				status = lockStatus(s)
			}
			switch status {
			case lockGotValue:
				var raw string
				var pttl int64
				if len(reply) == 3 {
					raw, _ = reply[1].(string)
					pttl, _ = reply[2].(int64)
				}
				e, _, f, _ := c.decodeRedis(ctx, k, []byte(raw), time.Duration(pttl)*time.Millisecond, true)
				switch {
				case e == nil:
					pending[k] = replacingAny // undecodable: go for the lease past it
					again = true
					continue
				case f == kept:
					pending[k] = replacingEntry(e.id) // not to be served: its lease, at once
					again = true
					continue
				}
				delete(pending, k)
				if pass > 0 {
					if how == WaitNotify {
						c.stats.wokenByNotify.Add(1)
					} else {
						c.stats.wokenByRecheck.Add(1)
					}
					c.noteTimed(ctx, EventWait, k, time.Since(since), how, nil)
				}
				if f == stale && !b.refreshing {
					stales = append(stales, k)
					staleEntries = append(staleEntries, e)
				}
				r, err := c.served(ctx, k, e, f, gen[k])
				r.Waited = pass > 0
				b.finish(k, r, err)
			case lockWon:
				delete(pending, k)
				won = append(won, k)
			default:
				if pass == 0 {
					c.note(ctx, EventLeaseContended, k)
				}
			}
		}
	}
	b.refreshLater(ctx, stales, staleEntries)
	return won, again
}

// refreshLater refreshes stale values read by the batch, in the
// background and once across the fleet, with one loader call for the
// keys whose leases it wins (the keys this process refreshes already are
// left to that refresh).
func (b *batch[V]) refreshLater(ctx context.Context, keys []string, es []*localEntry[V]) {
	c := b.c
	if len(keys) == 0 {
		return
	}
	pending := make(map[string]replacing, len(keys))
	c.mu.Lock()
	if c.closed.Load() {
		c.mu.Unlock()
		return
	}
	for i, k := range keys {
		if _, busy := c.refreshing[k]; !busy {
			c.refreshing[k] = struct{}{}
			pending[k] = replacingEntry(es[i].id)
		}
	}
	if len(pending) == 0 {
		c.mu.Unlock()
		return
	}
	c.wg.Add(1)
	c.mu.Unlock()
	rb := &batch[V]{c: c, ld: b.ld, refreshing: true}
	// lockMany takes settled keys out of pending: the keys marked are
	// remembered apart, to be unmarked whatever happens to them.
	marked := make([]string, 0, len(pending))
	for k := range pending {
		marked = append(marked, k)
	}
	go func() {
		defer c.wg.Done()
		defer func() {
			c.mu.Lock()
			for _, k := range marked {
				delete(c.refreshing, k)
			}
			c.mu.Unlock()
		}()
		token := lease.NewValue()
		gens := make(map[string]uint64, len(marked))
		for _, k := range marked {
			gens[k] = c.gens.of(k)
		}
		sent := time.Now()
		won, _ := rb.lockMany(ctx, token, marked, pending, c.opts.RedisTimeout, 0, "", sent)
		if len(won) > 0 {
			c.stats.earlyRefreshes.Add(uint64(len(won)))
			rb.loads.Add(1)
			rb.loadAndFill(ctx, token, won, sent, gens)
		}
	}()
}

// timedOut applies Options.OnWaitTimeout to the keys still waiting.
func (b *batch[V]) timedOut(ctx context.Context, pending map[string]replacing) {
	keys := make([]string, 0, len(pending))
	for k := range pending {
		keys = append(keys, k)
	}
	if b.c.opts.OnWaitTimeout == WaitReturnError {
		for _, k := range keys {
			b.finish(k, Result[V]{}, fmt.Errorf("%w after %v (key %q)", ErrWaitTimeout, b.c.opts.WaitTimeout, k))
		}
		return
	}
	b.loadLocal(ctx, keys, false, LoadLocal)
}
