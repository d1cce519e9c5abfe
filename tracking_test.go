package stampede

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/stampede-go/stampede/internal/redistest"
)

// New picks tracking where the client and the server support it, and
// broadcast elsewhere; InvalidateTracking fails where it cannot be had.
func TestInvalidationModeChosenAtNew(t *testing.T) {
	srv := redistest.Start(t)
	mr := mini(t)
	idle := redistest.Start(t, "--timeout", "300")
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": srv.Addr()}})
	t.Cleanup(func() { _ = ring.Close() })
	for _, tc := range []struct {
		name string
		rdb  redis.UniversalClient
		mode Invalidation
		want Invalidation // InvalidateAuto: New fails
	}{
		{"redis-server", srv.Client(t), InvalidateAuto, InvalidateTracking},
		{"redis-server, asked for tracking", srv.Client(t), InvalidateTracking, InvalidateTracking},
		{"redis-server, asked for broadcast", srv.Client(t), InvalidateBroadcast, InvalidateBroadcast},
		{"miniredis", mr.client(t), InvalidateAuto, InvalidateBroadcast},
		{"miniredis, asked for tracking", mr.client(t), InvalidateTracking, InvalidateAuto},
		{"Ring", ring, InvalidateAuto, InvalidateBroadcast},
		{"Ring, asked for tracking", ring, InvalidateTracking, InvalidateAuto},
		{"server that closes idle clients", idle.Client(t), InvalidateAuto, InvalidateBroadcast},
		{"server that closes idle clients, asked for tracking", idle.Client(t), InvalidateTracking, InvalidateAuto},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New[string](tc.rdb, Options{Namespace: "mode", Invalidation: tc.mode})
			if tc.want == InvalidateAuto {
				if !errors.Is(err, ErrInvalidOptions) {
					t.Fatalf("New = %v, want ErrInvalidOptions", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got := c.Stats().Invalidation; got != tc.want {
				t.Fatalf("mode %v, want %v", got, tc.want)
			}
		})
	}
	if _, err := New[string](srv.Client(t), Options{Invalidation: InvalidateTracking + 1}); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("an unknown mode: New = %v, want ErrInvalidOptions", err)
	}
	c, err := New[string](nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.Stats().Invalidation; got != InvalidateAuto {
		t.Fatalf("without Redis: mode %v, want none (auto)", got)
	}
}

// In tracking mode a node receives messages about the keys it read, one
// per key and write, and none about keys it never touched.
func TestTrackingFollowsInterest(t *testing.T) {
	for _, b := range []func(testing.TB) backend{realRedis, cluster} {
		b := b(t)
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			opts := Options{Namespace: "interest", TTL: time.Hour, LocalTTL: time.Hour}
			nodes := fleet(t, b, 3, opts)
			reader, bystander, writer := nodes[0], nodes[1], nodes[2]
			held, untouched := keyRange("held", 30), keyRange("untouched", 30)
			for _, k := range append(held, untouched...) {
				if err := writer.Set(ctx, k, "v1"); err != nil {
					t.Fatal(err)
				}
			}
			for _, k := range held {
				if v, err := reader.Get(ctx, k, nil2); err != nil || v != "v1" {
					t.Fatalf("Get(%s) = %q, %v", k, v, err)
				}
			}
			for _, k := range append(held, untouched...) {
				if err := writer.Set(ctx, k, "v2"); err != nil {
					t.Fatal(err)
				}
			}
			for _, k := range held {
				eventually(t, 2*time.Second, "the write reaches the reader", func() bool {
					v, _ := reader.Get(ctx, k, nil2)
					return v == "v2"
				})
			}
			// The messages of one server arrive in order: a last write,
			// of a key the other two nodes read, marks the end of what
			// came before it on their subscriptions.
			if err := writer.Set(ctx, "marker", "m1"); err != nil {
				t.Fatal(err)
			}
			for _, n := range []*Cache[string]{bystander, writer} {
				if v, _ := n.Get(ctx, "marker", nil2); v != "m1" {
					t.Fatalf("marker = %q", v)
				}
			}
			if err := writer.Set(ctx, "marker", "m2"); err != nil {
				t.Fatal(err)
			}
			for _, n := range []*Cache[string]{bystander, writer} {
				eventually(t, 2*time.Second, "the marker", func() bool {
					v, _ := n.Get(ctx, "marker", nil2)
					return v == "m2"
				})
			}
			got := map[string]uint64{"reader": reader.Stats().Messages, "bystander": bystander.Stats().Messages, "writer": writer.Stats().Messages}
			want := map[string]uint64{"reader": uint64(len(held)), "bystander": 1, "writer": 1}
			if !maps.Equal(got, want) {
				t.Fatalf("messages %v, want %v: one per write of a key read, none for %d writes of keys not read", got, want, len(untouched))
			}
		})
	}
}

