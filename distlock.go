package stampede

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stampede-go/stampede/internal/bounded"
	"github.com/stampede-go/stampede/internal/lease"
	"github.com/stampede-go/stampede/internal/lua"
)

// The public Locker: a lease on any key, fenced, renewed by Do, used for
// cron guards by RunOnce (lockonce.go), taken on several keys at once by
// ObtainMany (lockmany.go). It is built on the lease in lease.go.

// MaxLockKeyLen is the longest key, in bytes, that a Locker accepts.
const MaxLockKeyLen = 1024

// DefaultLockNamespace is the key prefix used when LockerOptions.Namespace is
// empty.
const DefaultLockNamespace = "lock"

// LockerOptions configures a Locker. The zero value is ready to use.
type LockerOptions struct {
	// Namespace prefixes every Redis key the Locker writes: the lock for key
	// k lives at "<Namespace>:{k}", its fence counter at
	// "<Namespace>:{k}:fence" and RunOnce's done marker at
	// "<Namespace>:{k}:done", all in one Cluster hash slot. It must not
	// contain '{' or '}'. Default: "lock".
	Namespace string

	// Retry is the retry strategy of Obtain (unless an ObtainOption
	// overrides it), Do and ObtainMany. Default: ExponentialBackoff(8ms,
	// 512ms, 12), which gives up after roughly 1.5 to 3 seconds.
	Retry RetryStrategy

	// RunOnceTTL is the lease RunOnce holds, renewed every third of it,
	// while fn runs; it bounds how long a crashed run blocks the next
	// trigger. Default: the interval passed to RunOnce, at most 30 seconds.
	RunOnceTTL time.Duration

	// FenceRetention is how long a key's fence counter is kept after the
	// lock on it was last obtained, so that locks on many distinct keys do
	// not leave a counter each in Redis forever. Fences stay strictly
	// increasing after the counter expired too (see Lock.Fence). Default:
	// 7 days. Negative: counters never expire.
	FenceRetention time.Duration
}

// DefaultFenceRetention is the FenceRetention used when it is zero.
const DefaultFenceRetention = 7 * 24 * time.Hour

// Locker hands out Redis leases on arbitrary keys. It is safe for concurrent
// use and holds no goroutines of its own.
//
// A lock is a lease, not a guarantee: a holder paused for longer than the TTL
// (GC, swap, a stopped VM) or a Redis failover that loses the latest write
// can leave two processes believing they hold the same key. Guard resources
// outside Redis with Lock.Fence.
type Locker struct {
	rdb          redis.UniversalClient
	ns           string
	retry        RetryStrategy
	runOnceTTL   time.Duration
	retention    int64 // fence counter PX in ms; 0: forever
	ctxDeadlines bool  // rdb ends calls at their context's deadline
}

// NewLocker returns a Locker on rdb, which may be a single node, Sentinel or
// Cluster client.
func NewLocker(rdb redis.UniversalClient, opts LockerOptions) (*Locker, error) {
	if rdb == nil {
		return nil, fmt.Errorf("%w: NewLocker: nil Redis client", ErrInvalidOptions)
	}
	l := &Locker{rdb: rdb, ns: opts.Namespace, retry: opts.Retry, runOnceTTL: opts.RunOnceTTL, ctxDeadlines: bounded.HonorsContext(rdb)}
	switch r := opts.FenceRetention; {
	case r == 0:
		l.retention = DefaultFenceRetention.Milliseconds()
	case r > 0:
		l.retention = max(r.Milliseconds(), 1)
	}
	if l.ns == "" {
		l.ns = DefaultLockNamespace
	}
	if strings.ContainsAny(l.ns, "{}") {
		return nil, fmt.Errorf("%w: NewLocker: namespace %q contains a brace", ErrInvalidOptions, l.ns)
	}
	if l.retry == nil {
		l.retry = defaultRetry()
	}
	if l.runOnceTTL != 0 {
		if l.runOnceTTL < time.Millisecond {
			return nil, fmt.Errorf("%w: NewLocker: RunOnceTTL %v is below 1ms", ErrInvalidOptions, l.runOnceTTL)
		}
	}
	return l, nil
}

// lockKeys returns the Redis keys of one lock: the lease, the fence counter
// and RunOnce's done marker. The braces make them one hash slot. They cannot
// collide across keys: only leases end in '}', and a counter or marker names
// its key in full.
func (l *Locker) lockKeys(key string) (lock, fence, done string) {
	lock = l.ns + ":{" + key + "}"
	return lock, lock + ":fence", lock + ":done"
}

func checkLockTTL(ttl time.Duration) error {
	if ttl < time.Millisecond {
		return fmt.Errorf("%w: lock ttl %v is below 1ms", ErrInvalidOptions, ttl)
	}
	return nil
}

// ObtainOption changes how one Obtain call behaves.
type ObtainOption func(*obtainConfig)

type obtainConfig struct {
	retry RetryStrategy
}

