package stampede

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stampede-go/stampede/internal/entry"
)

func TestNewRejectsBadOptions(t *testing.T) {
	for name, o := range map[string]Options{
		"namespace with brace": {Namespace: "a{b"},
		"negative TTL":         {TTL: -time.Second},
		"negative Stale":       {Stale: -1},
		"negative LockTTL":     {LockTTL: -1},
		"tiny LockTTL":         {LockTTL: time.Millisecond},
		"negative Recheck":     {Recheck: -1},
		"negative WaitTimeout": {WaitTimeout: -1},
		"negative LoadTimeout": {LoadTimeout: -1},
		"negative MaxKeyLen":   {MaxKeyLen: -1},
		"unknown policy":       {OnWaitTimeout: 7},
	} {
		if _, err := New[string](nil, o); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%s: New = %v, want ErrInvalidOptions", name, err)
		}
	}
}

func TestBadInputGetsClearErrors(t *testing.T) {
	c := newCache[string](t, mini(t), Options{MaxKeyLen: 16})
	ctx := context.Background()
	load := func(context.Context, string) (string, error) { return "v", nil }
	for _, key := range []string{"", strings.Repeat("k", 17), "}x"} {
		if _, err := c.Get(ctx, key, load); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Get(%q) = %v, want ErrInvalidKey", key, err)
		}
		if err := c.Set(ctx, key, "v"); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Set(%q) = %v, want ErrInvalidKey", key, err)
		}
		if err := c.Delete(ctx, key); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Delete(%q) = %v, want ErrInvalidKey", key, err)
		}
	}
	if _, err := c.Get(ctx, "k", nil); !errors.Is(err, ErrNilLoader) {
		t.Errorf("Get with nil loader = %v", err)
	}
	if _, err := c.Fetch(ctx, "k", nil); !errors.Is(err, ErrNilLoader) {
		t.Errorf("Fetch with nil loader = %v", err)
	}
	// Keys with braces inside are fine: they keep one hash slot.
	if v, err := c.Get(ctx, "a{b}c", load); err != nil || v != "v" {
		t.Errorf("Get(a{b}c) = %q, %v", v, err)
	}
}

func TestCorruptBytesAreAMiss(t *testing.T) {
	onBackends(t, false, func(t *testing.T, b backend) {
		ctx := context.Background()
		rdb := b.client(t)
		var reported atomic.Int64
		c := newCache[string](t, b, Options{Namespace: "corrupt", LocalCapacity: -1,
			Observer: ObserverFunc(func(_ context.Context, e Event) {
				if e.Kind == EventCorrupt && e.Err != nil {
					reported.Add(1)
				}
			})})
		for i, raw := range []string{
			"garbage",                    // foreign bytes
			"\xa7\x02\x00\x01\x01\x01v",  // unknown version
			"\xa7\x01\x00\xff",           // truncated varint
			"\xa7\x01\x80\x01\x01\x01v",  // unknown flag
			"\xa7\x01\x01\x01\x01\x01xx", // tombstone with payload
		} {
			key := "k" + string(rune('a'+i))
			rdb.Set(ctx, "corrupt:{"+key+"}", raw, time.Minute)
			l := &countingLoader{}
			v, err := c.Get(ctx, key, l.load)
			if err != nil || v != "v1:"+key || l.calls.Load() != 1 {
				t.Fatalf("%q: Get = %q, %v with %d loads, want a miss and a load", raw, v, err, l.calls.Load())
			}
			got, _ := rdb.Get(ctx, "corrupt:{"+key+"}").Bytes()
			if _, payload, err := entry.Decode(got); err != nil || string(payload) != "v1:"+key {
				t.Fatalf("%q: the corrupt entry was not replaced: %q", raw, got)
			}
		}
		if s := c.Stats(); s.Corrupt != 5 || reported.Load() != 5 {
			t.Fatalf("Corrupt = %d, reported %d, want 5", s.Corrupt, reported.Load())
		}
	})
}

func TestCorruptJSONIsAMiss(t *testing.T) {
	type product struct{ Name string }
	b := mini(t)
	c := newCache[product](t, b, Options{Namespace: "json", LocalCapacity: -1})
	b.mr.Set("json:{p}", string(entry.Append(nil, entry.Header{TTL: time.Minute}, []byte("{not json"))))
	b.mr.SetTTL("json:{p}", time.Minute)
	p, err := c.Get(context.Background(), "p", func(context.Context, string) (product, error) { return product{"x"}, nil })
	if err != nil || p.Name != "x" || c.Stats().Corrupt != 1 {
		t.Fatalf("Get = %+v, %v, corrupt %d", p, err, c.Stats().Corrupt)
	}
}

