package stampede

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/redis/go-redis/v9"

	"github.com/stampede-go/stampede/internal/lease"
	"github.com/stampede-go/stampede/internal/redistest"
)

// testCtx bounds a test so that a hang fails it instead of the whole run.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func newTestLocker(t testing.TB, rdb redis.UniversalClient, opts LockerOptions) *Locker {
	t.Helper()
	l, err := NewLocker(rdb, opts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// patient retries for far longer than any test needs, still bounded.
var patient = ExponentialBackoff(time.Millisecond, 20*time.Millisecond, 1_000_000)

func TestLockerBadInput(t *testing.T) {
	// Nothing here may reach Redis: the client points at a closed port.
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := testCtx(t)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	noop := func(context.Context) error { return nil }

	_, err := NewLocker(nil, LockerOptions{})
	require.ErrorIs(t, err, ErrInvalidOptions, "NewLocker(nil)")
	for _, ns := range []string{"a{b", "a}b", "{x}"} {
		_, err := NewLocker(rdb, LockerOptions{Namespace: ns})
		require.ErrorIs(t, err, ErrInvalidOptions, "namespace %q", ns)
	}
	_, err = NewLocker(rdb, LockerOptions{RunOnceTTL: -time.Second})
	require.ErrorIs(t, err, ErrInvalidOptions, "negative RunOnceTTL")
	l := newTestLocker(t, rdb, LockerOptions{})

	long := strings.Repeat("k", MaxLockKeyLen+1)
	tests := []struct {
		name string
		call func() error
		is   error  // the sentinel the error wraps
		want string // and a substring of it
	}{
		{"empty key", func() error { _, err := l.Obtain(ctx, "", time.Second); return err }, ErrInvalidKey, "empty key"},
		{"long key", func() error { _, err := l.Obtain(ctx, long, time.Second); return err }, ErrInvalidKey, "longer than 1024"},
		{"key starting with brace", func() error { _, err := l.Obtain(ctx, "}a", time.Second); return err }, ErrInvalidKey, "starts with '}'"},
		{"zero ttl", func() error { _, err := l.Obtain(ctx, "k", 0); return err }, ErrInvalidOptions, "below 1ms"},
		{"negative ttl", func() error { _, err := l.Obtain(ctx, "k", -time.Second); return err }, ErrInvalidOptions, "below 1ms"},
		{"sub-millisecond ttl", func() error { _, err := l.Obtain(ctx, "k", time.Microsecond); return err }, ErrInvalidOptions, "below 1ms"},
		{"cancelled ctx", func() error { _, err := l.Obtain(cancelled, "k", time.Second); return err }, context.Canceled, "context canceled"},
		{"Do nil fn", func() error { return l.Do(ctx, "k", time.Second, nil) }, ErrNilLoader, "nil fn"},
		{"Do empty key", func() error { return l.Do(ctx, "", time.Second, noop) }, ErrInvalidKey, "empty key"},
		{"Do zero ttl", func() error { return l.Do(ctx, "k", 0, noop) }, ErrInvalidOptions, "below 1ms"},
		{"Do cancelled ctx", func() error { return l.Do(cancelled, "k", time.Second, noop) }, context.Canceled, "context canceled"},
		{"RunOnce nil fn", func() error { _, err := l.RunOnce(ctx, "k", time.Second, nil); return err }, ErrNilLoader, "nil fn"},
		{"RunOnce empty name", func() error { _, err := l.RunOnce(ctx, "", time.Second, noop); return err }, ErrInvalidKey, "empty key"},
		{"RunOnce zero interval", func() error { _, err := l.RunOnce(ctx, "k", 0, noop); return err }, ErrInvalidOptions, "below 1ms"},
		{"RunOnce cancelled ctx", func() error { _, err := l.RunOnce(cancelled, "k", time.Second, noop); return err }, context.Canceled, "context canceled"},
		{"ObtainMany no keys", func() error { _, err := l.ObtainMany(ctx, nil, time.Second); return err }, ErrInvalidKey, "no keys"},
		{"ObtainMany duplicate", func() error { _, err := l.ObtainMany(ctx, []string{"a", "b", "a"}, time.Second); return err }, ErrInvalidKey, `duplicate key "a"`},
		{"ObtainMany empty key", func() error { _, err := l.ObtainMany(ctx, []string{"a", ""}, time.Second); return err }, ErrInvalidKey, "empty key"},
		{"ObtainMany zero ttl", func() error { _, err := l.ObtainMany(ctx, []string{"a"}, 0); return err }, ErrInvalidOptions, "below 1ms"},
		{"ObtainMany cancelled ctx", func() error { _, err := l.ObtainMany(cancelled, []string{"a"}, time.Second); return err }, context.Canceled, "context canceled"},
		{"Holder empty key", func() error { _, err := l.Holder(ctx, ""); return err }, ErrInvalidKey, "empty key"},
		{"Refresh zero ttl", func() error { return (&Lock{l: l, key: "k"}).Refresh(ctx, 0) }, ErrInvalidOptions, "below 1ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			require.ErrorIs(t, err, tt.is)
			require.ErrorContains(t, err, tt.want)
			if !errors.Is(err, context.Canceled) {
				require.True(t, strings.HasPrefix(err.Error(), "stampede: "), "error %q lacks the package prefix", err)
			}
		})
	}
}

