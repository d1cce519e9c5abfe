package stampede

import (
	"context"
	"errors"
	"fmt"
)

// Errors returned by the cache. Check them with errors.Is.
var (
	// ErrNotFound is returned by a loader to say the key has no value. It is
	// cached as a short tombstone (Options.NotFoundTTL) and returned to callers.
	ErrNotFound = errors.New("stampede: not found")
	// ErrWaitTimeout: another node's rebuild did not land within
	// Options.WaitTimeout and the policy is WaitReturnError.
	ErrWaitTimeout = errors.New("stampede: timed out waiting for another node's rebuild")
	// ErrInvalidKey: the key is empty, longer than Options.MaxKeyLen (a
	// lock key: MaxLockKeyLen), or starts with '}' (which would split its
	// Redis keys across hash slots); or ObtainMany got no key, or one twice.
	ErrInvalidKey = errors.New("stampede: invalid key")
	// ErrNilLoader: Get or Fetch was called with a nil loader, or Do or
	// RunOnce with a nil fn.
	ErrNilLoader = errors.New("stampede: nil loader")
	// ErrInvalidOptions: New or NewLocker was given options that make no
	// sense, or a Locker call a ttl or interval below a millisecond.
	ErrInvalidOptions = errors.New("stampede: invalid options")
	// ErrRedisUnavailable wraps the errors of a Redis that cannot be
	// reached, hangs or refuses every key: from Get and Fetch with
	// FailClosed, and from Set and Delete always.
	ErrRedisUnavailable = errors.New("stampede: redis unavailable")
	// ErrClosed: the cache was closed.
	ErrClosed = errors.New("stampede: cache closed")
)

// errCircuitOpen is returned, with FailClosed, while the circuit is open.
var errCircuitOpen = fmt.Errorf("%w: circuit open after recent errors", ErrRedisUnavailable)

// keyError is a reply error about one key: a wrong type, a script error on
// its data. It is counted and reported like a corrupt entry.
type keyError struct {
	key string
	err error
}

func (e *keyError) Error() string { return fmt.Sprintf("stampede: key %q: %v", e.key, e.err) }

func (e *keyError) Unwrap() error { return e.err }

// corrupt notes an entry that could not be used (EventCorrupt); the
// caller treats it as a miss and the next fill overwrites it.
func (c *Cache[V]) corrupt(ctx context.Context, key string, err error) {
	c.noteErr(ctx, EventCorrupt, key, err)
}

// noteKeyError notes a reply error about key like a corrupt entry.
func (c *Cache[V]) noteKeyError(ctx context.Context, key string, err error) {
	var ke *keyError
	if errors.As(err, &ke) {
		c.corrupt(ctx, key, err)
	}
}

var (
	// ErrNotObtained is returned by Obtain, Do and ObtainMany when the lock
	// is held by someone else and the retry strategy gave up.
	ErrNotObtained = errors.New("stampede: lock not obtained")

	// ErrLockNotHeld is returned when a lease is no longer held by the
	// caller: Refresh, Release and TTL after the lock expired, was released
	// or was taken over; Do and RunOnce when the lease was lost while fn
	// ran; Holder when nobody holds the lock.
	ErrLockNotHeld = errors.New("stampede: lock not held")
)

// errAbandoned: the caller gave up before its lease was granted; the lease
// was released again.
var errAbandoned = errors.New("stampede: lock request abandoned")