func TestFetchEntryAndSource(t *testing.T) {
	b := mini(t)
	ctx := context.Background()
	a := newCache[string](t, b, Options{Namespace: "fetch", TTL: time.Minute})
	other := newCache[string](t, b, Options{Namespace: "fetch", TTL: time.Minute, LocalCapacity: -1})
	load := func(ttl, stl time.Duration, noStore bool) func(context.Context, string) (string, Entry, error) {
		return func(_ context.Context, k string) (string, Entry, error) {
			return "v:" + k, Entry{TTL: ttl, Stale: stl, NoStore: noStore}, nil
		}
	}
	r, err := a.Fetch(ctx, "k", load(5*time.Second, 7*time.Second, false))
	if err != nil || r.Source != SourceLoader || r.Value != "v:k" || !r.Stored {
		t.Fatalf("first Fetch = %+v, %v, want a stored load", r, err)
	}
	if d := b.mr.TTL("fetch:{k}"); d != 12*time.Second {
		t.Fatalf("Redis TTL = %v, want Entry.TTL + Entry.Stale = 12s", d)
	}
	if r, _ = a.Fetch(ctx, "k", load(0, 0, false)); r.Source != SourceLocal {
		t.Fatalf("second Fetch on the same node: source %v, want local", r.Source)
	}
	b.mr.FastForward(2 * time.Second)
	if r, _ = other.Fetch(ctx, "k", load(0, 0, false)); r.Source != SourceRedis || r.Age < 2*time.Second {
		t.Fatalf("Fetch on another node: %+v, want redis, aged 2s", r)
	}
	b.mr.FastForward(4 * time.Second)
	if r, _ = other.Fetch(ctx, "k", load(0, 0, false)); r.Source != SourceStale {
		t.Fatalf("past Entry.TTL: %+v, want stale", r)
	}

	// NoStore: handed back, stored nowhere.
	var calls atomic.Int64
	noStore := func(context.Context, string) (string, Entry, error) {
		calls.Add(1)
		return "private", Entry{NoStore: true}, nil
	}
	for range 2 {
		if r, err := a.Fetch(ctx, "ns", noStore); err != nil || r.Value != "private" || r.Stored {
			t.Fatalf("NoStore Fetch = %+v, %v", r, err)
		}
	}
	if calls.Load() != 2 || b.mr.Exists("fetch:{ns}") || b.mr.Exists("fetch:{ns}:lock") {
		t.Fatalf("NoStore: %d loads, value stored %v", calls.Load(), b.mr.Exists("fetch:{ns}"))
	}

	// Negative Stale: no stale window for this entry.
	a.Fetch(ctx, "nostale", load(time.Second, -1, false))
	if d := b.mr.TTL("fetch:{nostale}"); d != time.Second {
		t.Fatalf("Entry.Stale < 0: Redis TTL %v, want 1s", d)
	}
}

func TestSetAndDeleteEvictL1OnEveryNode(t *testing.T) {
	onBackends(t, true, func(t *testing.T, b backend) {
		ctx := context.Background()
		nodes := fleet(t, b, 3, Options{Namespace: "inval", TTL: time.Hour})
		l := &countingLoader{}
		for _, n := range nodes {
			if v, _ := n.Get(ctx, "k", l.load); v != "v1:k" {
				t.Fatalf("got %q", v)
			}
		}
		for _, n := range nodes {
			eventually(t, 5*time.Second, "value in every L1", func() bool {
				r, _ := n.Fetch(ctx, "k", func(context.Context, string) (string, Entry, error) { return "", Entry{}, nil })
				return r.Source == SourceLocal && r.Value == "v1:k"
			})
		}
		if err := nodes[0].Set(ctx, "k", "set"); err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			eventually(t, 5*time.Second, "Set reaches every node", func() bool {
				v, _ := n.Get(ctx, "k", l.load)
				return v == "set"
			})
		}
		if err := nodes[1].Delete(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			eventually(t, 5*time.Second, "Delete reaches every node", func() bool {
				v, _ := n.Get(ctx, "k", func(context.Context, string) (string, error) { return "reloaded", nil })
				return v == "reloaded"
			})
		}
	})
}

