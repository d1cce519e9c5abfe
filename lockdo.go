package stampede

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stampede-go/stampede/internal/lease"
)

// detached returns a context for clean-up work that must happen even when
// the caller has given up: ctx's values without its cancellation, bounded by
// the lease's ttl (after which a lease expires anyway) but at least a second.
func detached(ctx context.Context, ttl time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), max(ttl, time.Second))
}

// releaseDetached releases k on a detached context.
func (k *Lock) releaseDetached(ctx context.Context, ttl time.Duration) error {
	rctx, cancel := detached(ctx, ttl)
	defer cancel()
	return k.Release(rctx)
}

// Do obtains the lock on key for ttl (retrying as LockerOptions.Retry says),
// runs fn, and releases the lock when fn returns.
//
// While fn runs the lease is renewed every ttl/3, so fn may take longer than
// ttl. fn's context is cancelled, with a cause wrapping ErrLockNotHeld, as
// soon as a renewal finds the lease gone, or when renewals have failed for
// two thirds of ttl, so before the lease can run out unseen. fn's context is
// also cancelled when ctx is.
//
// Do returns fn's error, joined with an error wrapping ErrLockNotHeld if the
// lease was lost while fn ran, and with the release error if releasing
// failed. If fn panics or calls runtime.Goexit, Do stops renewing, releases
// the lock and lets the panic continue unchanged, with its original value
// and stack.
func (l *Locker) Do(ctx context.Context, key string, ttl time.Duration, fn func(ctx context.Context) error) error {
	if fn == nil {
		return fmt.Errorf("%w: Do was given a nil fn", ErrNilLoader)
	}
	k, err := l.obtain(ctx, key, ttl, l.retry)
	if err != nil {
		return err
	}
	return k.hold(ctx, ttl, fn, nil)
}

// hold runs fn while renewing k every ttl/3, then releases k. If fn returns
// nil, onSuccess (if any) runs before the release, so nobody can obtain the
// lock between the two. The release
// runs also when fn panics; the panic is not recovered.
func (k *Lock) hold(ctx context.Context, ttl time.Duration, fn func(context.Context) error, onSuccess func(context.Context) error) (err error) {
	fnCtx, cancelFn := context.WithCancelCause(ctx)
	// The renewer ignores ctx's cancellation: fn may still be winding down
	// and must keep the lease until it returns.
	renewCtx, stopRenew := context.WithCancel(context.WithoutCancel(ctx))
	var lost error // written by the renewer before it exits
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		lost = k.renew(renewCtx, ttl)
		if lost != nil {
			cancelFn(lost)
		}
	}()

	returned := false // false in the deferred call means fn panicked or called Goexit
	defer func() {
		stopRenew()
		<-renewed
		cancelFn(nil)
		if returned && err == nil && lost == nil && onSuccess != nil {
			sctx, cancel := detached(ctx, ttl)
			err = onSuccess(sctx)
			cancel()
		}
		if lost != nil {
			err = errors.Join(err, lost)
			return // the lease is gone; releasing it would only fail
		}
		if rerr := k.releaseDetached(ctx, ttl); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()
	err = fn(context.WithValue(fnCtx, lockCtxKey{}, k))
	returned = true
	return err
}

type lockCtxKey struct{}

// LockFromContext returns the lock held for the fn that Do or RunOnce is
// running, for its Fence: pass the fence with every write to the resource
// the lock guards, so that the resource can refuse a holder whose lease ran
// out without its knowing.
func LockFromContext(ctx context.Context) (*Lock, bool) {
	k, ok := ctx.Value(lockCtxKey{}).(*Lock)
	return k, ok
}

// renew keeps k until ctx ends (see lease.Keep), and returns an error
// wrapping ErrLockNotHeld when it could not.
func (k *Lock) renew(ctx context.Context, ttl time.Duration) error {
	if err := lease.Keep(ctx, k.l.rdb, k.rkey, k.value, ttl, k.start, k.l.ctxDeadlines, nil); err != nil {
		return fmt.Errorf("%w: %w", ErrLockNotHeld, err)
	}
	return nil
}