func TestLockObtainReleaseFence(t *testing.T) {
	ctx := testCtx(t)
	rdb := redistest.Start(t).Client(t)
	l := newTestLocker(t, rdb, LockerOptions{})

	a, err := l.Obtain(ctx, "job", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if a.Key() != "job" || len(a.Token()) != lease.TokenLen || a.Fence() < 1 {
		t.Errorf("got key %q token %q fence %d; want job, %d hex digits, a fence", a.Key(), a.Token(), a.Fence(), lease.TokenLen)
	}
	// The documented layout: one hash slot, namespace "lock".
	if v := rdb.Get(ctx, "lock:{job}").Val(); v[:lease.TokenLen] != a.Token() {
		t.Errorf("lock:{job} holds %q, want token %s", v, a.Token())
	}
	if f := rdb.Get(ctx, "lock:{job}:fence").Val(); f != strconv.FormatInt(a.Fence(), 10) {
		t.Errorf("lock:{job}:fence = %q, want %d", f, a.Fence())
	}
	if d := rdb.PTTL(ctx, "lock:{job}:fence").Val(); d <= DefaultFenceRetention-time.Minute || d > DefaultFenceRetention {
		t.Errorf("the fence counter expires in %v, want FenceRetention (%v)", d, DefaultFenceRetention)
	}
	if ttl, err := a.TTL(ctx); err != nil || ttl <= 0 || ttl > time.Minute {
		t.Errorf("TTL = %v, %v; want within (0, 1m]", ttl, err)
	}

	if _, err := l.Obtain(ctx, "job", time.Minute, WithRetry(NoRetry())); !errors.Is(err, ErrNotObtained) {
		t.Fatalf("second Obtain: got %v, want ErrNotObtained", err)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := l.Obtain(ctx, "job", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if b.Fence() <= a.Fence() || b.Token() == a.Token() {
		t.Errorf("next holder: fence %d token %s; want fence > %d and a new token", b.Fence(), b.Token(), a.Fence())
	}
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}

	// Another namespace is another set of locks.
	other := newTestLocker(t, rdb, LockerOptions{Namespace: "jobs:v2"})
	c, err := other.Obtain(ctx, "job", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if c.Fence() < 1 || rdb.Exists(ctx, "jobs:v2:{job}", "jobs:v2:{job}:fence").Val() != 2 {
		t.Errorf("namespace jobs:v2: fence %d, keys %v", c.Fence(), rdb.Keys(ctx, "*").Val())
	}
}

// Keys with braces inside are ordinary keys: each has its own lease and
// fence, and no key's lease is another key's counter or marker.
func TestLockKeysWithBraces(t *testing.T) {
	ctx := testCtx(t)
	rdb := redistest.StartCluster(t).Client(t)
	l := newTestLocker(t, rdb, LockerOptions{})
	keys := []string{"a", "a}", "a}:fence", "a}:done", "a}:released", "{a}", "a{", "x}y}z"}
	fences := map[string]int64{}
	for _, key := range keys {
		k, err := l.Obtain(ctx, key, time.Minute, WithRetry(NoRetry()))
		if err != nil {
			t.Fatalf("Obtain(%q): %v", key, err)
		}
		fences[key] = k.Fence()
		if ran, err := l.RunOnce(ctx, key+"-cron", time.Hour, func(context.Context) error { return nil }); !ran || err != nil {
			t.Errorf("RunOnce(%q): ran %v err %v", key+"-cron", ran, err)
		}
	}
	for _, key := range keys {
		if h, err := l.Holder(ctx, key); err != nil || h.Fence != fences[key] {
			t.Errorf("Holder(%q) = %+v, %v; want its own fence %d", key, h, err, fences[key])
		}
	}
}

func TestLockForeignTokenCannotReleaseOrExtend(t *testing.T) {
	ctx := testCtx(t)
	l := newTestLocker(t, redistest.Start(t).Client(t), LockerOptions{})
	own, err := l.Obtain(ctx, "acct:7", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Another holder's view of the same key: a different value, and the
	// same token with other metadata.
	for _, value := range []string{lease.NewValue(), own.Token() + "|elsewhere|1|1"} {
		foreign := &Lock{l: l, key: own.key, rkey: own.rkey, value: value}
		if err := foreign.Release(ctx); !errors.Is(err, ErrLockNotHeld) {
			t.Errorf("foreign Release: got %v, want ErrLockNotHeld", err)
		}
		if err := foreign.Refresh(ctx, time.Hour); !errors.Is(err, ErrLockNotHeld) {
			t.Errorf("foreign Refresh: got %v, want ErrLockNotHeld", err)
		}
		if _, err := foreign.TTL(ctx); !errors.Is(err, ErrLockNotHeld) {
			t.Errorf("foreign TTL: got %v, want ErrLockNotHeld", err)
		}
	}
	ttl, err := own.TTL(ctx)
	if err != nil || ttl > 10*time.Second {
		t.Fatalf("owner's TTL = %v, %v after foreign calls; want still held, <= 10s", ttl, err)
	}
	if err := own.Refresh(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	if ttl, _ := own.TTL(ctx); ttl <= 10*time.Second {
		t.Errorf("TTL after Refresh(1h) = %v", ttl)
	}
	if err := own.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestLockReleaseTwice(t *testing.T) {
	ctx := testCtx(t)
	l := newTestLocker(t, redistest.Start(t).Client(t), LockerOptions{})
	k, err := l.Obtain(ctx, "k", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := k.Release(ctx); !errors.Is(err, ErrLockNotHeld) {
		t.Errorf("second Release: got %v, want ErrLockNotHeld", err)
	}
	if err := k.Refresh(ctx, time.Minute); !errors.Is(err, ErrLockNotHeld) {
		t.Errorf("Refresh after Release: got %v, want ErrLockNotHeld", err)
	}
	if _, err := k.TTL(ctx); !errors.Is(err, ErrLockNotHeld) {
		t.Errorf("TTL after Release: got %v, want ErrLockNotHeld", err)
	}
}

// countingRetry counts Backoff calls and retries without waiting.
type countingRetry struct {
	calls    atomic.Int64
	attempts int
}

func (c *countingRetry) Backoff(n int) (time.Duration, bool) {
	c.calls.Add(1)
	return time.Millisecond, n < c.attempts
}

func TestObtainRetryIsBounded(t *testing.T) {
	ctx := testCtx(t)
	l := newTestLocker(t, redistest.Start(t).Client(t), LockerOptions{})
	held, err := l.Obtain(ctx, "busy", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release(ctx)

	r := &countingRetry{attempts: 5}
	_, err = l.Obtain(ctx, "busy", time.Minute, WithRetry(r))
	if !errors.Is(err, ErrNotObtained) || !strings.Contains(err.Error(), "5 attempts") {
		t.Errorf("got %v, want ErrNotObtained after 5 attempts", err)
	}
	if got := r.calls.Load(); got != 5 {
		t.Errorf("Backoff called %d times, want 5", got)
	}

	// The default strategy gives up on its own too.
	if _, err := l.Obtain(ctx, "busy", time.Minute); !errors.Is(err, ErrNotObtained) {
		t.Errorf("default strategy: got %v, want ErrNotObtained", err)
	}

	// ctx ends the wait before the strategy does, and the error says both.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = l.Obtain(short, "busy", time.Minute, WithRetry(ConstantBackoff(time.Hour, 2)))
	if !errors.Is(err, ErrNotObtained) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want ErrNotObtained and DeadlineExceeded", err)
	}
}

func TestObtainRetryGetsReleasedLock(t *testing.T) {
	ctx := testCtx(t)
	l := newTestLocker(t, redistest.Start(t).Client(t), LockerOptions{})
	held, err := l.Obtain(ctx, "k", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		_ = held.Release(ctx)
	}()
	k, err := l.Obtain(ctx, "k", time.Minute, WithRetry(patient))
	if err != nil {
		t.Fatal(err)
	}
	if k.Fence() <= held.Fence() {
		t.Errorf("fence %d, want more than %d", k.Fence(), held.Fence())
	}
}

func TestHolder(t *testing.T) {
	ctx := testCtx(t)
	rdb := redistest.Start(t).Client(t)
	l := newTestLocker(t, rdb, LockerOptions{})
	if _, err := l.Holder(ctx, "k"); !errors.Is(err, ErrLockNotHeld) {
		t.Fatalf("Holder of a free lock: got %v, want ErrLockNotHeld", err)
	}
	before := time.Now().Truncate(time.Millisecond)
	k, err := l.Obtain(ctx, "k", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	h, err := l.Holder(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if h.Host != lease.Host() || h.PID != os.Getpid() || h.TokenPrefix != k.Token()[:8] || h.Fence != k.Fence() {
		t.Errorf("Holder = %+v; want host %q pid %d token prefix %s fence %d", h, lease.Host(), os.Getpid(), k.Token()[:8], k.Fence())
	}
	if h.AcquiredAt.Before(before) || h.AcquiredAt.After(time.Now()) {
		t.Errorf("AcquiredAt %v, want between %v and now", h.AcquiredAt, before)
	}
	if h.TTL <= 0 || h.TTL > time.Minute {
		t.Errorf("TTL %v, want within (0, 1m]", h.TTL)
	}

	// A value written by something else still reports TTL and fence.
	if err := rdb.Set(ctx, "lock:{raw}", "someone", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	h, err = l.Holder(ctx, "raw")
	if err != nil || h.Host != "" || h.TTL <= 0 {
		t.Errorf("Holder of a foreign value = %+v, %v", h, err)
	}
}

func TestDoKeepsLeaseBeyondTTL(t *testing.T) {
	ctx := testCtx(t)
	l := newTestLocker(t, redistest.Start(t).Client(t), LockerOptions{})
	const ttl = 300 * time.Millisecond
	var checks int
	err := l.Do(ctx, "slow", ttl, func(ctx context.Context) error {
		// Run for several TTLs; nobody else may get the lock meanwhile.
		end := time.Now().Add(4 * ttl)
		for time.Now().Before(end) {
			if _, err := l.Obtain(ctx, "slow", ttl, WithRetry(NoRetry())); !errors.Is(err, ErrNotObtained) {
				return fmt.Errorf("rival Obtain while Do runs: %v", err)
			}
			checks++
			time.Sleep(ttl / 5)
		}
		return ctx.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	if checks == 0 {
		t.Fatal("fn made no checks")
	}
	if _, err := l.Holder(ctx, "slow"); !errors.Is(err, ErrLockNotHeld) {
		t.Errorf("after Do: Holder = %v, want the lock released", err)
	}
}

func TestDoCancelsFnWhenLeaseLost(t *testing.T) {
	ctx := testCtx(t)
	rdb := redistest.Start(t).Client(t)
	l := newTestLocker(t, rdb, LockerOptions{})
	const ttl = 3 * time.Second
	const interval = ttl / 3
	var deleted time.Time
	var waited time.Duration
	err := l.Do(ctx, "k", ttl, func(fnCtx context.Context) error {
		if err := rdb.Del(ctx, "lock:{k}").Err(); err != nil {
			return err
		}
		deleted = time.Now()
		select {
		case <-fnCtx.Done():
			waited = time.Since(deleted)
		case <-time.After(ttl + interval):
			return errors.New("fn's context was not cancelled")
		}
		if cause := context.Cause(fnCtx); !errors.Is(cause, ErrLockNotHeld) {
			return fmt.Errorf("cause %v, want ErrLockNotHeld", cause)
		}
		return fnCtx.Err()
	})
	if !errors.Is(err, ErrLockNotHeld) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Do returned %v; want ErrLockNotHeld joined with fn's context.Canceled", err)
	}
	// One renewal interval, plus generous slack for a loaded machine.
	if waited > interval+time.Second {
		t.Errorf("fn's context was cancelled %v after the lease was lost; want within about %v", waited, interval)
	}
}

func TestDoCancelsFnWhenRenewalFails(t *testing.T) {
	ctx := testCtx(t)
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	l := newTestLocker(t, rdb, LockerOptions{})
	const ttl = 900 * time.Millisecond
	err := l.Do(ctx, "k", ttl, func(fnCtx context.Context) error {
		srv.Kill()
		killed := time.Now()
		select {
		case <-fnCtx.Done():
		case <-time.After(3 * ttl):
			return errors.New("fn's context was not cancelled")
		}
		// Renewals give up once two thirds of ttl passed without one
		// succeeding: before the lease could have run out unseen.
		if waited := time.Since(killed); waited > ttl+time.Second {
			return fmt.Errorf("cancelled %v after Redis went away", waited)
		}
		return nil
	})
	if !errors.Is(err, ErrLockNotHeld) || !strings.Contains(err.Error(), "could not be renewed") {
		t.Fatalf("Do returned %v, want ErrLockNotHeld because renewal failed", err)
	}
}

func TestDoReturnsFnErrorAndReleases(t *testing.T) {
	ctx := testCtx(t)
	l := newTestLocker(t, redistest.Start(t).Client(t), LockerOptions{})
	boom := errors.New("boom")
	if err := l.Do(ctx, "k", time.Minute, func(context.Context) error { return boom }); !errors.Is(err, boom) || errors.Is(err, ErrLockNotHeld) {
		t.Fatalf("Do returned %v, want boom alone", err)
	}
	if _, err := l.Holder(ctx, "k"); !errors.Is(err, ErrLockNotHeld) {
		t.Errorf("lock still held after Do: %v", err)
	}
}

func TestDoReleasesWhenCallerCancels(t *testing.T) {
	ctx := testCtx(t)
	l := newTestLocker(t, redistest.Start(t).Client(t), LockerOptions{})
	callerCtx, cancel := context.WithCancel(ctx)
	err := l.Do(callerCtx, "k", time.Minute, func(fnCtx context.Context) error {
		cancel()
		<-fnCtx.Done()
		return fnCtx.Err()
	})
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrLockNotHeld) {
		t.Fatalf("Do returned %v, want context.Canceled alone", err)
	}
	if _, err := l.Holder(ctx, "k"); !errors.Is(err, ErrLockNotHeld) {
		t.Errorf("lock still held after a cancelled Do: %v", err)
	}
}

// panickingFn is named so that the test can find it in the stack.
func panickingFn(context.Context) error { panic("fn exploded") }

func TestDoReleasesOnPanicAndRepanics(t *testing.T) {
	ctx := testCtx(t)
	l := newTestLocker(t, redistest.Start(t).Client(t), LockerOptions{})
	var (
		recovered any
		stack     string
	)
	func() {
		defer func() {
			recovered = recover()
			stack = string(debug.Stack())
		}()
		_ = l.Do(ctx, "k", time.Minute, panickingFn)
	}()
	if recovered != "fn exploded" {
		t.Fatalf("recovered %v, want the original panic value", recovered)
	}
	// The stack is still the one of the panic, not of a re-panic.
	if !strings.Contains(stack, "panickingFn") {
		t.Errorf("panic stack lacks panickingFn:\n%s", stack)
	}
	if _, err := l.Holder(ctx, "k"); !errors.Is(err, ErrLockNotHeld) {
		t.Errorf("lock still held after fn panicked: %v", err)
	}
}

func TestRunOnceConcurrentTriggersRunOnce(t *testing.T) {
	ctx := testCtx(t)
	srv := redistest.Start(t)
	// Five "hosts", each with its own client and Locker.
	var lockers []*Locker
	for range 5 {
		lockers = append(lockers, newTestLocker(t, srv.Client(t), LockerOptions{}))
	}
	// A window long enough that the test never straddles two.
	const interval = 1000 * time.Hour
	var runs atomic.Int64
	fn := func(context.Context) error {
		runs.Add(1)
		time.Sleep(100 * time.Millisecond) // overlap with the other triggers
		return nil
	}
	var wg sync.WaitGroup
	var ranCount atomic.Int64
	for i := range 20 {
		wg.Go(func() {
			ran, err := lockers[i%len(lockers)].RunOnce(ctx, "nightly", interval, fn)
			if err != nil {
				t.Error(err)
			}
			if ran {
				ranCount.Add(1)
			}
		})
	}
	wg.Wait()
	// Triggers after the run finished skip as well.
	for _, l := range lockers {
		if ran, err := l.RunOnce(ctx, "nightly", interval, fn); ran || err != nil {
			t.Errorf("late trigger: ran %v err %v; want a skip", ran, err)
		}
	}
	if runs.Load() != 1 || ranCount.Load() != 1 {
		t.Errorf("fn ran %d times, %d triggers reported ran; want 1 and 1", runs.Load(), ranCount.Load())
	}
}

func TestRunOnceFailedRunLetsNextTriggerRun(t *testing.T) {
	ctx := testCtx(t)
	l := newTestLocker(t, redistest.Start(t).Client(t), LockerOptions{})
	const interval = 1000 * time.Hour
	boom := errors.New("boom")

	ran, err := l.RunOnce(ctx, "job", interval, func(context.Context) error { return boom })
	if !ran || !errors.Is(err, boom) {
		t.Fatalf("failing run: ran %v err %v; want true, boom", ran, err)
	}
	func() {
		defer func() {
			if r := recover(); r != "crash" {
				t.Errorf("recovered %v, want crash", r)
			}
		}()
		_, _ = l.RunOnce(ctx, "job", interval, func(context.Context) error { panic("crash") })
	}()
	var calls int
	ran, err = l.RunOnce(ctx, "job", interval, func(context.Context) error { calls++; return nil })
	if !ran || err != nil || calls != 1 {
		t.Fatalf("run after failures: ran %v err %v calls %d; want true, nil, 1", ran, err, calls)
	}
	ran, err = l.RunOnce(ctx, "job", interval, func(context.Context) error { calls++; return nil })
	if ran || err != nil || calls != 1 {
		t.Errorf("run after success: ran %v err %v calls %d; want a skip", ran, err, calls)
	}
}

// A run whose process died holds the lock until the lease expires and does
// not mark the window done.
func TestRunOnceAfterCrashedRun(t *testing.T) {
	ctx := testCtx(t)
	l := newTestLocker(t, redistest.Start(t).Client(t), LockerOptions{})
	const interval = 1000 * time.Hour
	// What a crashed run leaves behind: its lease, never released.
	if _, err := l.Obtain(ctx, "job", 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	calls := 0
	fn := func(context.Context) error { calls++; return nil }
	if ran, err := l.RunOnce(ctx, "job", interval, fn); ran || err != nil {
		t.Fatalf("trigger during the crashed run's lease: ran %v err %v; want a skip", ran, err)
	}
	for {
		ran, err := l.RunOnce(ctx, "job", interval, fn)
		if err != nil {
			t.Fatal(err)
		}
		if ran {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if calls != 1 {
		t.Errorf("fn ran %d times, want 1", calls)
	}
}

func TestRunOnceNextWindowRunsAgain(t *testing.T) {
	ctx := testCtx(t)
	l := newTestLocker(t, redistest.Start(t).Client(t), LockerOptions{})
	const interval = 200 * time.Millisecond
	var runs atomic.Int64
	fn := func(context.Context) error { runs.Add(1); return nil }
	// Triggers every interval/10 for 5 intervals: a run in each window it
	// spans (5 or 6), never one per trigger (50).
	start := time.Now()
	for time.Since(start) < 5*interval {
		if _, err := l.RunOnce(ctx, "tick", interval, fn); err != nil {
			t.Fatal(err)
		}
		time.Sleep(interval / 10)
	}
	windows := int64(time.Since(start)/interval) + 2
	if n := runs.Load(); n < 3 || n > windows {
		t.Fatalf("%d runs over %v of triggers, want one per window (3..%d)", n, time.Since(start), windows)
	}
}

// A RunOnce whose lease was lost while fn ran does not mark the window
// done: the next trigger in the same window runs fn.
func TestRunOnceLostLeaseLeavesWindowOpen(t *testing.T) {
	ctx := testCtx(t)
	rdb := redistest.Start(t).Client(t)
	l := newTestLocker(t, rdb, LockerOptions{})
	ran, err := l.RunOnce(ctx, "job", time.Hour, func(ctx context.Context) error {
		rdb.Del(ctx, "lock:{job}") // the lease runs out behind fn's back
		return nil
	})
	if !ran || !errors.Is(err, ErrLockNotHeld) {
		t.Fatalf("RunOnce = %v, %v, want ran and ErrLockNotHeld", ran, err)
	}
	var again atomic.Int64
	if ran, err := l.RunOnce(ctx, "job", time.Hour, func(context.Context) error { again.Add(1); return nil }); !ran || err != nil || again.Load() != 1 {
		t.Fatalf("next trigger: ran %v, %v, %d runs: the window was marked done without a lease", ran, err, again.Load())
	}
}

// Do cancels fn before its lease can run out even when Redis stops
// answering (not refusing: hanging), which a client's read timeout alone
// would not notice in time.
func TestDoCancelsFnWhenRedisHangs(t *testing.T) {
	ctx := testCtx(t)
	srv := redistest.Start(t)
	l := newTestLocker(t, srv.Client(t), LockerOptions{})
	pauser := srv.Client(t)
	const ttl = 900 * time.Millisecond
	var paused, cancelled time.Time
	err := l.Do(ctx, "hang", ttl, func(ctx context.Context) error {
		time.Sleep(ttl / 2) // one renewal has gone through
		paused = time.Now()
		if err := pauser.Do(ctx, "CLIENT", "PAUSE", "3000", "ALL").Err(); err != nil {
			return err
		}
		<-ctx.Done()
		cancelled = time.Now()
		return nil
	})
	if !errors.Is(err, ErrLockNotHeld) {
		t.Fatalf("Do = %v, want ErrLockNotHeld", err)
	}
	// The last good renewal was before the pause; the lease lasts ttl from it.
	if d := cancelled.Sub(paused); d >= ttl {
		t.Fatalf("fn was cancelled %v after Redis hung, past its %v lease", d, ttl)
	}
}

// ObtainMany never returns a lease that ran out while it waited for later
// keys.
func TestObtainManyNeverReturnsExpiredLocks(t *testing.T) {
	ctx := testCtx(t)
	l := newTestLocker(t, redistest.Start(t).Client(t), LockerOptions{Retry: patient})
	const ttl = 200 * time.Millisecond
	busy, err := l.Obtain(ctx, "b", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	go func() { time.Sleep(2 * ttl); busy.Release(context.Background()) }()
	locks, err := l.ObtainMany(ctx, []string{"a", "b"}, ttl)
	if err == nil {
		for _, k := range locks {
			if _, terr := k.TTL(ctx); terr != nil {
				t.Fatalf("ObtainMany returned %q no longer held: %v", k.Key(), terr)
			}
		}
		return
	}
	if !errors.Is(err, ErrNotObtained) {
		t.Fatalf("ObtainMany = %v, want ErrNotObtained or held locks", err)
	}
	for _, key := range []string{"a", "b"} {
		if _, err := l.Holder(ctx, key); !errors.Is(err, ErrLockNotHeld) {
			t.Errorf("%s held after a failed ObtainMany: %v", key, err)
		}
	}
}

func TestObtainManyCrossingOrders(t *testing.T) {
	ctx := testCtx(t)
	srv := redistest.Start(t)
	keys := []string{"a", "b", "c", "d", "e"}
	var inUse [5]atomic.Bool
	var wg sync.WaitGroup
	for g := range 16 {
		l := newTestLocker(t, srv.Client(t), LockerOptions{Retry: patient})
		wg.Go(func() {
			for round := range 20 {
				// Overlapping sets, in crossing orders.
				var set []string
				var idx []int
				for i := range keys {
					j := (g + round + i*3) % len(keys)
					if (g+i)%3 != 0 || len(set) == 0 {
						set = append(set, keys[j])
						idx = append(idx, j)
					}
				}
				set, idx = dedupe(set, idx)
				locks, err := l.ObtainMany(ctx, set, 10*time.Second)
				if err != nil {
					t.Error(err)
					return
				}
				for n, k := range locks {
					if k.Key() != set[n] {
						t.Errorf("lock %d is for %q, want %q", n, k.Key(), set[n])
					}
				}
				for _, j := range idx {
					if !inUse[j].CompareAndSwap(false, true) {
						t.Errorf("key %q held twice", keys[j])
					}
				}
				time.Sleep(200 * time.Microsecond)
				for _, j := range idx {
					inUse[j].Store(false)
				}
				for _, k := range locks {
					if err := k.Release(ctx); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
}

func dedupe(set []string, idx []int) ([]string, []int) {
	seen := map[string]bool{}
	var s []string
	var x []int
	for i, k := range set {
		if !seen[k] {
			seen[k] = true
			s = append(s, k)
			x = append(x, idx[i])
		}
	}
	return s, x
}

func TestObtainManyReleasesPartialLocks(t *testing.T) {
	ctx := testCtx(t)
	l := newTestLocker(t, redistest.Start(t).Client(t), LockerOptions{Retry: NoRetry()})
	// The last key in sorted order is busy, so m1 and m2 are taken first and
	// must be given back.
	busy, err := l.Obtain(ctx, "m3", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.ObtainMany(ctx, []string{"m3", "m1", "m2"}, time.Minute)
	if !errors.Is(err, ErrNotObtained) || !strings.Contains(err.Error(), `"m3"`) {
		t.Fatalf("got %v, want ErrNotObtained for m3", err)
	}
	for _, key := range []string{"m1", "m2"} {
		if _, err := l.Holder(ctx, key); !errors.Is(err, ErrLockNotHeld) {
			t.Errorf("%s still held after a failed ObtainMany: %v", key, err)
		}
	}
	if err := busy.Release(ctx); err != nil {
		t.Fatal(err)
	}
	locks, err := l.ObtainMany(ctx, []string{"m3", "m1", "m2"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"m3", "m1", "m2"} {
		if locks[i].Key() != want {
			t.Errorf("locks[%d] is for %q, want %q", i, locks[i].Key(), want)
		}
	}
}

func TestLockerOnCluster(t *testing.T) {
	ctx := testCtx(t)
	rdb := redistest.StartCluster(t).Client(t)
	l := newTestLocker(t, rdb, LockerOptions{Retry: patient})

	// Keys spread over the three masters.
	keys := []string{"alpha", "bravo", "charlie", "delta", "echo", "foxtrot"}
	slots := map[int64]bool{}
	for _, key := range keys {
		slot, err := rdb.ClusterKeySlot(ctx, "lock:{"+key+"}").Result()
		if err != nil {
			t.Fatal(err)
		}
		slots[slot] = true
	}
	if len(slots) < 2 {
		t.Fatalf("test keys share one slot")
	}

	k, err := l.Obtain(ctx, "alpha", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if h, err := l.Holder(ctx, "alpha"); err != nil || h.Fence != k.Fence() {
		t.Errorf("Holder = %+v, %v", h, err)
	}
	if err := k.Refresh(ctx, time.Minute); err != nil {
		t.Error(err)
	}
	if _, err := k.TTL(ctx); err != nil {
		t.Error(err)
	}
	if err := k.Release(ctx); err != nil {
		t.Error(err)
	}
	if err := l.Do(ctx, "bravo", time.Second, func(context.Context) error { return nil }); err != nil {
		t.Error(err)
	}
	if ran, err := l.RunOnce(ctx, "charlie", time.Hour, func(context.Context) error { return nil }); !ran || err != nil {
		t.Errorf("RunOnce: ran %v err %v", ran, err)
	}

	// Crossing ObtainMany calls over keys in different slots.
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for round := range 10 {
				set := []string{keys[(g+round)%6], keys[(g+round+2)%6], keys[(g*5+1)%6]}
				set, _ = dedupe(set, []int{0, 0, 0})
				locks, err := l.ObtainMany(ctx, set, 10*time.Second)
				if err != nil {
					t.Error(err)
					return
				}
				for _, k := range locks {
					if err := k.Release(ctx); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
}

// Helper processes for the multi-process tests: the test binary runs itself
// with -test.run=TestHelperProcess and STAMPEDE_LOCK_HELPER set.
const helperEnv = "STAMPEDE_LOCK_HELPER"

func helperCmd(t *testing.T, mode string, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), append([]string{helperEnv + "=" + mode}, env...)...)
	return cmd
}

func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("runs only as a helper process")
	}
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("STAMPEDE_REDIS_ADDR"), PoolSize: 64})
	defer rdb.Close()
	l := newTestLocker(t, rdb, LockerOptions{Retry: patient})
	ctx := testCtx(t)
	key := os.Getenv("STAMPEDE_LOCK_KEY")
	switch mode {
	case "hammer":
		helperHammer(ctx, t, l, rdb, key)
	case "hold":
		ttl, _ := time.ParseDuration(os.Getenv("STAMPEDE_LOCK_TTL"))
		k, err := l.Obtain(ctx, key, ttl)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("HELD %d\n", k.Fence())
		time.Sleep(time.Minute) // until killed
	case "cacheload":
		lockTTL, _ := time.ParseDuration(os.Getenv("STAMPEDE_LOCK_TTL"))
		c, err := New[string](rdb, Options{Namespace: os.Getenv("STAMPEDE_NAMESPACE"), LockTTL: lockTTL})
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Get(ctx, key, func(context.Context, string) (string, error) {
			fmt.Println("LOADING")
			time.Sleep(time.Minute) // until killed
			return "", nil
		})
	}
}

// helperHammer runs goroutines that each take the lock a few times and log
// entering and leaving the critical section, with fence, pid and a
// timestamp, to a Redis list. Redis orders the log entries.
func helperHammer(ctx context.Context, t *testing.T, l *Locker, rdb *redis.Client, key string) {
	goroutines, _ := strconv.Atoi(os.Getenv("STAMPEDE_HAMMER_GOROUTINES"))
	rounds, _ := strconv.Atoi(os.Getenv("STAMPEDE_HAMMER_ROUNDS"))
	logKey := key + ":log"
	record := func(kind string, fence int64) error {
		entry := fmt.Sprintf("%s %d %d %d", kind, fence, os.Getpid(), time.Now().UnixNano())
		return rdb.RPush(ctx, logKey, entry).Err()
	}
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range rounds {
				k, err := l.Obtain(ctx, key, 10*time.Second)
				if err != nil {
					t.Error(err)
					return
				}
				if err := record("enter", k.Fence()); err != nil {
					t.Error(err)
				}
				time.Sleep(time.Millisecond)
				if err := record("exit", k.Fence()); err != nil {
					t.Error(err)
				}
				if err := k.Release(ctx); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
}

type logEntry struct {
	kind  string
	fence int64
	pid   int
	at    int64
}

func TestLockerMultiProcessHammer(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	ctx := testCtx(t)
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	const procs, goroutines, rounds = 4, 50, 2
	var cmds []*exec.Cmd
	outs := make([]strings.Builder, procs)
	for i := range procs {
		cmd := helperCmd(t, "hammer",
			"STAMPEDE_REDIS_ADDR="+srv.Addr(),
			"STAMPEDE_LOCK_KEY=hammer",
			"STAMPEDE_HAMMER_GOROUTINES="+strconv.Itoa(goroutines),
			"STAMPEDE_HAMMER_ROUNDS="+strconv.Itoa(rounds))
		cmd.Stdout, cmd.Stderr = &outs[i], &outs[i]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper %d: %v\n%s", i, err, outs[i].String())
		}
	}

	raw, err := rdb.LRange(ctx, "hammer:log", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := 2 * procs * goroutines * rounds; len(raw) != want {
		t.Fatalf("%d log entries, want %d", len(raw), want)
	}
	entries := make([]logEntry, len(raw))
	pids := map[int]bool{}
	for i, s := range raw {
		e := &entries[i]
		if _, err := fmt.Sscanf(s, "%s %d %d %d", &e.kind, &e.fence, &e.pid, &e.at); err != nil {
			t.Fatalf("entry %q: %v", s, err)
		}
		pids[e.pid] = true
	}
	if len(pids) != procs {
		t.Errorf("entries from %d processes, want %d", len(pids), procs)
	}
	var last logEntry
	for i := 0; i < len(entries); i += 2 {
		in, out := entries[i], entries[i+1]
		// Every critical section is entered and left before the next one
		// is entered: no overlap, in Redis's order and by the clock.
		if in.kind != "enter" || out.kind != "exit" || in.fence != out.fence || in.pid != out.pid {
			t.Fatalf("entries %d and %d overlap: %+v then %+v", i, i+1, in, out)
		}
		if out.at < in.at || (i > 0 && in.at < last.at) {
			t.Fatalf("critical sections overlap in time: %+v, %+v, %+v", last, in, out)
		}
		if i > 0 && in.fence <= last.fence {
			t.Fatalf("fence %d after %d: not strictly increasing", in.fence, last.fence)
		}
		last = out
	}
}

func TestLockerKilledHolder(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	ctx := testCtx(t)
	srv := redistest.Start(t)
	l := newTestLocker(t, srv.Client(t), LockerOptions{})
	const ttl = 2 * time.Second

	started := time.Now() // no later than the helper's lease began
	cmd := helperCmd(t, "hold", "STAMPEDE_REDIS_ADDR="+srv.Addr(), "STAMPEDE_LOCK_KEY=victim", "STAMPEDE_LOCK_TTL="+ttl.String())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var fence int64
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "HELD %d", &fence); err == nil {
			break
		}
	}
	if fence == 0 {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatal("helper did not report holding the lock")
	}
	h, err := l.Holder(ctx, "victim")
	if err != nil || h.PID != cmd.Process.Pid || h.Fence != fence {
		t.Errorf("Holder = %+v, %v; want pid %d fence %d", h, err, cmd.Process.Pid, fence)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	// Nobody gets the lock before the dead holder's TTL runs out, then the
	// next caller does.
	var k *Lock
	for {
		k, err = l.Obtain(ctx, "victim", ttl, WithRetry(NoRetry()))
		if err == nil {
			break
		}
		if !errors.Is(err, ErrNotObtained) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if since := time.Since(started); since < ttl {
		t.Errorf("obtained %v after the helper started, before its TTL of %v", since, ttl)
	}
	if k.Fence() <= fence {
		t.Errorf("fence %d, want more than the dead holder's %d", k.Fence(), fence)
	}
}

func BenchmarkObtainRelease(b *testing.B) {
	ctx := context.Background()
	l := newTestLocker(b, redistest.Start(b).Client(b), LockerOptions{})
	b.ReportAllocs()
	for b.Loop() {
		k, err := l.Obtain(ctx, "bench", time.Minute, WithRetry(NoRetry()))
		if err != nil {
			b.Fatal(err)
		}
		if err := k.Release(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// The fn run by Do and RunOnce finds its lock, and so its fence, in its ctx;
// each later holder's fence is greater.
func TestLockFromContextGivesFnItsFence(t *testing.T) {
	ctx := testCtx(t)
	l := newTestLocker(t, redistest.Start(t).Client(t), LockerOptions{})
	if _, ok := LockFromContext(ctx); ok {
		t.Fatal("a plain context carries a lock")
	}
	var fences []int64
	record := func(ctx context.Context) error {
		k, ok := LockFromContext(ctx)
		if !ok || k.Key() == "" {
			t.Fatal("fn's context carries no lock")
		}
		h, err := l.Holder(ctx, "job")
		if err != nil || h.Fence != k.Fence() {
			t.Fatalf("holder %+v, %v; fn's lock has fence %d", h, err, k.Fence())
		}
		fences = append(fences, k.Fence())
		return nil
	}
	if err := l.Do(ctx, "job", time.Minute, record); err != nil {
		t.Fatal(err)
	}
	if ran, err := l.RunOnce(ctx, "job", time.Hour, record); err != nil || !ran {
		t.Fatalf("RunOnce = %v, %v", ran, err)
	}
	if len(fences) != 2 || fences[1] <= fences[0] {
		t.Fatalf("fences %v, want two, strictly increasing", fences)
	}
}

// Fences keep increasing after the counter expired, and the counter does
// expire (FenceRetention) unless told not to.
func TestFenceRetention(t *testing.T) {
	ctx := testCtx(t)
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	l := newTestLocker(t, rdb, LockerOptions{FenceRetention: time.Hour})
	a, err := l.Obtain(ctx, "k", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if d := rdb.PTTL(ctx, "lock:{k}:fence").Val(); d <= 59*time.Minute || d > time.Hour {
		t.Fatalf("fence counter PTTL %v, want FenceRetention (1h)", d)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	rdb.Del(ctx, "lock:{k}:fence") // as if it had expired
	b, err := l.Obtain(ctx, "k", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if b.Fence() <= a.Fence() {
		t.Fatalf("fence %d after the counter expired, want more than %d", b.Fence(), a.Fence())
	}
	forever := newTestLocker(t, rdb, LockerOptions{Namespace: "forever", FenceRetention: -1})
	if _, err := forever.Obtain(ctx, "k", time.Minute); err != nil {
		t.Fatal(err)
	}
	if d := rdb.PTTL(ctx, "forever:{k}:fence").Val(); d != -1 {
		t.Fatalf("FenceRetention < 0: counter PTTL %v, want none", d)
	}
}

// A fence counter that is not a number fails Obtain and RunOnce, and
// leaves no lease behind to block the key.
func TestCorruptFenceLeavesNoLease(t *testing.T) {
	ctx := testCtx(t)
	rdb := redistest.Start(t).Client(t)
	l := newTestLocker(t, rdb, LockerOptions{Retry: NoRetry()})
	rdb.Set(ctx, "lock:{k}:fence", "garbage", 0)
	if _, err := l.Obtain(ctx, "k", time.Minute); err == nil || errors.Is(err, ErrNotObtained) || !strings.Contains(err.Error(), "fence") {
		t.Fatalf("Obtain with a corrupt fence counter = %v, want an error about the counter", err)
	}
	if ran, err := l.RunOnce(ctx, "k", time.Hour, func(context.Context) error { return nil }); ran || err == nil {
		t.Fatalf("RunOnce with a corrupt fence counter: ran %v, %v; want an error", ran, err)
	}
	if n := rdb.Exists(ctx, "lock:{k}").Val(); n != 0 {
		t.Fatal("a failed Obtain left a lease behind")
	}
}

// An Obtain whose caller gave up while Redis hung does not leave a lease
// nobody owns once Redis answers again.
func TestAbandonedObtainLeavesNoLease(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	l := newTestLocker(t, rdb, LockerOptions{Retry: NoRetry()})
	ctx := testCtx(t)
	if _, err := l.Obtain(ctx, "warm", time.Second); err != nil { // loads the script
		t.Fatal(err)
	}
	srv.Pause(t)
	octx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := l.Obtain(octx, "k", time.Minute)
	cancel()
	if !errors.Is(err, ErrNotObtained) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Obtain against a hung Redis = %v, want ErrNotObtained and the deadline", err)
	}
	srv.Resume()
	eventually(t, 5*time.Second, "the abandoned lease released", func() bool {
		return rdb.Exists(ctx, "lock:{k}").Val() == 0 && rdb.Exists(ctx, "lock:{k}:fence").Val() == 1
	})
}
