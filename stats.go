package stampede

import "sync/atomic"

// Stats are a cache's counters since New. They only grow, except
// Invalidation, which is not a counter.
type Stats struct {
	Invalidation       Invalidation // the mode New chose: InvalidateBroadcast or InvalidateTracking (InvalidateAuto without Redis)
	LocalHits          uint64       // fresh values served from L1
	RedisHits          uint64       // fresh values read from Redis (callers sharing one read count once)
	Misses             uint64       // reads that found no usable value and led a rebuild
	Loads              uint64       // loader calls made by this process
	StaleServed        uint64       // stale copies served while a refresh ran (callers sharing one read count once)
	EarlyRefreshes     uint64       // XFetch and stale refreshes that won the lease and loaded
	LockWon            uint64       // rebuild leases taken
	LockContended      uint64       // times another node held the lease and this one waited
	WokenByNotify      uint64       // waits ended by the "filled" notification
	WokenByRecheck     uint64       // waits ended by the periodic re-check
	LeaseRenewals      uint64       // successful lease extensions during slow loads
	LeasesLost         uint64       // leases found gone at renewal (Set, Delete, or expiry)
	WriteBacksRejected uint64       // write-backs refused because the lease no longer held
	RedisErrors        uint64       // Redis operations that failed
	LoaderPanics       uint64       // loader calls that panicked or called runtime.Goexit
	Corrupt            uint64       // entries in Redis that could not be used: undecodable, wrong type (served as misses)
	LocalFlushes       uint64       // L1 emptied because invalidations may have been lost (resubscription, a gap in a node's messages, a silent subscription, a lost probe, a tracked connection closed, the circuit closing)
	Messages           uint64       // invalidation messages received about a key: in broadcast mode every Set, Delete and fill of the fleet, in tracking mode those about keys this node read
}

// counters are the atomics behind Stats: one per event kind, and the few
// that say more than an event's kind.
type counters struct {
	n                                                       [numEventKinds]atomic.Uint64
	earlyRefreshes, wokenByNotify, wokenByRecheck, messages atomic.Uint64
}

// Stats returns a snapshot of the cache's counters.
func (c *Cache[V]) Stats() Stats {
	s := &c.stats
	return Stats{
		Invalidation: c.mode,
		LocalHits:    s.n[EventLocalHit].Load(), RedisHits: s.n[EventRedisHit].Load(), Misses: s.n[EventMiss].Load(),
		Loads: s.n[EventLoadStart].Load(), StaleServed: s.n[EventStale].Load(), EarlyRefreshes: s.earlyRefreshes.Load(),
		LockWon: s.n[EventLeaseWon].Load(), LockContended: s.n[EventLeaseContended].Load(),
		WokenByNotify: s.wokenByNotify.Load(), WokenByRecheck: s.wokenByRecheck.Load(),
		LeaseRenewals: s.n[EventLeaseRenewed].Load(), LeasesLost: s.n[EventLeaseLost].Load(),
		WriteBacksRejected: s.n[EventWriteBackRejected].Load(), RedisErrors: s.n[EventRedisError].Load(),
		LoaderPanics: s.n[EventLoaderPanic].Load(), Corrupt: s.n[EventCorrupt].Load(), LocalFlushes: s.n[EventLocalFlush].Load(),
		Messages: s.messages.Load(),
	}
}
