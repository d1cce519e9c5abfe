package stampede

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/stampede-go/stampede/internal/entry"
	"github.com/stampede-go/stampede/internal/lua"
	"github.com/stampede-go/stampede/internal/redistest"
)

// Messages of one publisher that arrive out of order are not lost ones; a
// hole that stays open past gapGrace is.
func TestGapTracker(t *testing.T) {
	var g gapTracker
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	if g.observe("a", 10, 0) {
		t.Fatal("the first number heard from a publisher is a gap")
	}
	for _, seq := range []uint64{11, 13, 12, 12, 14} { // reordered, repeated
		if g.observe("a", seq, ms(1)) {
			t.Fatalf("seq %d: reordering taken for loss", seq)
		}
	}
	if g.sweep(ms(1000)) {
		t.Fatal("a sequence without holes swept as lost")
	}
	if g.observe("a", 16, ms(1000)) { // 15 is missing
		t.Fatal("a fresh hole counted as loss before gapGrace")
	}
	if !g.sweep(ms(1000) + gapGrace) {
		t.Fatal("a hole open for gapGrace not counted as loss")
	}
	if g.observe("a", 17, ms(3000)) {
		t.Fatal("after a loss, the sequence goes on from the highest number heard")
	}
	if g.observe("b", 5, ms(3000)) || g.observe("b", 7, ms(3000)) || !g.observe("b", 8, ms(3000)+gapGrace) {
		t.Fatal("a hole of publisher b noticed on its next message after gapGrace: want loss")
	}
	// An unbounded run of numbers above a hole is loss at once.
	g.observe("c", 1, 0)
	lost := false
	for i := uint64(3); i < 3+maxAhead+1 && !lost; i++ {
		lost = g.observe("c", i, 0)
	}
	if !lost {
		t.Fatalf("%d numbers held above a hole without counting it lost", maxAhead)
	}
	g.reset()
	if g.observe("a", 100, ms(5000)) {
		t.Fatal("after reset, a publisher's next number is a gap")
	}
}

// XFetch refreshes early with L1 on too: L1 hits near expiry try it.
func TestXFetchRefreshesEarlyWithL1(t *testing.T) {
	ttl := 400 * time.Millisecond
	delta := 40 * time.Millisecond
	b := realRedis(t)
	nodes := fleet(t, b, 4, Options{Namespace: "xfetchl1", TTL: ttl, LocalTTL: time.Minute})
	var loads atomic.Int64
	load := func(context.Context, string) (string, error) {
		loads.Add(1)
		time.Sleep(delta)
		return "v", nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*ttl)
	defer cancel()
	done := make(chan struct{})
	for _, n := range nodes {
		go func() {
			defer func() { done <- struct{}{} }()
			for ctx.Err() == nil {
				n.Get(context.Background(), "k", load)
				time.Sleep(time.Millisecond)
			}
		}()
	}
	for range nodes {
		<-done
	}
	for _, n := range nodes {
		n.Close()
	}
	s := totalStats(nodes)
	if s.EarlyRefreshes == 0 || s.EarlyRefreshes != uint64(loads.Load()-1) {
		t.Fatalf("%d loads, %d early: want every load after the cold fill to be an early refresh (stats %+v)", loads.Load(), s.EarlyRefreshes, s)
	}
	if s.Misses > 4 {
		t.Fatalf("%d misses: callers met an expired key after the cold fill (stats %+v)", s.Misses, s)
	}
}

// An invalidation of one key does not cancel another key's L1 fill: a read
// of a hot key during which another key is written still lands in L1.
func TestOtherKeysWritesKeepL1Fills(t *testing.T) {
	for _, mode := range []Invalidation{InvalidateBroadcast, InvalidateTracking} {
		t.Run(mode.String(), func(t *testing.T) {
			srv := redistest.Start(t)
			opts := Options{Namespace: "gens", TTL: time.Minute, LocalTTL: time.Minute, Invalidation: mode}
			writer := realNode(t, srv, opts)
			reader, err := New[string](srv.Client(t), opts)
			if err != nil {
				t.Fatal(err)
			}
			defer reader.Close()
			ctx := context.Background()
			// Every read of the hot key from Redis sees another key
			// written, and its invalidation delivered, while the read is
			// on its way. In tracking mode the reader hears of the other
			// key only if it read it since its last write: it does so
			// first.
			var inHook atomic.Bool
			hookAll(reader, &duringReads{fn: func() {
				if !inHook.CompareAndSwap(false, true) {
					return
				}
				defer inHook.Store(false)
				_, _ = reader.Get(ctx, "other", func(context.Context, string) (string, error) { return "x", nil })
				_ = writer.Set(ctx, "other", "x")
				time.Sleep(20 * time.Millisecond)
			}})
			if err := writer.Set(ctx, "hot", "v"); err != nil {
				t.Fatal(err)
			}
			const gets = 10
			for range gets {
				if v, err := reader.Get(ctx, "hot", func(context.Context, string) (string, error) { return "loaded", nil }); err != nil || v != "v" {
					t.Fatalf("Get = %q, %v", v, err)
				}
			}
			s := reader.Stats()
			if s.Messages == 0 {
				t.Fatalf("no invalidation reached the reader: the test tested nothing (stats %+v)", s)
			}
			// L1 applies writes asynchronously, so a Get right after the
			// fill may still miss it; without per-key generations none
			// lands at all.
			if s.LocalHits < gets/2 {
				t.Fatalf("%d of %d Gets of an unchanged key served from L1, want most (stats %+v)", s.LocalHits, gets, s)
			}
		})
	}
}

