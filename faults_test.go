package stampede

// The fault suite: each test reproduces a fault a production fleet sees,
// against a real redis-server, asserts the promise the README makes under
// it, and logs one line starting with "fault:" with its figure (go test -v
// -run '^TestFault' shows them).

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/stampede-go/stampede/internal/lua"
	"github.com/stampede-go/stampede/internal/redistest"
)

// figure logs a fault test's one-line result.
func figure(t *testing.T, format string, a ...any) {
	t.Helper()
	t.Logf("fault: %s: %s", t.Name(), fmt.Sprintf(format, a...))
}

// realNode is a node with its own client of srv.
func realNode(t *testing.T, srv *redistest.Server, opts Options) *Cache[string] {
	t.Helper()
	return newCache[string](t, backend{name: "redis", srv: srv}, opts)
}

// target is where a fault test runs: a real server, or a real Cluster.
type target struct {
	srv *redistest.Server
	cl  *redistest.Cluster
}

// onTargets runs fn on a real server in each invalidation mode, and on a
// real Cluster in tracking mode.
func onTargets(t *testing.T, fn func(t *testing.T, tg target, mode Invalidation)) {
	t.Run("broadcast", func(t *testing.T) { fn(t, target{srv: redistest.Start(t)}, InvalidateBroadcast) })
	t.Run("tracking", func(t *testing.T) { fn(t, target{srv: redistest.Start(t)}, InvalidateTracking) })
	t.Run("tracking-cluster", func(t *testing.T) { fn(t, target{cl: redistest.StartCluster(t)}, InvalidateTracking) })
}

// client returns a new client of the target, its connections going through
// f when f is not nil.
func (tg target) client(t *testing.T, f *redistest.Faults) redis.UniversalClient {
	t.Helper()
	var dial func(context.Context, string, string) (net.Conn, error)
	if f != nil {
		dial = f.Dial
	}
	var rdb redis.UniversalClient
	if tg.cl != nil {
		rdb = redis.NewClusterClient(&redis.ClusterOptions{Addrs: tg.cl.Addrs(), Dialer: dial})
	} else {
		rdb = redis.NewClient(&redis.Options{Addr: tg.srv.Addr(), Dialer: dial})
	}
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// node is a node with a client of its own, through f when f is not nil.
func (tg target) node(t *testing.T, f *redistest.Faults, opts Options) *Cache[string] {
	t.Helper()
	c, err := New[string](tg.client(t, f), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// servers returns a client of each server of the target.
func (tg target) servers(t *testing.T) []*redis.Client {
	if tg.cl == nil {
		return []*redis.Client{tg.srv.Client(t)}
	}
	var cs []*redis.Client
	for _, a := range tg.cl.Addrs() {
		c := redis.NewClient(&redis.Options{Addr: a})
		t.Cleanup(func() { _ = c.Close() })
		cs = append(cs, c)
	}
	return cs
}

// fill makes every node hold key=val for every key, in L1.
func fillL1(t *testing.T, writer *Cache[string], readers []*Cache[string], keys []string, val string) {
	t.Helper()
	ctx := context.Background()
	for _, k := range keys {
		if err := writer.Set(ctx, k, val); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range readers {
		for _, k := range keys {
			eventually(t, 5*time.Second, "value in L1", func() bool {
				res, err := r.Fetch(ctx, k, func(context.Context, string) (string, Entry, error) {
					return "loaded", Entry{}, nil
				})
				return err == nil && res.Source == SourceLocal && res.Value == val
			})
		}
	}
}

// staleKeys returns the keys for which c does not serve want.
func staleKeys(c *Cache[string], keys []string, want string) []string {
	var stale []string
	for _, k := range keys {
		v, err := c.Get(context.Background(), k, func(context.Context, string) (string, error) { return "loaded", nil })
		if err != nil || v != want {
			stale = append(stale, k)
		}
	}
	return stale
}

// converge polls until c serves want for every key, and returns how long
// that took, failing after limit.
func converge(t *testing.T, c *Cache[string], keys []string, want string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		stale := staleKeys(c, keys, want)
		if len(stale) == 0 {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("after %v, %d of %d keys still served old (first: %s)", limit, len(stale), len(keys), stale[0])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func keyRange(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s%03d", prefix, i)
	}
	return keys
}

// scriptDelay delays the scripts whose SHA is in shas, on one client.
type scriptDelay struct {
	shas  map[string]bool
	delay time.Duration
}

func (h *scriptDelay) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *scriptDelay) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if args := cmd.Args(); len(args) > 1 && cmd.Name() == "evalsha" {
			if sha, _ := args[1].(string); h.shas[sha] {
				time.Sleep(h.delay)
			}
		}
		return next(ctx, cmd)
	}
}

func (h *scriptDelay) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// A node's own Set or Delete never leaves the old value in its own L1, even
// when its own Gets read Redis while the write is on its way.
func TestFaultOwnWriteNeverLeavesOldL1(t *testing.T) {
	onTargets(t, func(t *testing.T, tg target, mode Invalidation) {
		rdb := tg.client(t, nil)
		rdb.AddHook(&scriptDelay{shas: map[string]bool{lua.Write.Hash(): true}, delay: 10 * time.Millisecond})
		c, err := New[string](rdb, Options{Namespace: "own", TTL: time.Minute, LocalTTL: time.Minute, Invalidation: mode})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ownWrites(t, c)
	})
}

// ownWrites writes c's key k while c's own Gets read it, and fails if a
// write leaves the old value in c's L1.
func ownWrites(t *testing.T, c *Cache[string]) {
	ctx := context.Background()
	var loads atomic.Int64
	load := func(context.Context, string) (string, error) {
		return fmt.Sprintf("loaded%d", loads.Add(1)), nil
	}
	const rounds = 20
	old := 0
	for i := range rounds {
		want := fmt.Sprintf("v%d", i)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
						_, _ = c.Get(ctx, "k", load)
					}
				}
			})
		}
		var werr error
		deleted := i%2 == 1
		if deleted {
			werr = c.Delete(ctx, "k")
		} else {
			werr = c.Set(ctx, "k", want)
		}
		close(stop)
		wg.Wait()
		if werr != nil {
			t.Fatal(werr)
		}
		// After a Delete, anything loaded since is right; the value set
		// before it is not.
		got, _ := c.Get(ctx, "k", load)
		if (!deleted && got != want) || (deleted && !strings.HasPrefix(got, "loaded")) {
			old++
		}
	}
	figure(t, "%d of %d writes left the old value in the writer's own L1", old, rounds)
	if old > 0 {
		t.Fatalf("%d of %d writes left the old value in the writer's own L1", old, rounds)
	}
}

