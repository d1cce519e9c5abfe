package stampede

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stampede-go/stampede/internal/entry"
	"github.com/stampede-go/stampede/internal/lease"
)

// Invariant 1: one load per key per expiry, fleet-wide, when nothing fails.
func TestInvariant1_OneLoadPerKeyFleetWide(t *testing.T) {
	onBackends(t, true, func(t *testing.T, b backend) {
		// The TTL must outlast the storm itself under -race on a busy machine.
		ttl := 2 * time.Second
		nodes := fleet(t, b, 20, Options{Namespace: "inv1", TTL: ttl, Stale: time.Minute, Beta: -1})
		l := &countingLoader{delay: 50 * time.Millisecond}

		// Cold key: 20 nodes x 200 concurrent Gets.
		vals := storm(t, nodes, 200, "hot", l.load)
		if got := l.calls.Load(); got != 1 {
			t.Fatalf("cold: %d loads, want 1 (stats %+v)", got, totalStats(nodes))
		}
		for _, v := range vals {
			if v != "v1:hot" {
				t.Fatalf("cold: a caller got %q, want v1:hot", v)
			}
		}

		// Expiry with a stale window: the refresh loader blocks until every
		// caller has returned, so a caller that waited for it would hang.
		b.advance(ttl + 50*time.Millisecond)
		gate := make(chan struct{})
		var refreshes atomic.Int64
		refresh := func(ctx context.Context, key string) (string, error) {
			refreshes.Add(1)
			<-gate
			return "new:" + key, nil
		}
		vals = storm(t, nodes, 200, "hot", refresh)
		for _, v := range vals {
			if v != "v1:hot" {
				t.Fatalf("expiry: a caller got %q, want the stale v1:hot", v)
			}
		}
		close(gate)
		eventually(t, 10*time.Second, "refreshed value visible", func() bool {
			v, err := nodes[0].Get(context.Background(), "hot", refresh)
			return err == nil && v == "new:hot"
		})
		if got := refreshes.Load(); got != 1 {
			t.Fatalf("expiry: %d refresh loads, want 1 (stats %+v)", got, totalStats(nodes))
		}
	})
}

// Invariant 2: leases fence write-back. Set and Delete drop the lease, so a
// rebuild that started before them never writes its older value after them.
func TestInvariant2_LeasesFenceWriteBack(t *testing.T) {
	onBackends(t, false, func(t *testing.T, b backend) {
		for _, op := range []string{"delete", "set"} {
			t.Run(op, func(t *testing.T) {
				ns := "inv2" + op
				a := newCache[string](t, b, Options{Namespace: ns, LocalCapacity: -1})
				other := newCache[string](t, b, Options{Namespace: ns, LocalCapacity: -1})
				gate := make(chan struct{})
				started := make(chan struct{})
				var got string
				done := make(chan struct{})
				go func() {
					defer close(done)
					got, _ = a.Get(context.Background(), "k", func(ctx context.Context, key string) (string, error) {
						close(started)
						<-gate
						return "old", nil
					})
				}()
				<-started
				switch op {
				case "delete":
					if err := other.Delete(context.Background(), "k"); err != nil {
						t.Fatal(err)
					}
				case "set":
					if err := other.Set(context.Background(), "k", "new"); err != nil {
						t.Fatal(err)
					}
				}
				close(gate)
				<-done
				if got != "old" {
					t.Fatalf("the caller that started the load got %q, want old", got)
				}
				if n := a.Stats().WriteBacksRejected; n != 1 {
					t.Fatalf("WriteBacksRejected = %d, want 1", n)
				}
				rdb := b.client(t)
				raw, err := rdb.Get(context.Background(), ns+":{k}").Bytes()
				switch op {
				case "delete":
					if !errors.Is(err, redis.Nil) {
						t.Fatalf("after Delete, Redis holds %q (err %v): the old load was written back", raw, err)
					}
				case "set":
					_, payload, derr := entry.Decode(raw)
					if err != nil || derr != nil || string(payload) != "new" {
						t.Fatalf("after Set, Redis holds %q (%v, %v), want new", payload, err, derr)
					}
				}
			})
		}
	})
}