// WithRetry makes Obtain use s instead of the Locker's strategy. A nil s
// means NoRetry.
func WithRetry(s RetryStrategy) ObtainOption {
	return func(c *obtainConfig) {
		if s == nil {
			s = NoRetry()
		}
		c.retry = s
	}
}

// Lock is a lease obtained from a Locker. Its methods are safe for
// concurrent use.
type Lock struct {
	l     *Locker
	key   string
	rkey  string // Redis key of the lease
	value string // the whole lease value; compared by Refresh and Release
	fence int64
	start time.Time // local time just before the obtaining request was sent

	released atomic.Bool // by Release; a second Release is not a re-sent one
}

// Obtain takes the lock on key for ttl. When the lock is held by someone
// else it retries according to the Locker's strategy or WithRetry, and
// returns an error wrapping ErrNotObtained when the strategy gives up or ctx
// ends (then the error also wraps ctx.Err()). Redis errors are returned as
// they are, without retrying.
//
// ttl is counted on the Redis server from the moment the lock is set and has
// millisecond precision; it must be at least 1ms.
func (l *Locker) Obtain(ctx context.Context, key string, ttl time.Duration, opts ...ObtainOption) (*Lock, error) {
	cfg := obtainConfig{retry: l.retry}
	for _, o := range opts {
		o(&cfg)
	}
	return l.obtain(ctx, key, ttl, cfg.retry)
}

func (l *Locker) obtain(ctx context.Context, key string, ttl time.Duration, retry RetryStrategy) (*Lock, error) {
	if err := checkKey(key, MaxLockKeyLen); err != nil {
		return nil, err
	}
	if err := checkLockTTL(ttl); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotObtained, err)
	}
	lockKey, fence, _ := l.lockKeys(key)
	value := lease.NewValue()
	keys := []string{lockKey, fence}
	ms := ttl.Milliseconds()
	var timer *time.Timer
	for n := 1; ; n++ {
		start := time.Now()
		var f int64
		err := l.acquire(ctx, lockKey, value, ttl, func(ctx context.Context) (bool, error) {
			var err error
			f, err = lua.Obtain.Run(ctx, l.rdb, keys, value, ms, l.retention).Int64()
			return f > 0, err
		})
		if err != nil {
			return nil, err
		}
		if f > 0 {
			return &Lock{l: l, key: key, rkey: lockKey, value: value, fence: f, start: start}, nil
		}
		wait, again := retry.Backoff(n)
		if !again {
			return nil, fmt.Errorf("%w: %q is held (%d attempts)", ErrNotObtained, key, n)
		}
		if timer == nil {
			timer = time.NewTimer(wait)
			defer timer.Stop()
		} else {
			timer.Reset(wait)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %q: %w", ErrNotObtained, key, ctx.Err())
		case <-timer.C:
		}
	}
}

// acquire runs an acquiring script (fn reports whether it took the lease)
// for as long as ctx lets it, whatever the client's own timeouts. A lease
// granted after the caller gave up, or whose answer was lost to ctx, is
// released again: nobody would ever use it, and it would block the key for
// its whole ttl.
func (l *Locker) acquire(ctx context.Context, lockKey, value string, ttl time.Duration, fn func(context.Context) (bool, error)) error {
	// Whoever settles first, the call answering or the caller giving up,
	// decides whether the answer is used; the other one releases what the
	// call may have taken. A release compares the whole lease value, so it
	// is harmless when nothing was taken.
	var settled atomic.Bool
	release := func(ctx context.Context) {
		rctx, cancel := detached(ctx, ttl)
		_, _ = lease.Release(rctx, l.rdb, lockKey, value)
		cancel()
	}
	err := bounded.Call(ctx, 0, l.ctxDeadlines, func(ctx context.Context) error {
		took, err := fn(ctx)
		if ctx.Err() == nil && settled.CompareAndSwap(false, true) {
			return err
		}
		if took || err != nil {
			release(ctx)
		}
		return fmt.Errorf("%w: %w", errAbandoned, context.Cause(ctx))
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errAbandoned) || ctx.Err() != nil:
		if settled.CompareAndSwap(false, true) {
			// The call has not answered: it releases when it does.
		} else if !errors.Is(err, errAbandoned) {
			release(ctx) // it answered, but too late to be used
		}
		return fmt.Errorf("%w: %w", ErrNotObtained, ctx.Err())
	}
	// A Redis error: the script may have run and its reply been lost.
	release(ctx)
	return err
}

// call runs a Redis call for as long as ctx lets it (see bounded).
func (l *Locker) call(ctx context.Context, fn func(context.Context) error) error {
	return bounded.Call(ctx, 0, l.ctxDeadlines, fn)
}

// Key returns the key the lock was obtained on, without namespace.
func (k *Lock) Key() string { return k.key }

// Token returns the lease's 128-bit random token in hex. It identifies this
// holder in logs and matches the token prefix reported by Locker.Holder.
func (k *Lock) Token() string { return k.value[:lease.TokenLen] }