// nil2 is a loader for keys that must be in Redis already.
func nil2(_ context.Context, k string) (string, error) {
	return "", fmt.Errorf("key %s not in Redis", k)
}

func loadConst(v string) func(context.Context, string) (string, error) {
	return func(context.Context, string) (string, error) { return v, nil }
}

// In tracking mode a node keeps in L1 only what it read: a value it wrote
// itself (Set, fill) was never read by it, so Redis would not tell it that
// another node overwrote it.
func TestTrackingOwnWritesReadBack(t *testing.T) {
	for _, b := range []func(testing.TB) backend{realRedis, cluster} {
		b := b(t)
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			nodes := fleet(t, b, 2, Options{Namespace: "ownw", TTL: time.Hour, LocalTTL: time.Hour})
			a, other := nodes[0], nodes[1]
			if err := a.Set(ctx, "set", "a"); err != nil {
				t.Fatal(err)
			}
			if v, err := a.Get(ctx, "filled", loadConst("a")); err != nil || v != "a" {
				t.Fatalf("Get = %q, %v", v, err)
			}
			for _, k := range []string{"set", "filled"} {
				if v, _ := a.Get(ctx, k, nil2); v != "a" {
					t.Fatalf("%s: the writer reads %q back, want its own value", k, v)
				}
				if err := other.Set(ctx, k, "other"); err != nil {
					t.Fatal(err)
				}
				eventually(t, 2*time.Second, k+": another node's write reaches the writer", func() bool {
					v, _ := a.Get(ctx, k, nil2)
					return v == "other"
				})
			}
		})
	}
}

// A tracked connection that the server closes takes what it tracked with
// it: the node notices when the connection is next used (its probes use
// one every probeEvery) and flushes L1.
func TestTrackingClosedConnectionFlushes(t *testing.T) {
	srv := redistest.Start(t)
	opts := Options{Namespace: "closed", TTL: time.Hour, LocalTTL: time.Hour}
	reader, writer := realNode(t, srv, opts), realNode(t, srv, opts)
	keys := keyRange("k", 20)
	fillL1(t, writer, []*Cache[string]{reader}, keys, "old")
	ctx := context.Background()
	admin := srv.Client(t)
	var sub int64
	reader.trk.mu.Lock()
	for _, s := range reader.trk.subs {
		sub = s.live.Load()
	}
	reader.trk.mu.Unlock()
	list, err := admin.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	killed := 0
	for _, line := range strings.Split(list, "\n") {
		var id int64
		if strings.Contains(line, fmt.Sprintf(" redir=%d ", sub)) {
			if _, err := fmt.Sscanf(line, "id=%d ", &id); err != nil {
				t.Fatal(err)
			}
			if err := admin.ClientKillByFilter(ctx, "ID", fmt.Sprint(id)).Err(); err != nil {
				t.Fatal(err)
			}
			killed++
		}
	}
	if killed == 0 {
		t.Fatalf("no connection redirects to the reader's subscription %d:\n%s", sub, list)
	}
	for _, k := range keys {
		if err := writer.Set(ctx, k, "new"); err != nil {
			t.Fatal(err)
		}
	}
	took := converge(t, reader, keys, "new", 5*time.Second)
	t.Logf("%d tracked connections closed by the server; all %d keys new after %v", killed, len(keys), took.Round(time.Millisecond))
}

// FLUSHALL reaches tracking nodes as a message naming no key: L1 is
// flushed.
func TestTrackingFlushAllFlushesL1(t *testing.T) {
	srv := redistest.Start(t)
	opts := Options{Namespace: "flushall", TTL: time.Hour, LocalTTL: time.Hour}
	reader, writer := realNode(t, srv, opts), realNode(t, srv, opts)
	keys := keyRange("k", 10)
	fillL1(t, writer, []*Cache[string]{reader}, keys, "old")
	if err := srv.Client(t).FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	converge(t, reader, keys, "loaded", 5*time.Second)
}