// Invariant 3: locks always expire; a slow loader keeps its lease by
// renewal; a holder that stops renewing loses it and another node rebuilds.
func TestInvariant3_LocksAlwaysExpire(t *testing.T) {
	onBackends(t, false, func(t *testing.T, b backend) {
		t.Run("slow loader keeps its lease", func(t *testing.T) {
			lockTTL := 600 * time.Millisecond
			nodes := fleet(t, b, 2, Options{Namespace: "inv3a", LockTTL: lockTTL, WaitTimeout: 10 * time.Second})
			rdb := b.client(t)
			var calls atomic.Int64
			var sawTTL atomic.Int64
			load := func(ctx context.Context, key string) (string, error) {
				calls.Add(1)
				for range 4 { // 4 x LockTTL/2 = twice the lease
					if b.mr != nil {
						b.mr.FastForward(lockTTL / 2)
					}
					time.Sleep(lockTTL / 2)
				}
				sawTTL.Store(int64(rdb.PTTL(ctx, "inv3a:{k}:lock").Val()))
				return "slow", nil
			}
			vals := storm(t, nodes, 5, "k", load)
			for _, v := range vals {
				if v != "slow" {
					t.Fatalf("got %q", v)
				}
			}
			if calls.Load() != 1 {
				t.Fatalf("%d loads, want 1: the lease was not kept", calls.Load())
			}
			if sawTTL.Load() <= 0 {
				t.Fatalf("lock PTTL during the load = %v, want > 0: every lock must carry a TTL", time.Duration(sawTTL.Load()))
			}
			if s := totalStats(nodes); s.LockWon != 1 || nodes[0].Stats().LeaseRenewals+nodes[1].Stats().LeaseRenewals < 2 {
				t.Fatalf("stats %+v, renewals %d/%d: want 1 lease won and >= 2 renewals", s,
					nodes[0].Stats().LeaseRenewals, nodes[1].Stats().LeaseRenewals)
			}
			if n := rdb.Exists(context.Background(), "inv3a:{k}:lock").Val(); n != 0 {
				t.Fatal("the lease outlived the load")
			}
		})
		t.Run("crashed holder", func(t *testing.T) {
			lockTTL := 400 * time.Millisecond
			c := newCache[string](t, b, Options{Namespace: "inv3b", LockTTL: lockTTL, WaitTimeout: 10 * time.Second})
			rdb := b.client(t)
			// A holder that took the lease and died: nobody renews it.
			if !rdb.SetNX(context.Background(), "inv3b:{k}:lock", lease.NewValue(), lockTTL).Val() {
				t.Fatal("could not plant the dead holder's lease")
			}
			if b.mr != nil {
				go func() { time.Sleep(100 * time.Millisecond); b.mr.FastForward(lockTTL) }()
			}
			l := &countingLoader{}
			v, err := c.Get(context.Background(), "k", l.load)
			if err != nil || v != "v1:k" {
				t.Fatalf("Get = %q, %v", v, err)
			}
			if s := c.Stats(); s.LockContended != 1 || s.LockWon != 1 || l.calls.Load() != 1 {
				t.Fatalf("stats %+v, loads %d: want one wait, then this node rebuilds once", s, l.calls.Load())
			}
		})
	})
}

// Invariant 4: only the owner releases or extends.
func TestInvariant4_OnlyOwnerReleasesOrExtends(t *testing.T) {
	onBackends(t, false, func(t *testing.T, b backend) {
		ctx := context.Background()
		rdb := b.client(t)
		mine, theirs := lease.NewValue(), lease.NewValue()
		m1, ok1 := lease.Parse(mine)
		m2, ok2 := lease.Parse(theirs)
		if !ok1 || !ok2 || len(m1.Token) != 32 || m1.Token == m2.Token {
			t.Fatalf("tokens %q %q: want two distinct 128-bit hex tokens", m1.Token, m2.Token)
		}
		rdb.Set(ctx, "inv4:{k}:lock", mine, time.Minute)
		if held, err := lease.Extend(ctx, rdb, "inv4:{k}:lock", theirs, time.Hour); err != nil || held {
			t.Fatalf("a foreign token extended the lease (%v, %v)", held, err)
		}
		if held, err := lease.Release(ctx, rdb, "inv4:{k}:lock", theirs); err != nil || held {
			t.Fatalf("a foreign token released the lease (%v, %v)", held, err)
		}
		if rdb.Get(ctx, "inv4:{k}:lock").Val() != mine {
			t.Fatal("the owner's lease changed")
		}
		if held, err := lease.Extend(ctx, rdb, "inv4:{k}:lock", mine, time.Hour); err != nil || !held {
			t.Fatalf("the owner could not extend (%v, %v)", held, err)
		}
		if d := rdb.PTTL(ctx, "inv4:{k}:lock").Val(); d < 59*time.Minute {
			t.Fatalf("PTTL after extend = %v, want about an hour", d)
		}
		if held, err := lease.Release(ctx, rdb, "inv4:{k}:lock", mine); err != nil || !held {
			t.Fatalf("the owner could not release (%v, %v)", held, err)
		}
		if held, _ := lease.Release(ctx, rdb, "inv4:{k}:lock", theirs); held {
			t.Fatal("a foreign token released a lease already released")
		}
		if rdb.Exists(ctx, "inv4:{k}:lock").Val() != 0 {
			t.Fatal("the lease is still there after its release")
		}
	})
}