func TestSingleProcessWithoutRedis(t *testing.T) {
	ctx := context.Background()
	c, err := New[string](nil, Options{TTL: 100 * time.Millisecond, Stale: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l := &countingLoader{delay: 20 * time.Millisecond}
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if v, err := c.Get(ctx, "k", l.load); err != nil || v != "v1:k" {
				t.Errorf("Get = %q, %v", v, err)
			}
		}()
	}
	wg.Wait()
	if l.calls.Load() != 1 {
		t.Fatalf("%d loads, want 1", l.calls.Load())
	}
	time.Sleep(150 * time.Millisecond) // past TTL, inside the stale window
	r, err := c.Fetch(ctx, "k", func(ctx context.Context, k string) (string, Entry, error) {
		v, err := l.load(ctx, k)
		return v, Entry{}, err
	})
	if err != nil || r.Source != SourceStale || r.Value != "v1:k" {
		t.Fatalf("past TTL: %+v %v, want the stale copy", r, err)
	}
	eventually(t, 5*time.Second, "background refresh", func() bool {
		v, _ := c.Get(ctx, "k", l.load)
		return v == "v2:k"
	})
	if err := c.Set(ctx, "k", "set"); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Get(ctx, "k", l.load); v != "set" {
		t.Fatalf("after Set: %q", v)
	}
	if err := c.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Get(ctx, "k", l.load); v != "v3:k" {
		t.Fatalf("after Delete: %q, want a load", v)
	}
}

func TestStaleServedOnLoaderErrorKeepsTheError(t *testing.T) {
	ctx := context.Background()
	var reported atomic.Value
	c, err := New[string](nil, Options{TTL: 50 * time.Millisecond, Stale: time.Minute,
		Observer: ObserverFunc(func(_ context.Context, e Event) {
			if e.Kind == EventLoad && e.Reason == LoadRefresh && e.Err != nil {
				reported.Store(e.Err)
			}
		})})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Get(ctx, "k", func(context.Context, string) (string, error) { return "old", nil })
	time.Sleep(80 * time.Millisecond)
	dbDown := errors.New("db down")
	failing := func(context.Context, string) (string, Entry, error) { return "", Entry{}, dbDown }
	if r, err := c.Fetch(ctx, "k", failing); err != nil || r.Value != "old" {
		t.Fatalf("Fetch = %+v, %v, want the stale copy", r, err)
	}
	eventually(t, 5*time.Second, "refresh error recorded", func() bool {
		r, err := c.Fetch(ctx, "k", failing)
		return err == nil && r.Value == "old" && r.Source == SourceStale && errors.Is(r.LoadErr, dbDown)
	})
	if e, _ := reported.Load().(error); !errors.Is(e, dbDown) {
		t.Fatalf("the observer got %v, want the loader's error on a refresh", e)
	}
}

func TestCloseStopsEverything(t *testing.T) {
	b := mini(t)
	c := newCache[string](t, b, Options{Namespace: "close"})
	ctx := context.Background()
	started := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		_, err := c.Get(ctx, "slow", func(ctx context.Context, _ string) (string, error) {
			close(started)
			<-ctx.Done() // a loader that respects its context
			return "", ctx.Err()
		})
		errc <- err
	}()
	<-started
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err == nil {
		t.Fatal("an in-flight Get succeeded across Close")
	}
	if _, err := c.Get(ctx, "k", func(context.Context, string) (string, error) { return "v", nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close = %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	// goleak in TestMain checks that nothing New started is left running.
}

// XFetch refreshes a hot key before it expires, once per value: after the
// cold fill no caller ever meets an expired key, and no two refreshes of
// one value run (each starts after the previous one's load has finished).
// At high request rates XFetch refreshes about delta*beta*ln(rate*delta)
// before expiry, so a value lives somewhat less than its TTL.
func TestXFetchRefreshesEarlyAboutOncePerExpiry(t *testing.T) {
	ttl := 400 * time.Millisecond
	delta := 40 * time.Millisecond
	b := realRedis(t)
	nodes := fleet(t, b, 4, Options{Namespace: "xfetch", TTL: ttl, LocalCapacity: -1})
	var (
		mu     sync.Mutex
		starts []time.Time
	)
	load := func(context.Context, string) (string, error) {
		mu.Lock()
		starts = append(starts, time.Now())
		mu.Unlock()
		time.Sleep(delta)
		return "v", nil
	}
	run := 6 * ttl
	ctx, cancel := context.WithTimeout(context.Background(), run)
	defer cancel()
	var wg sync.WaitGroup
	for _, n := range nodes {
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					n.Get(context.Background(), "k", load)
					time.Sleep(time.Millisecond)
				}
			}()
		}
	}
	wg.Wait()
	for _, n := range nodes {
		n.Close() // waits for background refreshes still running
	}
	mu.Lock()
	defer mu.Unlock()
	s := totalStats(nodes)
	if s.EarlyRefreshes == 0 || s.EarlyRefreshes != uint64(len(starts)-1) {
		t.Fatalf("%d loads, %d early: want every load after the cold fill to be an early refresh (stats %+v)", len(starts), s.EarlyRefreshes, s)
	}
	if s.Misses > 16 {
		t.Fatalf("%d misses: callers met an expired key after the cold fill (stats %+v)", s.Misses, s)
	}
	for i := 1; i < len(starts); i++ {
		if gap := starts[i].Sub(starts[i-1]); gap < delta {
			t.Fatalf("loads %d and %d started %v apart, less than one load: a duplicate refresh", i-1, i, gap)
		}
	}
	if max := int(3 * run / ttl); len(starts) > max {
		t.Fatalf("%d loads in %v with TTL %v, want at most %d", len(starts), run, ttl, max)
	}
}

