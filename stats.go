package stampede

import (
	"sync/atomic"
	"time"
)

// Stats are a cache's counters since New. They only grow.
type Stats struct {
	LocalHits          uint64 // fresh values served from L1
	RedisHits          uint64 // fresh values read from Redis (callers sharing one read count once)
	Misses             uint64 // reads that found no usable value and led a rebuild
	Loads              uint64 // loader calls made by this process
	StaleServed        uint64 // stale copies served while a refresh ran (callers sharing one read count once)
	EarlyRefreshes     uint64 // XFetch and stale refreshes that won the lease and loaded
	LockWon            uint64 // rebuild leases taken
	LockContended      uint64 // times another node held the lease and this one waited
	WokenByNotify      uint64 // waits ended by the "filled" notification
	WokenByRecheck     uint64 // waits ended by the periodic re-check
	LeaseRenewals      uint64 // successful lease extensions during slow loads
	LeasesLost         uint64 // leases found gone at renewal (Set, Delete, or expiry)
	WriteBacksRejected uint64 // write-backs refused because the lease no longer held
	RedisErrors        uint64 // Redis operations that failed
	LoaderPanics       uint64 // loader calls that panicked or called runtime.Goexit
	Corrupt            uint64 // entries in Redis that could not be decoded (served as misses)
}

type counters struct {
	localHits, redisHits, misses, loads, staleServed, earlyRefreshes,
	lockWon, lockContended, wokenByNotify, wokenByRecheck, leaseRenewals,
	leasesLost, writeBacksRejected, redisErrors, loaderPanics, corrupt atomic.Uint64
}

// Stats returns a snapshot of the cache's counters.
func (c *Cache[V]) Stats() Stats {
	s := &c.stats
	return Stats{
		LocalHits: s.localHits.Load(), RedisHits: s.redisHits.Load(), Misses: s.misses.Load(),
		Loads: s.loads.Load(), StaleServed: s.staleServed.Load(), EarlyRefreshes: s.earlyRefreshes.Load(),
		LockWon: s.lockWon.Load(), LockContended: s.lockContended.Load(),
		WokenByNotify: s.wokenByNotify.Load(), WokenByRecheck: s.wokenByRecheck.Load(),
		LeaseRenewals: s.leaseRenewals.Load(), LeasesLost: s.leasesLost.Load(),
		WriteBacksRejected: s.writeBacksRejected.Load(), RedisErrors: s.redisErrors.Load(),
		LoaderPanics: s.loaderPanics.Load(), Corrupt: s.corrupt.Load(),
	}
}

// breaker is the circuit that keeps a dead Redis from costing a timeout per
// request (invariant 8): after an error, Redis is skipped for cooldown; then
// a single caller probes it, and a success closes the circuit.
type breaker struct {
	cooldown  time.Duration
	openUntil atomic.Int64 // on the cache's clock, in ns; 0: closed
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

func (b *breaker) trip(now time.Duration) {
	b.openUntil.Store(int64(now + b.cooldown))
}

func (b *breaker) success() {
	if b.openUntil.Load() != 0 {
		b.openUntil.Store(0)
	}
}