// A Set published while a node's subscription is reconnecting still reaches
// that node's L1: a resubscription flushes it. In tracking mode the node's
// tracked connections then redirect to the new subscription: a Set after
// the reconnection reaches it too.
func TestFaultPubSubReconnect(t *testing.T) {
	onTargets(t, func(t *testing.T, tg target, mode Invalidation) {
		opts := Options{Namespace: "resub", TTL: time.Minute, LocalTTL: time.Minute, Invalidation: mode}
		reader, writer := tg.node(t, nil, opts), tg.node(t, nil, opts)
		keys := keyRange("k", 100)
		fillL1(t, writer, []*Cache[string]{reader}, keys, "old")
		ctx := context.Background()
		for _, admin := range tg.servers(t) {
			if err := admin.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
				t.Fatal(err)
			}
		}
		for _, k := range keys {
			if err := writer.Set(ctx, k, "new"); err != nil {
				t.Fatal(err)
			}
		}
		stale := len(staleKeys(reader, keys, "new"))
		took := converge(t, reader, keys, "new", 3*time.Second)
		// The reader holds every key again, read after the reconnection.
		fillL1(t, writer, []*Cache[string]{reader}, keys, "again")
		for _, k := range keys {
			if err := writer.Set(ctx, k, "after"); err != nil {
				t.Fatal(err)
			}
		}
		after := converge(t, reader, keys, "after", 3*time.Second)
		figure(t, "%d of %d keys old right after the Sets; all new after %v; Sets after the reconnection reached L1 in %v",
			stale, len(keys), took.Round(time.Millisecond), after.Round(time.Millisecond))
	})
}