func TestShouldRefreshEarlyProbability(t *testing.T) {
	const n = 200_000
	hits := 0
	for range n {
		if shouldRefreshEarly(100*time.Millisecond, 100*time.Millisecond, 1) {
			hits++
		}
	}
	// P = exp(-t/(beta*delta)) = exp(-1) = 0.3679; 5 sigma is about 0.0054.
	if p := float64(hits) / n; p < 0.3679-0.0054 || p > 0.3679+0.0054 {
		t.Fatalf("P(refresh) = %.4f, want exp(-1) = 0.3679", p)
	}
	if shouldRefreshEarly(time.Second, 0, 1) || shouldRefreshEarly(time.Second, time.Second, -1) {
		t.Fatal("refresh with no delta or with XFetch off")
	}
}

// Waiters on other nodes are woken by the "filled" message, not by the
// periodic re-check: with the re-check an hour away, they still return.
func TestWaitersWokenByNotification(t *testing.T) {
	onBackends(t, true, func(t *testing.T, b backend) {
		nodes := fleet(t, b, 5, Options{Namespace: "wake", Recheck: time.Hour, WaitTimeout: time.Hour})
		l := &countingLoader{delay: 100 * time.Millisecond}
		for _, v := range storm(t, nodes, 10, "k", l.load) {
			if v != "v1:k" {
				t.Fatalf("got %q", v)
			}
		}
		s := totalStats(nodes)
		if l.calls.Load() != 1 || s.WokenByNotify != 4 || s.WokenByRecheck != 0 {
			t.Fatalf("%d loads, stats %+v: want 1 load and the 4 other nodes woken by notification", l.calls.Load(), s)
		}
	})
}

// LoadTimeout ends a loader that hangs; the lease is dropped and the key is
// not stuck.
func TestLoadTimeoutReleasesTheLease(t *testing.T) {
	onBackends(t, false, func(t *testing.T, b backend) {
		c := newCache[string](t, b, Options{Namespace: "lt", LoadTimeout: 100 * time.Millisecond})
		ctx := context.Background()
		_, err := c.Get(ctx, "k", func(ctx context.Context, _ string) (string, error) {
			<-ctx.Done()
			return "", ctx.Err()
		})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Get = %v, want the load's deadline", err)
		}
		if n := b.client(t).Exists(ctx, "lt:{k}:lock").Val(); n != 0 {
			t.Fatal("the lease outlived the timed-out load")
		}
		if v, err := c.Get(ctx, "k", func(context.Context, string) (string, error) { return "ok", nil }); err != nil || v != "ok" {
			t.Fatalf("next Get = %q, %v", v, err)
		}
	})
}