// Waiters are woken when the holder drops the lease without a value (its
// loader failed), not by the re-check: one of them then loads.
func TestWaitersWokenByLeaseDropped(t *testing.T) {
	for _, mode := range []Invalidation{InvalidateBroadcast, InvalidateTracking} {
		t.Run(mode.String(), func(t *testing.T) {
			srv := redistest.Start(t)
			opts := Options{Namespace: "dropped", Recheck: time.Hour, WaitTimeout: time.Hour, Invalidation: mode}
			holder, waiter := realNode(t, srv, opts), realNode(t, srv, opts)
			ctx := context.Background()
			gate, started := make(chan struct{}), make(chan struct{})
			failed := make(chan error, 1)
			go func() {
				_, err := holder.Get(ctx, "k", func(context.Context, string) (string, error) {
					close(started)
					<-gate
					return "", errors.New("db down")
				})
				failed <- err
			}()
			<-started
			got := make(chan string, 1)
			go func() {
				v, _ := waiter.Get(ctx, "k", loadConst("waiter"))
				got <- v
			}()
			eventually(t, 5*time.Second, "the waiter waits", func() bool { return waiter.Stats().LockContended == 1 })
			close(gate)
			if err := <-failed; err == nil {
				t.Fatal("the holder's load did not fail")
			}
			select {
			case v := <-got:
				if v != "waiter" {
					t.Fatalf("the waiter got %q, want its own load", v)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the waiter still waits 10 s after the lease was dropped (Recheck 1 h): not woken")
			}
		})
	}
}

// After a server restart (client ids start again, so the subscription's
// old id may be anybody's) tracking nodes resubscribe, redirect their new
// connections to the new subscription, and hear writes again.
func TestTrackingAfterRestart(t *testing.T) {
	srv := redistest.Start(t)
	opts := Options{Namespace: "restart", TTL: time.Hour, LocalTTL: time.Hour, BreakerCooldown: 100 * time.Millisecond}
	reader, writer := realNode(t, srv, opts), realNode(t, srv, opts)
	keys := keyRange("k", 10)
	fillL1(t, writer, []*Cache[string]{reader}, keys, "before")
	srv.Restart(t)
	// Other clients take the low ids before the subscriptions are back.
	for range 5 {
		srv.Client(t).Ping(context.Background())
	}
	eventually(t, 10*time.Second, "writes land", func() bool {
		return writer.Set(context.Background(), "probe", "x") == nil
	})
	fillL1(t, writer, []*Cache[string]{reader}, keys, "after")
	for _, k := range keys {
		if err := writer.Set(context.Background(), k, "later"); err != nil {
			t.Fatal(err)
		}
	}
	converge(t, reader, keys, "later", 5*time.Second)
	if m := reader.Stats().Invalidation; m != InvalidateTracking {
		t.Fatalf("mode %v", m)
	}
}

// Options.OnClient receives the clients the cache makes in tracking mode,
// so that hooks added there see the reads that go through them, also after
// a reconnection replaced the client of tracked reads.
func TestOnClientSeesTrackedReads(t *testing.T) {
	srv := redistest.Start(t)
	var made atomic.Int64
	h := &roundTrips{}
	opts := Options{Namespace: "onclient", TTL: time.Hour, LocalCapacity: -1, Invalidation: InvalidateTracking,
		OnClient: func(rdb redis.UniversalClient) {
			made.Add(1)
			rdb.AddHook(h)
		}}
	c := realNode(t, srv, opts)
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	read := func(what string) {
		t.Helper()
		// Once first, so that dialling (OnConnect's commands) is done.
		if _, err := c.Get(ctx, "k", nil2); err != nil {
			t.Fatal(err)
		}
		h.n.Store(0)
		if v, err := c.Get(ctx, "k", nil2); err != nil || v != "v" {
			t.Fatalf("Get = %q, %v", v, err)
		}
		if n := h.n.Load(); n != 1 {
			t.Fatalf("%s: hooks on the clients OnClient received saw %d round trips for a Redis hit, want 1", what, n)
		}
	}
	read("after New")
	before := made.Load()
	if before < 2 {
		t.Fatalf("OnClient called %d times, want the tracked reads' client and the subscription's", before)
	}
	if err := srv.Client(t).Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "a new client of tracked reads", func() bool { return made.Load() > before })
	read("after a reconnection")
}

// probeLoss makes every other probe after the first few vanish: the
// PUBLISH is answered as delivered but never reaches Redis, as a frame
// lost on the way to the subscription would be.
type probeLoss struct {
	seen, dropped atomic.Int64
	drops         int64 // how many to drop
}

func (h *probeLoss) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *probeLoss) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		args := cmd.Args()
		if cmd.Name() == "publish" && len(args) == 3 && strings.Contains(fmt.Sprint(args[1]), ":probe:") {
			if n := h.seen.Add(1); n > 2 && n%2 == 1 && h.dropped.Load() < h.drops {
				h.dropped.Add(1)
				cmd.(*redis.IntCmd).SetVal(1)
				return nil
			}
		}
		return next(ctx, cmd)
	}
}