// Pub/sub frames lost with the connection up. In broadcast mode the next
// message from the same publisher shows a gap, and the node flushes its
// L1. In tracking mode a node hears nothing about keys it does not hold,
// so no later message can show the loss: its own probe, lost as well,
// flushes L1 within probeEvery + probeWait while frames are being lost.
func TestFaultDroppedFrames(t *testing.T) {
	onTargets(t, func(t *testing.T, tg target, mode Invalidation) {
		f := redistest.NewFaults()
		opts := Options{Namespace: "drop", TTL: time.Minute, LocalTTL: time.Minute, Invalidation: mode}
		reader := tg.node(t, f, opts)
		writer := tg.node(t, nil, opts)
		keys := keyRange("k", 100)
		fillL1(t, writer, []*Cache[string]{reader}, keys, "old")
		ctx := context.Background()
		f.DropPubSub(true)
		for _, k := range keys {
			if err := writer.Set(ctx, k, "new"); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, 5*time.Second, "frames dropped", func() bool { return f.Dropped() >= int64(len(keys)) })
		if mode == InvalidateTracking {
			// Frames keep being lost: the probe is what notices.
			stale := len(staleKeys(reader, keys, "new"))
			took := converge(t, reader, keys, "new", 5*time.Second)
			f.DropPubSub(false)
			figure(t, "%d frames dropped, %d of %d keys old; all new %v later, frames still dropped (probe every %v, lost after %v)",
				f.Dropped(), stale, len(keys), took.Round(time.Millisecond), probeEvery, probeWait)
			return
		}
		f.DropPubSub(false)
		stale := len(staleKeys(reader, keys, "new"))
		if err := writer.Set(ctx, "other", "x"); err != nil {
			t.Fatal(err)
		}
		took := converge(t, reader, keys, "new", 5*time.Second)
		figure(t, "%d frames dropped, %d of %d keys old; all new %v after the next message", f.Dropped(), stale, len(keys), took.Round(time.Millisecond))
	})
}

// With nothing else published, lost invalidations are bounded by LocalTTL.
func TestFaultDroppedFramesBoundedByLocalTTL(t *testing.T) {
	onTargets(t, func(t *testing.T, tg target, mode Invalidation) {
		f := redistest.NewFaults()
		opts := Options{Namespace: "dropttl", TTL: time.Minute, LocalTTL: 500 * time.Millisecond, Invalidation: mode}
		reader := tg.node(t, f, opts)
		writer := tg.node(t, nil, opts)
		keys := keyRange("k", 20)
		fillL1(t, writer, []*Cache[string]{reader}, keys, "old")
		f.DropPubSub(true)
		set := time.Now()
		for _, k := range keys {
			if err := writer.Set(context.Background(), k, "new"); err != nil {
				t.Fatal(err)
			}
		}
		converge(t, reader, keys, "new", 5*time.Second)
		figure(t, "all %d keys new %v after the lost Sets (LocalTTL %v)", len(keys), time.Since(set).Round(time.Millisecond), opts.LocalTTL)
	})
}

// A node cut off from Redis serves what it loaded itself, and forgets it
// once Redis is back: values loaded with the circuit open do not outlive
// the partition.
func TestFaultCutNodeForgetsWhatItLoadedAlone(t *testing.T) {
	onTargets(t, func(t *testing.T, tg target, mode Invalidation) {
		f := redistest.NewFaults()
		opts := Options{Namespace: "cut", TTL: time.Minute, LocalTTL: time.Minute, BreakerCooldown: 100 * time.Millisecond, Invalidation: mode}
		node := tg.node(t, f, opts)
		other := tg.node(t, nil, opts)
		ctx := context.Background()
		f.Cut()
		v, err := node.Get(ctx, "k", func(context.Context, string) (string, error) { return "alone", nil })
		if err != nil || v != "alone" {
			t.Fatalf("Get while cut = %q, %v; want the node's own load (fail open)", v, err)
		}
		if err := other.Set(ctx, "k", "new"); err != nil {
			t.Fatal(err)
		}
		f.Heal()
		took := converge(t, node, []string{"k"}, "new", 5*time.Second)
		figure(t, "value loaded while cut replaced by the fleet's %v after the cut healed", took.Round(time.Millisecond))
	})
}