// Invariant 5: freshness is judged by the Redis server's clock. With
// miniredis the server's clock moves while this process's does not.
func TestInvariant5_FreshnessByServerClock(t *testing.T) {
	b := mini(t)
	c := newCache[string](t, b, Options{Namespace: "inv5", TTL: time.Minute, Stale: time.Minute, LocalCapacity: -1, Beta: -1})
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	defer close(gate)
	l := &countingLoader{gate: gate}
	r, err := c.Fetch(ctx, "k", func(ctx context.Context, k string) (string, Entry, error) {
		v, err := l.load(ctx, k)
		return v, Entry{}, err
	})
	if err != nil || r.Source != SourceRedis {
		t.Fatalf("before: %+v %v, want a fresh Redis hit", r, err)
	}
	b.mr.FastForward(time.Minute + time.Second) // the server's clock only
	r, err = c.Fetch(ctx, "k", func(ctx context.Context, k string) (string, Entry, error) {
		v, err := l.load(ctx, k)
		return v, Entry{}, err
	})
	if err != nil || r.Source != SourceStale || r.Value != "v" || r.Age < time.Minute {
		t.Fatalf("after the server's TTL: %+v %v, want the stale copy aged over a minute", r, err)
	}
}

// Invariant 6: one caller's cancellation never fails the others.
func TestInvariant6_CancellationDoesNotFailOthers(t *testing.T) {
	onBackends(t, false, func(t *testing.T, b backend) {
		c := newCache[string](t, b, Options{Namespace: "inv6"})
		type ctxKey struct{}
		gate := make(chan struct{})
		started := make(chan struct{})
		var loadErr atomic.Value
		var sawValue atomic.Bool
		load := func(ctx context.Context, key string) (string, error) {
			close(started)
			sawValue.Store(ctx.Value(ctxKey{}) == "first")
			<-gate
			if ctx.Err() != nil {
				loadErr.Store(ctx.Err())
			}
			return "v", nil
		}
		first, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "first"))
		firstErr := make(chan error, 1)
		go func() { _, err := c.Get(first, "k", load); firstErr <- err }()
		<-started
		var wg sync.WaitGroup
		results := make(chan string, 10)
		for range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v, err := c.Get(context.Background(), "k", load)
				if err != nil {
					t.Errorf("a follower failed: %v", err)
				}
				results <- v
			}()
		}
		time.Sleep(20 * time.Millisecond) // let the followers join the flight
		cancel()
		if err := <-firstErr; !errors.Is(err, context.Canceled) {
			t.Fatalf("the cancelled caller got %v, want context.Canceled at once", err)
		}
		close(gate)
		waitOrFail(t, &wg, 10*time.Second, "followers")
		close(results)
		for v := range results {
			if v != "v" {
				t.Fatalf("a follower got %q", v)
			}
		}
		if e := loadErr.Load(); e != nil {
			t.Fatalf("the loader's context was cancelled: %v", e)
		}
		if !sawValue.Load() {
			t.Fatal("the loader's context lost the first caller's values")
		}
	})
}

