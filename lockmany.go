package stampede

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ObtainMany takes the locks on all keys for ttl, or none. The keys are
// obtained one at a time in sorted order, each with the Locker's retry
// strategy, so two callers with overlapping key sets never wait on each
// other in a cycle; keys may live in different Cluster slots. If one key
// cannot be obtained, the locks already taken are released and the error
// (wrapping ErrNotObtained when the key was held) is returned.
//
// The returned locks are in the order of keys. When waiting for later keys
// took a third of ttl or more, every lease is extended to ttl before
// ObtainMany returns; if one ran out meanwhile, all are released and the
// error wraps ErrNotObtained. keys must be non-empty and free of
// duplicates.
func (l *Locker) ObtainMany(ctx context.Context, keys []string, ttl time.Duration) ([]*Lock, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: ObtainMany: no keys", ErrInvalidKey)
	}
	if err := checkLockTTL(ttl); err != nil {
		return nil, err
	}
	order := make([]int, len(keys))
	for i, key := range keys {
		if err := checkKey(key, MaxLockKeyLen); err != nil {
			return nil, err
		}
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(keys[a], keys[b]) })
	for i := 1; i < len(order); i++ {
		if keys[order[i]] == keys[order[i-1]] {
			return nil, fmt.Errorf("%w: ObtainMany: duplicate key %q", ErrInvalidKey, keys[order[i]])
		}
	}

	locks := make([]*Lock, len(keys))
	for n, i := range order {
		k, err := l.obtain(ctx, keys[i], ttl, l.retry)
		if err != nil {
			for _, j := range order[:n] {
				// A failed release only leaves the lease to expire.
				_ = locks[j].releaseDetached(ctx, ttl)
			}
			return nil, err
		}
		locks[i] = k
	}
	// The first leases ran while later keys were waited for: extend them
	// all to ttl, and if one ran out meanwhile, the set was never held.
	if time.Since(locks[order[0]].start) >= ttl/3 {
		for _, k := range locks {
			if err := k.Refresh(ctx, ttl); err != nil {
				for _, k := range locks {
					_ = k.releaseDetached(ctx, ttl)
				}
				if errors.Is(err, ErrLockNotHeld) {
					return nil, fmt.Errorf("%w: ObtainMany: a lease ran out while later keys were awaited: %w", ErrNotObtained, err)
				}
				return nil, err
			}
		}
	}
	return locks, nil
}
