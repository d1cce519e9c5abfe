package stampede

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/stampede-go/stampede/internal/lease"
	"github.com/stampede-go/stampede/internal/lua"
)

// RunOnce is a cron guard: fleet-wide, fn runs at most once per interval
// window, however many processes trigger it. Windows are the multiples of
// interval since the Unix epoch on the Redis server's clock, so triggers
// from hosts whose clocks disagree still agree on the window; trigger a
// little after the window starts (a cron schedule does).
//
// A trigger skips (ran is false, err nil) when the current window is already
// done or another run of name is in progress. Otherwise fn runs under the
// lock on name, renewed as in Do with a lease of LockerOptions.RunOnceTTL.
// The window is marked done only after fn returns nil; a run that fails,
// panics or whose process dies leaves it open, so the next trigger in the
// window runs fn again. ran is true whenever fn was called; err is then fn's
// error, joined as in Do with ErrLockNotHeld or a release error, or the
// error from marking the window done.
//
// name is a lock key: RunOnce excludes Obtain and Do on the same name.
func (l *Locker) RunOnce(ctx context.Context, name string, interval time.Duration, fn func(ctx context.Context) error) (ran bool, err error) {
	if fn == nil {
		return false, fmt.Errorf("%w: RunOnce was given a nil fn", ErrNilLoader)
	}
	if err := checkKey(name, MaxLockKeyLen); err != nil {
		return false, err
	}
	if interval < time.Millisecond {
		return false, fmt.Errorf("%w: RunOnce: interval %v is below 1ms", ErrInvalidOptions, interval)
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	ttl := l.runOnceTTL
	if ttl == 0 {
		ttl = min(interval, 30*time.Second)
	}
	lockKey, fence, done := l.lockKeys(name)
	value := lease.NewValue()
	start := time.Now()
	var res []int64
	err = l.acquire(ctx, lockKey, value, ttl, func(ctx context.Context) (bool, error) {
		var err error
		res, err = lua.RunOnce.Run(ctx, l.rdb, []string{lockKey, fence, done},
			value, ttl.Milliseconds(), interval.Milliseconds(), l.retention).Int64Slice()
		return err == nil && len(res) == 2 && res[0] > 0, err
	})
	if err != nil {
		return false, err
	}
	if len(res) != 2 {
		return false, fmt.Errorf("stampede: RunOnce: unexpected script reply %v", res)
	}
	f, window := res[0], res[1]
	if f <= 0 {
		return false, nil // done in this window (0) or running elsewhere (-1)
	}
	k := &Lock{l: l, key: name, rkey: lockKey, value: value, fence: f, start: start}
	markDone := func(ctx context.Context) error {
		// Kept for two windows: only equality with the current window
		// counts, so an old marker is harmless until it expires. Marked
		// only under the lease: a run that lost it leaves the window open.
		n, err := lua.Done.Run(ctx, l.rdb, []string{lockKey, done},
			value, strconv.FormatInt(window, 10), (2 * interval).Milliseconds()).Int64()
		switch {
		case err != nil:
			return fmt.Errorf("stampede: RunOnce: %q ran but could not be marked done: %w", name, err)
		case n == 0:
			return fmt.Errorf("%w: RunOnce: %q ran but its lease was lost; the window stays open", ErrLockNotHeld, name)
		}
		return nil
	}
	return true, k.hold(ctx, ttl, fn, markDone)
}