// Invariant 7: a panicking loader releases the lock, leaves no key stuck,
// and reaches every waiter as an error with the panic value and stack.
func TestInvariant7_PanickingLoader(t *testing.T) {
	onBackends(t, false, func(t *testing.T, b backend) {
		for _, kind := range []string{"panic", "goexit"} {
			t.Run(kind, func(t *testing.T) {
				ns := "inv7" + kind
				nodes := fleet(t, b, 2, Options{Namespace: ns})
				var calls atomic.Int64
				boom := func(ctx context.Context, key string) (string, error) {
					calls.Add(1)
					time.Sleep(20 * time.Millisecond)
					if kind == "goexit" {
						runtime.Goexit()
					}
					panic("boom")
				}
				var wg sync.WaitGroup
				for _, c := range nodes {
					for range 10 {
						wg.Add(1)
						go func() {
							defer wg.Done()
							_, err := c.Get(context.Background(), "k", boom)
							var pe *PanicError
							switch kind {
							case "panic":
								if !errors.As(err, &pe) || pe.Value != "boom" || !strings.Contains(string(pe.Stack), "TestInvariant7") {
									t.Errorf("got %v, want a *PanicError with the value and the loader's stack", err)
								}
							case "goexit":
								if !errors.Is(err, errGoexit) {
									t.Errorf("got %v, want errGoexit", err)
								}
							}
						}()
					}
				}
				waitOrFail(t, &wg, 10*time.Second, "callers")
				rdb := b.client(t)
				if n := rdb.Exists(context.Background(), ns+":{k}:lock", ns+":{k}").Val(); n != 0 {
					t.Fatalf("%d keys left behind by the panic", n)
				}
				if s := nodes[0].Stats().LoaderPanics + nodes[1].Stats().LoaderPanics; s != uint64(calls.Load()) || s == 0 {
					t.Fatalf("LoaderPanics = %d, loads %d", s, calls.Load())
				}
				v, err := nodes[1].Get(context.Background(), "k", func(context.Context, string) (string, error) { return "ok", nil })
				if err != nil || v != "ok" {
					t.Fatalf("after the panic, Get = %q, %v: the key is stuck", v, err)
				}
			})
		}
	})
}

// Invariant 8: Redis down is not an outage (fail open with a breaker), and
// the lease path resumes when Redis is back. Fail-closed is an option.
func TestInvariant8_RedisDownFailsOpen(t *testing.T) {
	b := realRedis(t)
	cooldown := 300 * time.Millisecond
	nodes := fleet(t, b, 3, Options{Namespace: "inv8", BreakerCooldown: cooldown})
	closed := newCache[string](t, b, Options{Namespace: "inv8", FailClosed: true, BreakerCooldown: cooldown})
	ctx := context.Background()
	l := &countingLoader{delay: 10 * time.Millisecond}
	storm(t, nodes, 20, "before", l.load)
	if l.calls.Load() != 1 {
		t.Fatalf("with Redis up: %d loads, want 1", l.calls.Load())
	}

	b.srv.Kill()
	l = &countingLoader{delay: 10 * time.Millisecond}
	vals := storm(t, nodes, 50, "during", l.load) // storm fails the test on any error
	if n := l.calls.Load(); n < 1 || n > 3 {
		t.Fatalf("with Redis down: %d loads, want one per node at most (3)", n)
	}
	for _, v := range vals {
		if !strings.HasSuffix(v, ":during") {
			t.Fatalf("got %q", v)
		}
	}
	// The breaker: more Gets right away add at most one probe per cooldown.
	before := nodes[0].Stats().RedisErrors
	start := time.Now()
	for i := range 100 {
		if _, err := nodes[0].Get(ctx, "seq"+string(rune('a'+i%26))+string(rune('a'+i/26)), l.load); err != nil {
			t.Fatal(err)
		}
	}
	probes := nodes[0].Stats().RedisErrors - before
	if allowed := 1 + uint64(time.Since(start)/cooldown); probes > allowed {
		t.Fatalf("%d Redis errors in %v of Gets, want at most %d: the breaker is not open", probes, time.Since(start), allowed)
	}
	// Writes fail with the circuit open rather than wait out a dead Redis.
	if err := nodes[0].Set(ctx, "w", "v"); !errors.Is(err, ErrRedisUnavailable) {
		t.Fatalf("Set with Redis down = %v, want ErrRedisUnavailable", err)
	}
	if err := nodes[0].Delete(ctx, "w"); !errors.Is(err, ErrRedisUnavailable) {
		t.Fatalf("Delete with Redis down = %v, want ErrRedisUnavailable", err)
	}
	if _, err := closed.Get(ctx, "closed", l.load); !errors.Is(err, ErrRedisUnavailable) {
		t.Fatalf("FailClosed Get = %v, want ErrRedisUnavailable", err)
	}

	b.srv.Restart(t)
	eventually(t, 10*time.Second, "lease path resumes", func() bool {
		before := nodes[1].Stats().LockWon
		_, err := nodes[1].Get(ctx, "after"+time.Now().String(), l.load)
		return err == nil && nodes[1].Stats().LockWon > before
	})
}