// An L1 hit allocates nothing for string and []byte values.
func TestLocalHitDoesNotAllocate(t *testing.T) {
	ctx := context.Background()
	s := newCache[string](t, backend{}, Options{})
	ls := func(context.Context, string) (string, error) { return "v", nil }
	s.Get(ctx, "k", ls)
	bs := newCache[[]byte](t, backend{}, Options{})
	lb := func(context.Context, string) ([]byte, error) { return []byte("v"), nil }
	bs.Get(ctx, "k", lb)
	if n := testing.AllocsPerRun(1000, func() { s.Get(ctx, "k", ls) }); n >= 1 {
		t.Errorf("string hit: %v allocs per Get, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { bs.Get(ctx, "k", lb) }); n >= 1 {
		t.Errorf("[]byte hit: %v allocs per Get, want 0", n)
	}
}

// LocalTTL caps how long a value is served from L1: past it, the next Get
// reads Redis again though the value is still fresh there.
func TestLocalTTLCapsL1(t *testing.T) {
	b := mini(t)
	c := newCache[string](t, b, Options{Namespace: "lttl", TTL: time.Hour, LocalTTL: 50 * time.Millisecond})
	ctx := context.Background()
	l := &countingLoader{}
	fetch := func() Result[string] {
		r, err := c.Fetch(ctx, "k", func(ctx context.Context, k string) (string, Entry, error) {
			v, err := l.load(ctx, k)
			return v, Entry{}, err
		})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	fetch()
	if r := fetch(); r.Source != SourceLocal {
		t.Fatalf("within LocalTTL: source %v, want local", r.Source)
	}
	time.Sleep(80 * time.Millisecond)
	if r := fetch(); r.Source != SourceRedis || r.Value != "v1:k" {
		t.Fatalf("past LocalTTL: %+v, want the same value from Redis", r)
	}
}

// upperCodec stores strings upper-cased, to tell its bytes from the default
// codec's; it panics on the value "panic".
type upperCodec struct{ marshals, unmarshals atomic.Int64 }

func (u *upperCodec) Marshal(v any) ([]byte, error) {
	u.marshals.Add(1)
	s := v.(string)
	if s == "panic" {
		panic("codec exploded")
	}
	return []byte(strings.ToUpper(s)), nil
}

func (u *upperCodec) Unmarshal(b []byte, v any) error {
	u.unmarshals.Add(1)
	*(v.(*string)) = string(b)
	return nil
}

// Options.Codec replaces the default encoding on both ends; a codec that
// panics gives the caller an error, not a crash.
func TestCustomCodec(t *testing.T) {
	b := mini(t)
	codec := &upperCodec{}
	opts := Options{Namespace: "codec", Codec: codec}
	a, other := newCache[string](t, b, opts), newCache[string](t, b, opts)
	ctx := context.Background()
	if v, err := a.Get(ctx, "k", func(context.Context, string) (string, error) { return "hello", nil }); err != nil || v != "hello" {
		t.Fatalf("loader's caller got %q, %v", v, err)
	}
	if v, err := other.Get(ctx, "k", func(context.Context, string) (string, error) { return "", errors.New("unexpected load") }); err != nil || v != "HELLO" {
		t.Fatalf("another node got %q, %v, want the codec's bytes decoded", v, err)
	}
	if codec.marshals.Load() != 1 || codec.unmarshals.Load() != 1 {
		t.Fatalf("codec used %d/%d times, want 1/1", codec.marshals.Load(), codec.unmarshals.Load())
	}
	_, err := a.Get(ctx, "p", func(context.Context, string) (string, error) { return "panic", nil })
	var pe *PanicError
	if !errors.As(err, &pe) || pe.Value != "codec exploded" {
		t.Fatalf("panicking codec: %v, want a *PanicError", err)
	}
	if b.mr.Exists("codec:{p}:lock") {
		t.Fatal("the panicking codec left the lease behind")
	}
	if err := a.Set(ctx, "s", "panic"); !errors.As(err, &pe) {
		t.Fatalf("Set with a panicking codec: %v", err)
	}
}

// A refresh is skipped when the entry it read was rewritten meanwhile, even
// if the new entry lives shorter than the old one had left (the write id
// tells them apart, not the remaining TTL).
func TestRefreshSkipsAnEntryRewrittenWithAShorterLife(t *testing.T) {
	onBackends(t, false, func(t *testing.T, b backend) {
		ctx := context.Background()
		rdb := b.client(t)
		seeder := newCache[string](t, b, Options{Namespace: "rw", TTL: time.Millisecond, Stale: 10 * time.Minute})
		if err := seeder.Set(ctx, "k", "old"); err != nil {
			t.Fatal(err)
		}
		b.advance(5 * time.Millisecond)
		raw, _ := rdb.Get(ctx, "rw:{k}").Bytes()
		old, _, err := entry.Decode(raw)
		if err != nil {
			t.Fatal(err)
		}
		a := newCache[string](t, b, Options{Namespace: "rw", TTL: time.Minute, Stale: time.Minute, LocalCapacity: -1})
		other := newCache[string](t, b, Options{Namespace: "rw", TTL: time.Minute, Stale: time.Minute, LocalCapacity: -1})
		l := &countingLoader{}
		if v, _ := a.Get(ctx, "k", l.load); v != "old" {
			t.Fatalf("got %q, want the stale copy", v)
		}
		eventually(t, 5*time.Second, "refresh landed", func() bool {
			v, _ := a.Get(ctx, "k", l.load)
			return v == "v1:k"
		})
		// other read "old" before the refresh landed and now tries its own.
		if err := other.refresh(ctx, "k", loader[string]{plain: l.load}, replacingEntry(old.ID), nil, LoadRefresh); err != nil {
			t.Fatal(err)
		}
		if n := l.calls.Load(); n != 1 {
			t.Fatalf("%d loads, want 1: a second refresh replaced a value written after it read", n)
		}
	})
}