func (h *probeLoss) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// Every probe lost flushes L1, also when the next probe arrives before the
// lost one is judged: hearing probe n+1 says n is not coming.
func TestTrackingEveryLostProbeFlushes(t *testing.T) {
	srv := redistest.Start(t)
	loss := &probeLoss{drops: 3}
	var flushes atomic.Int64
	opts := Options{Namespace: "probe", TTL: time.Hour, LocalTTL: time.Hour, Invalidation: InvalidateTracking,
		OnClient: func(rdb redis.UniversalClient) { rdb.AddHook(loss) },
		Observer: ObserverFunc(func(_ context.Context, e Event) {
			if e.Kind == EventLocalFlush && e.Reason == flushLostProbe {
				flushes.Add(1)
			}
		}),
	}
	c := realNode(t, srv, opts)
	eventually(t, 20*time.Second, "the probes to be dropped", func() bool { return loss.dropped.Load() == loss.drops })
	// The last one dropped is heard of by the next probe or judged within
	// probeWait, whichever comes first.
	time.Sleep(probeEvery + probeWait)
	if got := flushes.Load(); got != loss.drops {
		t.Fatalf("%d probes lost, %d flushes for a lost probe; want one each", loss.drops, got)
	}
	if got := c.Stats().LocalFlushes; got < uint64(loss.drops) {
		t.Fatalf("Stats().LocalFlushes = %d, want at least %d", got, loss.drops)
	}
}

// The clients tracking mode makes have the settings of the user's client,
// also where the user asked for none (no retries, no timeouts), which
// go-redis reports as zeros that would read as "the default" to a new
// client.
func TestTrackingClientsKeepTheUsersSettings(t *testing.T) {
	srv := redistest.Start(t)
	single := []redis.Options{
		{},
		{MaxRetries: -1, ReadTimeout: -1, WriteTimeout: -1, MinRetryBackoff: -1, MaxRetryBackoff: -1},
		{ReadTimeout: -2, WriteTimeout: -2},
		{MaxRetries: 7, ReadTimeout: 250 * time.Millisecond, MinRetryBackoff: time.Millisecond, MaxRetryBackoff: 3 * time.Millisecond},
	}
	for i, raw := range single {
		raw.Addr = srv.Addr()
		user := redis.NewClient(&raw)
		t.Cleanup(func() { _ = user.Close() })
		c := trackingCache(t, user)
		settings := func(o *redis.Options) string {
			return fmt.Sprintf("retries %d, timeouts %v/%v, backoff %v-%v, pool timeout %v",
				o.MaxRetries, o.ReadTimeout, o.WriteTimeout, o.MinRetryBackoff, o.MaxRetryBackoff, o.PoolTimeout)
		}
		want := settings(user.Options())
		if got := settings(c.trk.data.Load().rdb.(*redis.Client).Options()); got != want {
			t.Errorf("options %d: the client of tracked reads has %s; the user's %s", i, got, want)
		}
		for _, s := range c.trk.subs {
			if got := settings(s.client.Options()); got != want {
				t.Errorf("options %d: the subscription's client has %s; the user's %s", i, got, want)
			}
		}
	}
	cl := redistest.StartCluster(t)
	cluster := []redis.ClusterOptions{
		{},
		{MaxRedirects: -1, MaxRetries: -1, ReadTimeout: -1, WriteTimeout: -1, MinRetryBackoff: -1, MaxRetryBackoff: -1},
		{MaxRedirects: 5, MaxRetries: 2, ReadTimeout: time.Second},
	}
	for i, raw := range cluster {
		raw.Addrs = cl.Addrs()
		user := redis.NewClusterClient(&raw)
		t.Cleanup(func() { _ = user.Close() })
		c := trackingCache(t, user)
		settings := func(o *redis.ClusterOptions) string {
			return fmt.Sprintf("redirects %d, retries %d, timeouts %v/%v, backoff %v-%v",
				o.MaxRedirects, o.MaxRetries, o.ReadTimeout, o.WriteTimeout, o.MinRetryBackoff, o.MaxRetryBackoff)
		}
		want := settings(user.Options())
		if got := settings(c.trk.data.Load().rdb.(*redis.ClusterClient).Options()); got != want {
			t.Errorf("Cluster options %d: the client of tracked reads has %s; the user's %s", i, got, want)
		}
	}
}