// Fence returns the fencing token of this lease: a number strictly greater
// than that of every earlier holder of the same key. Pass it to the
// resource the lock guards and have the resource reject writes carrying a
// fence lower than one it has seen; that keeps a holder that was paused past
// its TTL from doing damage.
//
// A fence is max(the key's counter + 1, the Redis server's time in
// microseconds), taken in the step that takes the lock: it increases while
// the counter lives (LockerOptions.FenceRetention after the last
// acquisition), and after the counter expired as long as the server's
// clock has not stepped back. FLUSHDB, eviction, or a failover that loses
// the counter fall back on the same clock.
func (k *Lock) Fence() int64 { return k.fence }

// Refresh resets the lease's remaining time to ttl if the caller still holds
// it (compare-and-extend), and returns ErrLockNotHeld otherwise.
func (k *Lock) Refresh(ctx context.Context, ttl time.Duration) error {
	if err := checkLockTTL(ttl); err != nil {
		return err
	}
	var held bool
	err := k.l.call(ctx, func(ctx context.Context) error {
		var err error
		held, err = lease.Extend(ctx, k.l.rdb, k.rkey, k.value, ttl)
		return err
	})
	if err != nil {
		return err
	}
	if !held {
		return fmt.Errorf("%w: %q", ErrLockNotHeld, k.key)
	}
	return nil
}

// Release gives the lock up if the caller still holds it
// (compare-and-delete), and returns ErrLockNotHeld otherwise, including on a
// second call.
func (k *Lock) Release(ctx context.Context) error {
	if k.released.Load() {
		return fmt.Errorf("%w: %q was released already", ErrLockNotHeld, k.key)
	}
	var held bool
	err := k.l.call(ctx, func(ctx context.Context) error {
		var err error
		held, err = lease.Release(ctx, k.l.rdb, k.rkey, k.value)
		return err
	})
	if err != nil {
		return err
	}
	if !held {
		return fmt.Errorf("%w: %q", ErrLockNotHeld, k.key)
	}
	k.released.Store(true)
	return nil
}

// TTL returns the lease's remaining time as the Redis server counts it, or
// ErrLockNotHeld if the caller no longer holds it.
func (k *Lock) TTL(ctx context.Context) (time.Duration, error) {
	var ms int64
	err := k.l.call(ctx, func(ctx context.Context) error {
		var err error
		ms, err = lua.TTL.Run(ctx, k.l.rdb, []string{k.rkey}, k.value).Int64()
		return err
	})
	if err != nil {
		return 0, err
	}
	if ms < 0 {
		// -3: not ours; -2 cannot happen after a matching GET; -1 means
		// someone removed the expiry behind our back.
		if ms == -1 {
			return 0, fmt.Errorf("stampede: lock %q has no expiry", k.key)
		}
		return 0, fmt.Errorf("%w: %q", ErrLockNotHeld, k.key)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// LockHolder describes who holds a lock, for health endpoints and logs.
type LockHolder struct {
	// Host and PID identify the holder's process. They are empty and zero
	// when the lease value was not written by this package.
	Host string
	PID  int
	// TokenPrefix is the first 8 hex digits of the holder's token
	// (Lock.Token); enough to match a log line, too little to release
	// someone else's lock.
	TokenPrefix string
	// AcquiredAt is when the holder obtained the lock, by the holder's
	// clock. Refresh does not change it.
	AcquiredAt time.Time
	// TTL is the lease's remaining time, by the Redis server's clock.
	TTL time.Duration
	// Fence is the holder's fencing token (Lock.Fence).
	Fence int64
}

// Holder reports who holds the lock on key, read in one step. It returns
// ErrLockNotHeld when the lock is free.
func (l *Locker) Holder(ctx context.Context, key string) (LockHolder, error) {
	if err := checkKey(key, MaxLockKeyLen); err != nil {
		return LockHolder{}, err
	}
	lockKey, fence, _ := l.lockKeys(key)
	var vals []any
	err := l.call(ctx, func(ctx context.Context) error {
		var err error
		vals, err = lua.Holder.Run(ctx, l.rdb, []string{lockKey, fence}).Slice()
		return err
	})
	if errors.Is(err, redis.Nil) {
		return LockHolder{}, fmt.Errorf("%w: %q is free", ErrLockNotHeld, key)
	}
	if err != nil {
		return LockHolder{}, err
	}
	if len(vals) != 3 {
		return LockHolder{}, fmt.Errorf("stampede: Holder: unexpected script reply %v", vals)
	}
	value, _ := vals[0].(string)
	ms, _ := vals[1].(int64)
	fenceStr, _ := vals[2].(string)
	var h LockHolder
	if ms > 0 {
		h.TTL = time.Duration(ms) * time.Millisecond
	}
	h.Fence, _ = strconv.ParseInt(fenceStr, 10, 64)
	if m, ok := lease.Parse(value); ok {
		h.Host, h.PID, h.TokenPrefix, h.AcquiredAt = m.Host, m.PID, m.Token[:8], m.AcquiredAt
	}
	return h, nil
}