// duringReads runs fn before every MULTI/EXEC pipeline a client sends.
type duringReads struct{ fn func() }

func (h *duringReads) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *duringReads) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *duringReads) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.fn()
		return next(ctx, cmds)
	}
}

// The errors of failed background refreshes are bounded, and a value
// stored since clears a key's.
func TestRefreshErrorsAreBoundedAndCleared(t *testing.T) {
	c, err := New[string](nil, Options{TTL: 10 * time.Millisecond, Stale: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	ok := func(context.Context, string) (string, error) { return "v", nil }
	dbDown := errors.New("db down")
	failing := func(context.Context, string) (string, error) { return "", dbDown }
	const keys = maxRefreshErrs + 200
	for i := range keys {
		c.Get(ctx, fmt.Sprint(i), ok)
	}
	time.Sleep(20 * time.Millisecond)
	for i := range keys {
		c.Get(ctx, fmt.Sprint(i), failing) // stale copy served, refresh fails
	}
	eventually(t, 10*time.Second, "refreshes done", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.refreshing) == 0
	})
	c.mu.Lock()
	n := len(c.refreshErr)
	c.mu.Unlock()
	if n == 0 || n > maxRefreshErrs {
		t.Fatalf("%d refresh errors remembered, want between 1 and %d", n, maxRefreshErrs)
	}

	// A key whose refresh failed, then loaded again through a miss.
	c2, err := New[string](nil, Options{TTL: 10 * time.Millisecond, Stale: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	fetch := func(load func(context.Context, string) (string, error)) Result[string] {
		r, _ := c2.Fetch(ctx, "k", func(ctx context.Context, k string) (string, Entry, error) {
			v, err := load(ctx, k)
			return v, Entry{}, err
		})
		return r
	}
	fetch(ok)
	time.Sleep(20 * time.Millisecond)
	fetch(failing)
	eventually(t, 5*time.Second, "refresh error recorded", func() bool { return errors.Is(fetch(failing).LoadErr, dbDown) })
	time.Sleep(80 * time.Millisecond) // past the stale window: a miss
	if r := fetch(ok); r.Source != SourceLoader {
		t.Fatalf("past the stale window: %+v, want a load", r)
	}
	time.Sleep(20 * time.Millisecond)
	gate := make(chan struct{})
	defer close(gate)
	if r := fetch(func(context.Context, string) (string, error) { <-gate; return "", dbDown }); r.Source != SourceStale || r.LoadErr != nil {
		t.Fatalf("stale after a successful load: %+v, want no LoadErr from before it", r)
	}
}

// LocalTTL's default bounds L1 staleness when Redis is there, and only then.
func TestLocalTTLDefaults(t *testing.T) {
	b := mini(t)
	for _, tc := range []struct {
		name  string
		redis bool
		set   time.Duration
		want  time.Duration
	}{
		{"default with Redis", true, 0, defaultLocalTTL},
		{"default without Redis", false, 0, 0},
		{"negative: no cap", true, -1, 0},
		{"set", true, time.Minute, time.Minute},
		{"set without Redis", false, time.Second, time.Second},
	} {
		var c *Cache[string]
		if tc.redis {
			c = newCache[string](t, b, Options{LocalTTL: tc.set})
		} else {
			c = newCache[string](t, backend{}, Options{LocalTTL: tc.set})
		}
		if c.localTTL != tc.want {
			t.Errorf("%s: L1 cap %v, want %v", tc.name, c.localTTL, tc.want)
		}
	}
}

// A write-back the lease refused still takes its number in the sender's
// sequence, so the other nodes see no gap and keep their L1 (and in
// tracking mode, where there are no numbers, nothing flushes it either).
func TestRefusedWriteBackLeavesNoGap(t *testing.T) {
	for _, mode := range []Invalidation{InvalidateBroadcast, InvalidateTracking} {
		t.Run(mode.String(), func(t *testing.T) { refusedWriteBack(t, mode) })
	}
}

func refusedWriteBack(t *testing.T, mode Invalidation) {
	srv := redistest.Start(t)
	opts := Options{Namespace: "nogap", LocalCapacity: 100, Invalidation: mode}
	a, b, observer := realNode(t, srv, opts), realNode(t, srv, opts), realNode(t, srv, opts)
	ctx := context.Background()
	if err := a.Set(ctx, "y", "x"); err != nil { // the observer hears a
		t.Fatal(err)
	}
	gate, started := make(chan struct{}), make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Get(ctx, "k", func(context.Context, string) (string, error) {
			close(started)
			<-gate
			return "old", nil
		})
	}()
	<-started
	if err := b.Set(ctx, "k", "new"); err != nil {
		t.Fatal(err)
	}
	close(gate)
	<-done
	if a.Stats().WriteBacksRejected != 1 {
		t.Fatalf("stats %+v, want one refused write-back", a.Stats())
	}
	if err := a.Set(ctx, "z", "x"); err != nil { // a's next message
		t.Fatal(err)
	}
	time.Sleep(gapGrace + 2*quietAfter) // past the grace and a sweep
	if n := observer.Stats().LocalFlushes; n != 0 {
		t.Fatalf("the observer flushed its L1 %d times after a refused write-back", n)
	}
}

// A value deleted by another node, whose message this node lost, is not
// served from L1 once LocalTTL has passed, not even as a stale copy when
// the loader fails.
func TestDeletedValueNotServedPastLocalTTL(t *testing.T) {
	b := realRedis(t)
	opts := Options{Namespace: "deleted", TTL: time.Minute, Stale: time.Minute, LocalTTL: 100 * time.Millisecond}
	a, n := newCache[string](t, b, opts), newCache[string](t, b, opts)
	ctx := context.Background()
	_, err := a.Get(ctx, "k", func(context.Context, string) (string, error) { return "old", nil })
	require.NoError(t, err)
	eventually(t, 5*time.Second, "n holds k", func() bool {
		v, _ := n.Get(ctx, "k", func(context.Context, string) (string, error) { return "x", nil })
		return v == "old" && n.getL1("k") != nil
	})
	// a deletes k; its message goes to a channel nobody hears.
	require.NoError(t, lua.Write.Run(ctx, b.client(t), a.keys("k"), "", 1, "nobody", a.message(msgInvalidated, "k")).Err())
	time.Sleep(300 * time.Millisecond) // past LocalTTL
	for range 3 {
		v, _ := n.Get(ctx, "k", func(context.Context, string) (string, error) { return "", errors.New("the row is gone") })
		require.NotEqual(t, "old", v, "the deleted value served past LocalTTL")
	}
}

// Two Sets of one key on one node whose replies come back out of order:
// the node's L1 ends with what Redis holds, not with the Set whose reply
// came last.
func TestConcurrentSetsLeaveOwnL1AsRedis(t *testing.T) {
	b := realRedis(t)
	rdb := b.client(t).(*redis.Client)
	ctx := context.Background()
	require.NoError(t, lua.Write.Load(ctx, rdb).Err())
	rdb.AddHook(&delayFirstReply{sha: lua.Write.Hash(), delay: 300 * time.Millisecond})
	c, err := New[string](rdb, Options{Namespace: "twosets", LocalTTL: time.Minute})
	require.NoError(t, err)
	defer c.Close()
	first := make(chan error)
	go func() { first <- c.Set(ctx, "k", "first") }()
	time.Sleep(50 * time.Millisecond) // the first Set's script ran; its reply is held
	require.NoError(t, c.Set(ctx, "k", "second"))
	require.NoError(t, <-first)
	raw, err := b.client(t).Get(ctx, "twosets:{k}").Bytes()
	require.NoError(t, err)
	_, inRedis, err := entry.Decode(raw)
	require.NoError(t, err)
	v, err := c.Get(ctx, "k", func(context.Context, string) (string, error) { return "loaded", nil })
	require.NoError(t, err)
	require.Equal(t, string(inRedis), v, "L1 and Redis disagree")
}

// delayFirstReply holds the reply to the first call of one script.
type delayFirstReply struct {
	sha   string
	delay time.Duration
	done  atomic.Bool
}

func (h *delayFirstReply) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *delayFirstReply) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h *delayFirstReply) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd) // the script has run on the server
		if a := cmd.Args(); len(a) > 1 && cmd.Name() == "evalsha" && a[1] == h.sha && h.done.CompareAndSwap(false, true) {
			time.Sleep(h.delay)
		}
		return err
	}
}

// User code that calls runtime.Goexit on a flight's goroutine (an
// Observer, here) does not leave its key stuck.
func TestGoexitOnTheFlightLeavesNoKeyStuck(t *testing.T) {
	var once atomic.Bool
	c := newCache[string](t, backend{}, Options{Observer: ObserverFunc(func(_ context.Context, e Event) {
		if e.Kind == EventMiss && once.CompareAndSwap(false, true) {
			runtime.Goexit()
		}
	})})
	ctx := context.Background()
	_, err := c.Get(ctx, "k", func(context.Context, string) (string, error) { return "v", nil })
	require.ErrorIs(t, err, errGoexit)
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := c.Get(gctx, "k", func(context.Context, string) (string, error) { return "v", nil })
	require.NoError(t, err, "the key is stuck")
	require.Equal(t, "v", v)
}