// Invariant 9: loader errors are never cached; ErrNotFound is, briefly.
func TestInvariant9_ErrorsNotCached(t *testing.T) {
	onBackends(t, false, func(t *testing.T, b backend) {
		ctx := context.Background()
		rdb := b.client(t)
		t.Run("errors", func(t *testing.T) {
			c := newCache[string](t, b, Options{Namespace: "inv9a"})
			var calls atomic.Int64
			failing := func(context.Context, string) (string, error) { calls.Add(1); return "", errors.New("db down") }
			for range 3 {
				if _, err := c.Get(ctx, "k", failing); err == nil || err.Error() != "db down" {
					t.Fatalf("Get = %v, want the loader's error", err)
				}
			}
			if calls.Load() != 3 {
				t.Fatalf("%d loads for 3 Gets: an error was cached", calls.Load())
			}
			if rdb.Exists(ctx, "inv9a:{k}", "inv9a:{k}:lock").Val() != 0 {
				t.Fatal("an error left keys in Redis")
			}
		})
		t.Run("not found", func(t *testing.T) {
			nft := 200 * time.Millisecond
			c := newCache[string](t, b, Options{Namespace: "inv9b", NotFoundTTL: nft})
			other := newCache[string](t, b, Options{Namespace: "inv9b"})
			var calls atomic.Int64
			missing := func(context.Context, string) (string, error) { calls.Add(1); return "", ErrNotFound }
			for _, cc := range []*Cache[string]{c, c, other} {
				if _, err := cc.Get(ctx, "k", missing); !errors.Is(err, ErrNotFound) {
					t.Fatalf("Get = %v, want ErrNotFound", err)
				}
			}
			if calls.Load() != 1 {
				t.Fatalf("%d loads, want 1: the tombstone was not cached (or not shared)", calls.Load())
			}
			b.advance(nft + 50*time.Millisecond)
			c.Get(ctx, "k", missing)
			if calls.Load() != 2 {
				t.Fatalf("%d loads after NotFoundTTL, want 2", calls.Load())
			}
			off := newCache[string](t, b, Options{Namespace: "inv9c", NotFoundTTL: -1})
			off.Get(ctx, "k", missing)
			off.Get(ctx, "k", missing)
			if calls.Load() != 4 {
				t.Fatalf("%d loads with NotFoundTTL < 0, want 4", calls.Load())
			}
		})
	})
}

// Invariant 10: bounded waiting, then the policy.
func TestInvariant10_BoundedWaiting(t *testing.T) {
	onBackends(t, false, func(t *testing.T, b backend) {
		ctx := context.Background()
		rdb := b.client(t)
		hold := func(ns string) {
			// A live holder elsewhere whose rebuild never lands.
			rdb.Set(ctx, ns+":{k}:lock", lease.NewValue(), time.Hour)
		}
		t.Run("load locally", func(t *testing.T) {
			hold("inv10a")
			c := newCache[string](t, b, Options{Namespace: "inv10a", WaitTimeout: 150 * time.Millisecond})
			l := &countingLoader{}
			r, err := c.Fetch(ctx, "k", func(ctx context.Context, k string) (string, Entry, error) {
				v, err := l.load(ctx, k)
				return v, Entry{}, err
			})
			if err != nil || r.Value != "v1:k" || r.Stored {
				t.Fatalf("Fetch = %+v, %v, want a local load, not stored", r, err)
			}
			if rdb.Exists(ctx, "inv10a:{k}").Val() != 0 {
				t.Fatal("a value loaded after a wait timeout was stored")
			}
		})
		t.Run("return error", func(t *testing.T) {
			hold("inv10b")
			c := newCache[string](t, b, Options{Namespace: "inv10b", WaitTimeout: 150 * time.Millisecond, OnWaitTimeout: WaitReturnError})
			l := &countingLoader{}
			if _, err := c.Get(ctx, "k", l.load); !errors.Is(err, ErrWaitTimeout) || l.calls.Load() != 0 {
				t.Fatalf("Get = %v with %d loads, want ErrWaitTimeout and none", err, l.calls.Load())
			}
		})
		t.Run("caller deadline", func(t *testing.T) {
			hold("inv10c")
			c := newCache[string](t, b, Options{Namespace: "inv10c", WaitTimeout: time.Hour})
			l := &countingLoader{}
			dctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			if _, err := c.Get(dctx, "k", l.load); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Get = %v, want the caller's deadline", err)
			}
		})
	})
}
