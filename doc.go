// Package stampede protects a database from cache stampedes across a fleet
// of servers sharing one Redis.
//
// # Cache
//
// When a hot key expires and every instance misses at once, a Cache makes
// the database see one query:
//
//   - L1: each process keeps decoded values in memory (ristretto); a fresh
//     one is returned in well under a microsecond.
//   - Redis: the value and its remaining TTL arrive in one round trip.
//     Freshness is judged by the Redis server's clock. A value near expiry
//     is refreshed early by one node (XFetch); a value past its TTL but
//     inside Options.Stale is served at once while one node rebuilds it.
//   - On a miss, one caller per process (single-flight) takes a rebuild
//     lease in Redis (SET NX PX with a 128-bit token). The winner loads on a
//     context detached from its callers, renews the lease while it loads,
//     and writes back with a script that stores the value only if its lease
//     still holds, then publishes "filled". Nodes that lost wait for that
//     message, re-checking every 50 ms in case it was missed.
//   - Set and Delete drop the lease, so a rebuild that started before them
//     can never overwrite their data, and evict L1 on every node that holds
//     the key. Where it can, Redis itself tracks which node read which key
//     and tells only those (Options.Invalidation); elsewhere every node
//     hears every write. Lost messages show (numbered messages, a probe of
//     the node's own, a pinged subscription) and flush L1;
//     Options.LocalTTL bounds the rest.
//   - Redis down is not an outage: Gets fall back to L1, single-flight and
//     the loader, and a circuit breaker keeps a dead Redis from costing a
//     timeout per request. Every Redis call runs under a deadline the
//     library keeps itself (Options.RedisTimeout), so a hung Redis is no
//     worse than a dead one.
//
// Get takes a plain loader; Fetch takes one that can set a value's TTL and
// stale window or refuse storage, and reports where the value came from.
// A Cache over a nil client is a single-process cache with the same API.
//
// # Locker
//
// The rebuild lease is also a standalone lock: Locker.Obtain, Lock.Refresh
// and Lock.Release, Locker.Do (which renews the lease while fn runs),
// Locker.RunOnce (a cron job once per window, fleet-wide),
// Locker.ObtainMany and Locker.Holder. Lock.Fence is a fencing token for
// the resources a lock guards.
//
// # HTTP
//
// Package httpcache puts the same pipeline in front of any http.Handler as
// a shared cache in the sense of RFC 9111.
//
// # Where things are
//
// The front door (Cache, New, Get, Fetch, Set, Delete, Close, Entry,
// Result) is stampede.go, its options options.go and its errors errors.go.
// A Get's way through the pipeline is in read.go (L1, the Redis read, the
// lease and the wait) and load.go (the loader call, the fenced write-back,
// background refreshes); GetMany and FetchMany are batch.go, with a
// batch's reads and leases in batchrun.go and its loads in batchload.go;
// stale.go judges freshness and serves stale copies
// and XFetch; local.go is L1, notify.go the pub/sub subscriptions and the
// waiters, gaps.go the detection of lost messages, invalidation.go the
// choice between broadcast and tracking, tracking.go tracking mode's
// start and its messages, trackdata.go the client of its tracked reads,
// tracksub.go its subscriptions and probes, breaker.go the circuit
// breaker, rediscall.go the Redis calls under the library's deadline,
// flight.go the in-process single-flight and the one place user code is
// called and its panics caught. The Locker is distlock.go, lockdo.go,
// lockonce.go and lockmany.go. Below internal/: the lease shared by both
// (lease), the stored entry's format (entry), every Lua script (lua), and
// the deadline for one Redis call (bounded).
package stampede
