// Package lua holds every Lua script the module runs, embedded from the
// .lua files beside this one. Each file opens with its KEYS, its ARGV and
// what it returns. All keys of one call share a hash slot, so every script
// runs on Redis Cluster.
package lua

import (
	_ "embed" // the scripts

	"github.com/redis/go-redis/v9"
)

// The cache's rebuild lease and writes.
var (
	// Lock reads a value or takes the rebuild lease (rebuild.lua,
	// lock.lua).
	Lock = redis.NewScript(rebuildSrc + lockSrc)
	// Fill writes a value back under the lease, then drops it and
	// publishes (rebuild.lua, fill.lua).
	Fill = redis.NewScript(rebuildSrc + fillSrc)
	// LockMany is Lock for many keys of one hash slot (lock_many.lua).
	LockMany = redis.NewScript(rebuildSrc + lockManySrc)
	// FillMany is Fill for many keys of one hash slot (fill_many.lua).
	FillMany = redis.NewScript(rebuildSrc + fillManySrc)
	// Write is Set and Delete: write or delete, drop the lease, publish
	// (write.lua).
	Write = redis.NewScript(writeSrc)
	// TrackCheck reads a key from a script, for New's check that such
	// reads are tracked (track_check.lua).
	TrackCheck = redis.NewScript(trackCheckSrc)
)

// The lease primitives shared by the cache and the Locker.
var (
	// Extend is compare-and-extend (extend.lua).
	Extend = redis.NewScript(extendSrc)
	// Release is compare-and-delete (release.lua).
	Release = redis.NewScript(releaseSrc)
	// ExtendMany is Extend for many leases of one value and one hash slot
	// (extend_many.lua).
	ExtendMany = redis.NewScript(extendManySrc)
)

// The Locker.
var (
	// Obtain takes a lock and raises its fence (take.lua, lock_obtain.lua).
	Obtain = redis.NewScript(takeSrc + lockObtainSrc)
	// TTL is a lock's remaining time, for its holder (lock_ttl.lua).
	TTL = redis.NewScript(lockTTLSrc)
	// Holder reads who holds a lock (lock_holder.lua).
	Holder = redis.NewScript(lockHolderSrc)
	// RunOnce starts a window's run (take.lua, lock_runonce.lua).
	RunOnce = redis.NewScript(takeSrc + lockRunOnceSrc)
	// Done marks a window done under the lease (lock_done.lua).
	Done = redis.NewScript(lockDoneSrc)
)

var (
	//go:embed rebuild.lua
	rebuildSrc string
	//go:embed lock.lua
	lockSrc string
	//go:embed lock_many.lua
	lockManySrc string
	//go:embed fill_many.lua
	fillManySrc string
	//go:embed extend_many.lua
	extendManySrc string
	//go:embed fill.lua
	fillSrc string
	//go:embed write.lua
	writeSrc string
	//go:embed track_check.lua
	trackCheckSrc string
	//go:embed extend.lua
	extendSrc string
	//go:embed release.lua
	releaseSrc string
	//go:embed take.lua
	takeSrc string
	//go:embed lock_obtain.lua
	lockObtainSrc string
	//go:embed lock_ttl.lua
	lockTTLSrc string
	//go:embed lock_holder.lua
	lockHolderSrc string
	//go:embed lock_runonce.lua
	lockRunOnceSrc string
	//go:embed lock_done.lua
	lockDoneSrc string
)