// On a Ring, the scripts publish on the key's shard: a node hears every
// shard.
func TestFaultRingInvalidation(t *testing.T) {
	a, b := redistest.Start(t), redistest.Start(t)
	ring := func() redis.UniversalClient {
		r := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": a.Addr(), "b": b.Addr()}})
		t.Cleanup(func() { _ = r.Close() })
		return r
	}
	opts := Options{Namespace: "ring", TTL: time.Minute, LocalTTL: time.Minute}
	nodes := make([]*Cache[string], 2)
	for i := range nodes {
		c, err := New[string](ring(), opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		nodes[i] = c
	}
	keys := keyRange("k", 20)
	fillL1(t, nodes[0], nodes[1:], keys, "old")
	for _, k := range keys {
		if err := nodes[0].Set(context.Background(), k, "new"); err != nil {
			t.Fatal(err)
		}
	}
	took := converge(t, nodes[1], keys, "new", 2*time.Second)
	shardA, _ := a.Client(t).DBSize(context.Background()).Result()
	shardB, _ := b.Client(t).DBSize(context.Background()).Result()
	figure(t, "%d keys over two shards (%d and %d Redis keys): all new on the other node after %v", len(keys), shardA, shardB, took.Round(time.Millisecond))
}

// A reply lost after the server ran an acquire script makes go-redis send
// the script again; the second run finds the caller's own token and
// succeeds instead of locking the caller out for the lease's life.
func TestFaultLostReplies(t *testing.T) {
	srv := redistest.Start(t)
	f := redistest.NewFaults()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), Dialer: f.Dial})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	t.Run("Obtain", func(t *testing.T) {
		l := newTestLocker(t, rdb, LockerOptions{Retry: NoRetry()})
		// Load the scripts first: the reply to lose is the one to a script
		// the server ran, not a NOSCRIPT.
		warm, err := l.Obtain(ctx, "warm", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if err := warm.Release(ctx); err != nil {
			t.Fatal(err)
		}
		f.LoseReplyTo("lock:{obtain}")
		k, err := l.Obtain(ctx, "obtain", time.Minute)
		if err != nil {
			t.Fatalf("Obtain after a lost reply = %v", err)
		}
		if k.Fence() < 1 {
			t.Fatalf("fence %d", k.Fence())
		}
		h, err := l.Holder(ctx, "obtain")
		if err != nil || !strings.HasPrefix(k.Token(), h.TokenPrefix) || h.Fence != k.Fence() {
			t.Fatalf("Holder = %+v, %v; want this lock (token %s, fence %d)", h, err, k.Token(), k.Fence())
		}
		f.LoseReplyTo("lock:{obtain}")
		if err := k.Release(ctx); err != nil {
			t.Fatalf("Release after a lost reply = %v", err)
		}
		if n := rdb.Exists(ctx, "lock:{obtain}").Val(); n != 0 {
			t.Fatal("the lock is still there after Release")
		}
	})
	t.Run("RunOnce", func(t *testing.T) {
		l := newTestLocker(t, rdb, LockerOptions{})
		if _, err := l.RunOnce(ctx, "warm", time.Hour, func(context.Context) error { return nil }); err != nil {
			t.Fatal(err)
		}
		f.LoseReplyTo("lock:{cron}")
		ran, err := l.RunOnce(ctx, "cron", time.Hour, func(context.Context) error { return nil })
		if !ran || err != nil {
			t.Fatalf("RunOnce after a lost reply: ran %v, %v; want the job run", ran, err)
		}
	})
	t.Run("cold Get", func(t *testing.T) {
		c, err := New[string](rdb, Options{Namespace: "lost", LockTTL: time.Minute, LocalCapacity: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Get(ctx, "warm", func(context.Context, string) (string, error) { return "v", nil }); err != nil {
			t.Fatal(err)
		}
		gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		f.LoseReplyTo("lost:{cold}:lock")
		r, err := c.Fetch(gctx, "cold", func(context.Context, string) (string, Entry, error) {
			f.LoseReplyTo("lost:{cold}:lock") // the fill's reply, this time
			return "v", Entry{}, nil
		})
		if err != nil || r.Value != "v" {
			t.Fatalf("cold Get after a lost lease reply = %+v, %v; want the value (it must not wait out its own lease)", r, err)
		}
		if !r.Stored {
			t.Fatalf("a fill whose reply was lost reported Stored=false (stats %+v)", c.Stats())
		}
		if f.Lost() != 5 {
			t.Fatalf("%d replies lost, want 5 (obtain, release, run once, lease, fill)", f.Lost())
		}
		figure(t, "%d replies lost; Obtain, Release, RunOnce, lease and fill all succeeded", f.Lost())
	})
}

// When Redis hangs, nobody waits past WaitTimeout: every Redis call on a
// caller's path runs under a deadline the library keeps itself, and the
// leader's lease renewal gives up instead of hanging.
func TestFaultRedisHung(t *testing.T) {
	srv := redistest.Start(t)
	opts := Options{Namespace: "hung", LockTTL: 600 * time.Millisecond, WaitTimeout: time.Second, LocalCapacity: -1}
	leader, waiter := realNode(t, srv, opts), realNode(t, srv, opts)
	ctx := context.Background()
	gate, started := make(chan struct{}), make(chan struct{})
	type out struct {
		v   string
		err error
		at  time.Time
	}
	lead := make(chan out, 1)
	go func() {
		v, err := leader.Get(ctx, "k", func(context.Context, string) (string, error) {
			close(started)
			<-gate
			return "leader", nil
		})
		lead <- out{v, err, time.Now()}
	}()
	<-started
	waited := make(chan out, 1)
	go func() {
		v, err := waiter.Get(ctx, "k", func(context.Context, string) (string, error) { return "waiter", nil })
		waited <- out{v, err, time.Now()}
	}()
	eventually(t, 5*time.Second, "the waiter waits", func() bool { return waiter.Stats().LockContended == 1 })
	hung := time.Now()
	srv.Pause(t)
	close(gate) // the leader's loader returns while Redis hangs

	limit := time.After(10 * time.Second)
	var w, l out
	for range 2 {
		select {
		case w = <-waited:
		case l = <-lead:
		case <-limit:
			t.Fatalf("callers still waiting 10 s after Redis hung (WaitTimeout %v)", opts.WaitTimeout)
		}
	}
	srv.Resume()
	if w.err != nil || w.v != "waiter" {
		t.Fatalf("waiter = %q, %v; want its own load after WaitTimeout", w.v, w.err)
	}
	if l.err != nil || l.v != "leader" {
		t.Fatalf("leader = %q, %v; want its value even though the fill could not land", l.v, l.err)
	}
	figure(t, "Redis hung: waiter answered after %v, leader after %v (WaitTimeout %v, LockTTL %v)",
		w.at.Sub(hung).Round(time.Millisecond), l.at.Sub(hung).Round(time.Millisecond), opts.WaitTimeout, opts.LockTTL)
}

// A key of the wrong type is one bad key: a counted miss for that key, not
// an open circuit for every key on the node. A lease key that never
// expires does not block its key forever.
func TestFaultWrongTypeKeys(t *testing.T) {
	onTargets(t, wrongTypeKeys)
}

func wrongTypeKeys(t *testing.T, tg target, mode Invalidation) {
	opts := Options{Namespace: "wt", LockTTL: 300 * time.Millisecond, WaitTimeout: time.Minute, LocalCapacity: -1, Invalidation: mode}
	nodes := make([]*Cache[string], 5)
	for i := range nodes {
		nodes[i] = tg.node(t, nil, opts)
	}
	admin := tg.client(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, cmd := range [][]any{
		{"RPUSH", "wt:{bad}", "x"},          // a list where a value belongs
		{"RPUSH", "wt:{badlock}:lock", "x"}, // a list where a lease belongs
		{"SET", "wt:{forever}:lock", "foreign"},
	} {
		if err := admin.Do(ctx, cmd...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, key := range []string{"bad", "badlock", "forever"} {
		for _, n := range nodes {
			gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			v, err := n.Get(gctx, key, func(context.Context, string) (string, error) { return "loaded", nil })
			cancel()
			if err != nil || v != "loaded" {
				t.Fatalf("Get(%s) = %q, %v; want the loaded value", key, v, err)
			}
		}
	}
	l := &countingLoader{delay: 50 * time.Millisecond}
	storm(t, nodes, 20, "good", l.load)
	s := totalStats(nodes)
	var corrupt uint64
	for _, n := range nodes {
		corrupt += n.Stats().Corrupt
	}
	figure(t, "%d loads for a stampede on a good key after wrong-type keys on every node; %d bad reads counted", l.calls.Load(), corrupt)
	if got := l.calls.Load(); got != 1 {
		t.Fatalf("a good key's stampede loaded %d times after wrong-type keys (stats %+v)", got, s)
	}
	if corrupt == 0 {
		t.Fatal("the wrong-type reads were not counted")
	}
}

// Close while Sets and Deletes are running: no panic, no hang, each write
// either lands or returns ErrClosed.
func TestFaultCloseDuringWrites(t *testing.T) {
	onTargets(t, func(t *testing.T, tg target, mode Invalidation) {
		closeDuringWrites(t, tg.client(t, nil), mode, 20)
		figure(t, "20 Closes during 8 writers each: no panic, no hang")
	})
	t.Run("no Redis", func(t *testing.T) {
		// Writes to L1 alone are fast: many more chances to race.
		closeDuringWrites(t, nil, InvalidateAuto, 200)
		figure(t, "200 Closes during 8 writers each: no panic, no hang")
	})
}

func closeDuringWrites(t *testing.T, rdb redis.UniversalClient, mode Invalidation, rounds int) {
	for round := range rounds {
		c, err := New[string](rdb, Options{Namespace: "closing", Invalidation: mode})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var bad atomic.Value
		for g := range 8 {
			wg.Go(func() {
				for i := 0; ; i++ {
					key := fmt.Sprintf("k%d", (g*7+i)%16)
					var err error
					if i%3 == 0 {
						err = c.Delete(context.Background(), key)
					} else {
						err = c.Set(context.Background(), key, "v")
					}
					if errors.Is(err, ErrClosed) {
						return
					}
					if err != nil {
						bad.Store(err)
						return
					}
				}
			})
		}
		time.Sleep(time.Duration(round%5) * time.Millisecond)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		waitOrFail(t, &wg, 10*time.Second, "writers after Close")
		if err, _ := bad.Load().(error); err != nil {
			t.Fatalf("a write failed with %v, want nil or ErrClosed", err)
		}
	}
}

// Redis killed mid-stampede and restarted: every caller is answered, with
// at most one load per node.
func TestFaultRedisKilledMidStampede(t *testing.T) {
	srv := redistest.Start(t)
	opts := Options{Namespace: "killed", BreakerCooldown: 100 * time.Millisecond, WaitTimeout: 5 * time.Second}
	const n = 5
	nodes := make([]*Cache[string], n)
	for i := range nodes {
		nodes[i] = realNode(t, srv, opts)
	}
	var loads atomic.Int64
	started := make(chan struct{}, n)
	load := func(ctx context.Context, key string) (string, error) {
		loads.Add(1)
		started <- struct{}{}
		time.Sleep(300 * time.Millisecond)
		return "v", nil
	}
	go func() {
		<-started
		srv.Kill()
		time.Sleep(300 * time.Millisecond)
		srv.Restart(t)
	}()
	start := time.Now()
	var errs atomic.Int64
	var wg sync.WaitGroup
	for _, c := range nodes {
		for range 100 {
			wg.Go(func() {
				if v, err := c.Get(context.Background(), "k", load); err != nil || v != "v" {
					errs.Add(1)
				}
			})
		}
	}
	waitOrFail(t, &wg, 30*time.Second, "callers")
	figure(t, "%d callers, %d errors, %d loads, all answered in %v", n*100, errs.Load(), loads.Load(), time.Since(start).Round(time.Millisecond))
	if errs.Load() != 0 || loads.Load() > n {
		t.Fatalf("%d errors and %d loads; want 0 errors and at most one load per node", errs.Load(), loads.Load())
	}
}

// One node partitioned away from Redis and healed: while partitioned its
// callers are answered within the library's own deadlines, and once healed
// it serves what the rest of the fleet wrote meanwhile.
func TestFaultPartitionedNode(t *testing.T) {
	onTargets(t, func(t *testing.T, tg target, mode Invalidation) {
		f := redistest.NewFaults()
		opts := Options{Namespace: "part", TTL: time.Minute, LocalTTL: time.Minute, BreakerCooldown: 200 * time.Millisecond, Invalidation: mode}
		node := tg.node(t, f, opts)
		other := tg.node(t, nil, opts)
		keys := keyRange("k", 20)
		fillL1(t, other, []*Cache[string]{node}, keys, "old")
		ctx := context.Background()
		f.Partition()
		for _, k := range keys {
			if err := other.Set(ctx, k, "new"); err != nil {
				t.Fatal(err)
			}
		}
		// Callers on the partitioned node keep being answered, and within a
		// bound they stop being served the L1 copies it can no longer check.
		var worst time.Duration
		start := time.Now()
		for {
			old := 0
			for _, k := range keys[:3] {
				gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				t0 := time.Now()
				v, err := node.Get(gctx, k, func(context.Context, string) (string, error) { return "alone", nil })
				cancel()
				if err != nil {
					t.Fatalf("Get on the partitioned node = %v", err)
				}
				worst = max(worst, time.Since(t0))
				if v == "old" {
					old++
				}
			}
			if old == 0 {
				break
			}
			if time.Since(start) > 8*time.Second {
				t.Fatalf("the partitioned node still serves its L1 copies %v into the partition", time.Since(start).Round(time.Millisecond))
			}
			time.Sleep(10 * time.Millisecond)
		}
		unsure := time.Since(start)
		f.Heal()
		took := converge(t, node, keys, "new", 5*time.Second)
		figure(t, "partitioned node: L1 copies served for %v into the partition, slowest Get %v; after healing, all %d keys new in %v",
			unsure.Round(time.Millisecond), worst.Round(time.Millisecond), len(keys), took.Round(time.Millisecond))
	})
}

// The node holding the rebuild lease is killed mid-load: the fleet waits
// out the lease, one node loads, every caller is answered.
func TestFaultHolderKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	srv := redistest.Start(t)
	const lockTTL = time.Second
	opts := Options{Namespace: "killedholder", LockTTL: lockTTL}
	cmd := helperCmd(t, "cacheload", "STAMPEDE_REDIS_ADDR="+srv.Addr(), "STAMPEDE_LOCK_KEY=k",
		"STAMPEDE_LOCK_TTL="+lockTTL.String(), "STAMPEDE_NAMESPACE="+opts.Namespace)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, _ := stdout.Read(buf); !strings.Contains(string(buf[:n]), "LOADING") {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("helper said %q, want LOADING", buf[:n])
	}
	nodes := make([]*Cache[string], 3)
	for i := range nodes {
		nodes[i] = realNode(t, srv, opts)
	}
	killed := time.Now()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	l := &countingLoader{delay: 50 * time.Millisecond}
	vals := storm(t, nodes, 100, "k", l.load)
	for _, v := range vals {
		if v != "v1:k" {
			t.Fatalf("a caller got %q", v)
		}
	}
	figure(t, "holder killed mid-load: %d more load, %d callers answered %v after the kill (LockTTL %v)",
		l.calls.Load(), len(vals), time.Since(killed).Round(time.Millisecond), lockTTL)
	if l.calls.Load() != 1 {
		t.Fatalf("%d loads after the holder died, want 1", l.calls.Load())
	}
}

// A Redis out of memory under noeviction refuses every key's lease, fill,
// and, inside MULTI, even reads: that is Redis being unavailable (the
// circuit opens, the callers are served by their own loads), not every key
// being corrupt.
func TestFaultRedisFull(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx := context.Background()
	c := realNode(t, srv, Options{Namespace: "full"})
	require.NoError(t, admin.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err())
	require.NoError(t, admin.ConfigSet(ctx, "maxmemory", "1").Err())
	defer admin.ConfigSet(ctx, "maxmemory", "0")
	for _, k := range []string{"a", "b", "c"} {
		v, err := c.Get(ctx, k, func(context.Context, string) (string, error) { return "v", nil })
		require.NoError(t, err)
		require.Equal(t, "v", v)
	}
	s := c.Stats()
	figure(t, "Redis full: %d Redis errors, %d entries taken for corrupt, %d loads", s.RedisErrors, s.Corrupt, s.Loads)
	require.Positive(t, s.RedisErrors)
	require.Zero(t, s.Corrupt)
}