// trackingCache is a cache in tracking mode on rdb.
func trackingCache(t *testing.T, rdb redis.UniversalClient) *Cache[string] {
	t.Helper()
	c, err := New[string](rdb, Options{Namespace: "settings", Invalidation: InvalidateTracking})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// slowSubscribe delays the SUBSCRIBE command on a connection.
type slowSubscribe struct{ net.Conn }

func (c slowSubscribe) Write(p []byte) (int, error) {
	if bytes.Contains(bytes.ToLower(p), []byte("subscribe")) {
		time.Sleep(300 * time.Millisecond)
	}
	return c.Conn.Write(p)
}

// otherConn runs a command on a subscription's client while its
// subscription is being made: the connection that command opens is not the
// subscription, and the tracked connections must not redirect to it.
type otherConn struct{ rdb redis.UniversalClient }

func (h otherConn) DialHook(next redis.DialHook) redis.DialHook {
	var first atomic.Bool
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil || !first.CompareAndSwap(false, true) {
			return conn, err
		}
		go func() {
			time.Sleep(100 * time.Millisecond)
			_ = h.rdb.Ping(context.Background()).Err()
		}()
		return slowSubscribe{conn}, nil
	}
}

func (otherConn) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (otherConn) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// A command run through a client that Options.OnClient received (a
// warm-up, a health check) does not become the target of the tracking
// messages, even when it connects while the subscription is being made.
func TestTrackingOnClientCommandsDoNotStealTheRedirect(t *testing.T) {
	srv := redistest.Start(t)
	made := 0
	opts := Options{Namespace: "steal", TTL: time.Hour, LocalTTL: time.Hour, Invalidation: InvalidateTracking,
		OnClient: func(rdb redis.UniversalClient) {
			// The client of tracked reads first, then the subscription's.
			if made++; made == 2 {
				rdb.AddHook(otherConn{rdb})
			}
		}}
	reader := realNode(t, srv, opts)
	writer := realNode(t, srv, Options{Namespace: "steal", TTL: time.Hour, LocalTTL: time.Hour})
	keys := keyRange("k", 10)
	fillL1(t, writer, []*Cache[string]{reader}, keys, "old")
	ctx := context.Background()
	for _, k := range keys {
		if err := writer.Set(ctx, k, "new"); err != nil {
			t.Fatal(err)
		}
	}
	took := converge(t, reader, keys, "new", 3*time.Second)
	t.Logf("all %d keys new on the reader after %v", len(keys), took.Round(time.Millisecond))
}

// An Invalidation reads and writes as its name, for flags and config.
func TestInvalidationText(t *testing.T) {
	for _, m := range []Invalidation{InvalidateAuto, InvalidateBroadcast, InvalidateTracking} {
		b, err := m.MarshalText()
		require.NoError(t, err)
		var got Invalidation
		require.NoError(t, got.UnmarshalText(b))
		require.Equal(t, m, got, "%s", b)
	}
	var m Invalidation
	require.ErrorIs(t, m.UnmarshalText([]byte("both")), ErrInvalidOptions)
	_, err := (InvalidateTracking + 1).MarshalText()
	require.ErrorIs(t, err, ErrInvalidOptions)
}

// The pool of tracked reads never closes a connection for being idle or
// old, whatever the user's client does: a tracked connection that closes
// takes L1 with it. Probes use the pool every second meanwhile, where
// go-redis would close a connection past ConnMaxIdleTime.
func TestTrackingPoolKeepsIdleConnections(t *testing.T) {
	srv := redistest.Start(t)
	user := redis.NewClient(&redis.Options{Addr: srv.Addr(), ConnMaxIdleTime: 50 * time.Millisecond, ConnMaxLifetime: 200 * time.Millisecond})
	t.Cleanup(func() { _ = user.Close() })
	c, err := New[string](user, Options{Namespace: "idle", TTL: time.Hour, LocalTTL: time.Hour, Invalidation: InvalidateTracking})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	keys := keyRange("k", 5)
	inL1 := func(k string) bool {
		res, err := c.Fetch(ctx, k, func(context.Context, string) (string, Entry, error) { return "v", Entry{}, nil })
		return err == nil && res.Source == SourceLocal
	}
	for _, k := range keys {
		// Loaded, then read back tracked: into L1 (whose sets are
		// asynchronous).
		eventually(t, 5*time.Second, "value in L1", func() bool { return inL1(k) })
	}
	before := c.Stats().LocalFlushes
	time.Sleep(3 * probeEvery)
	require.Equal(t, before, c.Stats().LocalFlushes, "L1 flushes while the pool sat idle")
	for _, k := range keys {
		require.True(t, inL1(k), "key %s not in L1 after %v idle", k, 3*probeEvery)
	}
}
