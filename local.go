package stampede

import (
	"hash/maphash"
	"sync/atomic"
	"time"

	"github.com/stampede-go/stampede/internal/entry"
)

// localEntry is what L1 holds for a key. Its times are on the coarse clock.
type localEntry[V any] struct {
	v          V
	tombstone  bool
	loadedAt   time.Duration
	freshUntil time.Duration // L1 serves it as fresh until then (capped by LocalTTL)
	staleUntil time.Duration

	// XFetch on L1 hits (invariant: early refresh works with L1 on).
	valueFresh time.Duration // when the value itself stops being fresh
	earlyFrom  time.Duration // before this, an early refresh is too unlikely to try
	delta      time.Duration // how long the load that produced it took
	id         entry.ID      // its write id; 0 when it never was in Redis
}

// result turns an L1 entry into a Result.
func (e *localEntry[V]) result(src Source, now time.Duration) (Result[V], error) {
	if e.tombstone {
		return Result[V]{Source: src, Age: now - e.loadedAt}, ErrNotFound
	}
	return Result[V]{Value: e.v, Source: src, Age: now - e.loadedAt}, nil
}

// generations orders L1 writes against invalidations, per key: a value read
// or loaded before an invalidation of its key must not land in L1 after it
// (invariant 11). Keys share a counter by hash, so an invalidation of one
// key only rarely cancels another's fill; a flush moves them all.
type generations struct {
	seed    maphash.Seed
	epoch   atomic.Uint64 // moved by every flush
	stripes [genStripes]atomic.Uint64
}

const genStripes = 4096

func (g *generations) stripe(key string) *atomic.Uint64 {
	return &g.stripes[maphash.String(g.seed, key)%genStripes]
}

// of returns key's generation. It changes whenever key is invalidated or
// L1 is flushed: both counters only grow, so their sum does too.
func (g *generations) of(key string) uint64 {
	return g.epoch.Load() + g.stripe(key).Load()
}

// getL1 returns key's L1 entry, fresh or not, or nil.
func (c *Cache[V]) getL1(key string) *localEntry[V] {
	if c.l1 == nil {
		return nil
	}
	e, _ := c.l1.Get(key)
	return e
}

// newLocal makes an L1 entry for a value loaded or set just now.
func (c *Cache[V]) newLocal(v V, tombstone bool, ttl, stl, delta time.Duration, id entry.ID) *localEntry[V] {
	now := c.now()
	return &localEntry[V]{v: v, tombstone: tombstone, loadedAt: now, freshUntil: now + ttl, staleUntil: now + ttl + stl,
		valueFresh: now + ttl, earlyFrom: c.earlyFrom(now+ttl, delta), delta: delta, id: id}
}

// setL1 stores e unless key's generation moved since gen was read.
func (c *Cache[V]) setL1(key string, e *localEntry[V], gen uint64) {
	if c.l1 == nil {
		return
	}
	now := c.now()
	if c.localTTL > 0 {
		// No copy stays in L1 past LocalTTL, fresh or stale: the bound on
		// what a lost invalidation can cost (invariant 11).
		e.freshUntil = min(e.freshUntil, now+c.localTTL)
		e.staleUntil = min(e.staleUntil, now+c.localTTL)
	}
	if e.staleUntil <= now {
		return
	}
	c.l1mu.Lock()
	defer c.l1mu.Unlock()
	if c.gens.of(key) != gen {
		return
	}
	// No TTL for ristretto: its expiry check would read the clock a second
	// time on every hit. Entries carry their own deadlines; expired ones are
	// overwritten by the next fill or evicted by capacity.
	c.l1.Set(key, e, c.cost(e))
}

// cost is what e costs in L1 (Options.LocalCost).
func (c *Cache[V]) cost(e *localEntry[V]) int64 {
	if c.opts.LocalMaxCost <= 0 || c.opts.LocalCost == nil {
		return 1
	}
	return max(c.opts.LocalCost(e.v), 1)
}

// store puts e in L1 (if key's generation is still gen) and waits until L1
// has applied it: ristretto applies writes asynchronously, and after a load
// or a Set the next Get in this process must see the value.
func (c *Cache[V]) store(key string, e *localEntry[V], gen uint64) {
	if c.l1 == nil {
		return
	}
	c.setL1(key, e, gen)
	c.l1.Wait()
}

// invalidateL1 evicts key and makes fills of key in progress skip L1. It
// returns key's new generation, for a write that follows the invalidation.
func (c *Cache[V]) invalidateL1(key string) uint64 {
	if c.l1 == nil {
		return 0
	}
	c.l1mu.Lock()
	defer c.l1mu.Unlock()
	c.gens.stripe(key).Add(1)
	c.l1.Del(key)
	return c.gens.of(key)
}

// Why L1 was flushed (EventLocalFlush's Reason).
const (
	flushResubscribed = "resubscribed"   // the subscription was made again
	flushLostMessage  = "lost message"   // a gap in another node's messages
	flushSilent       = "silent"         // the subscription went silent
	flushCircuit      = "circuit closed" // Redis answered after an outage
	flushLostProbe    = "lost probe"     // tracking mode: a probe of this node's subscription never came
	flushUntracked    = "untracked"      // tracking mode: a tracked connection closed, taking what it tracked
	flushUnreadable   = "unreadable"     // tracking mode: a message that could not be read (FLUSHALL's among them)
	flushAsked        = "asked"          // FlushLocal
)

// flushL1 empties L1 and makes every fill in progress skip it: called when
// invalidations may have been lost (a resubscription, a gap in a
// publisher's sequence, a silent subscription, the circuit closing).
func (c *Cache[V]) flushL1(reason string) {
	if c.l1 == nil {
		return
	}
	c.noteTimed(c.closeCtx, EventLocalFlush, "", 0, reason, nil)
	c.l1mu.Lock()
	defer c.l1mu.Unlock()
	c.gens.epoch.Add(1)
	c.l1.Clear()
}

// FlushLocal empties this process's L1, so that every value is read from
// Redis again: after data was fixed in Redis by hand, or in a test that
// moved Redis's clock (miniredis FastForward; see package stampedetest).
// Other nodes are not told.
func (c *Cache[V]) FlushLocal() {
	if !c.enter() {
		return
	}
	defer c.wg.Done()
	c.flushL1(flushAsked)
}
