package stampede

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stampede-go/stampede/internal/redistest"
)

// A server that leaves the Cluster takes this node's subscription on it
// out of the reckoning: once the client has let go of its connections to
// it, the probes that can no longer reach it flush L1 no more, and the
// subscription is closed.
func TestTrackingServerLeavesCluster(t *testing.T) {
	cl := redistest.StartCluster(t)
	ctx := context.Background()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs(), ClusterStateReloadInterval: time.Second})
	t.Cleanup(func() { _ = rdb.Close() })
	var lastFlush atomic.Int64 // unix ns of the last flush
	var flushes atomic.Int64
	c, err := New[string](rdb, Options{Namespace: "leave", TTL: time.Hour, LocalTTL: time.Hour, Invalidation: InvalidateTracking,
		Observer: ObserverFunc(func(_ context.Context, e Event) {
			if e.Kind == EventLocalFlush {
				flushes.Add(1)
				lastFlush.Store(time.Now().UnixNano())
			}
		})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	keys := keyRange("k", 30) // on every server
	readAll := func() {
		for _, k := range keys {
			if _, err := c.Get(ctx, k, loadConst("v")); err != nil {
				t.Errorf("Get(%s) = %v", k, err)
			}
		}
	}
	readAll()

	addrs := cl.Addrs()
	node := func(addr string) *redis.Client {
		n := redis.NewClient(&redis.Options{Addr: addr})
		t.Cleanup(func() { _ = n.Close() })
		return n
	}
	leaving, stay := node(addrs[2]), []*redis.Client{node(addrs[0]), node(addrs[1])}
	id, err := leaving.Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatal(err)
	}
	shards, err := stay[0].ClusterShards(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	// Scale-in as an operator does it, for an emptied server: it forgets
	// the Cluster, the others forget it, and a server that stays takes its
	// slots.
	if err := leaving.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := leaving.Do(ctx, "CLUSTER", "RESET", "SOFT").Err(); err != nil {
		t.Fatal(err)
	}
	for _, n := range stay {
		if err := n.Do(ctx, "CLUSTER", "FORGET", id).Err(); err != nil {
			t.Fatal(err)
		}
	}
	moved := 0
	for _, sh := range shards {
		if len(sh.Nodes) == 0 || sh.Nodes[0].ID != id {
			continue
		}
		for _, r := range sh.Slots {
			if err := stay[0].Do(ctx, "CLUSTER", "ADDSLOTSRANGE", r.Start, r.End).Err(); err != nil {
				t.Fatal(err)
			}
			moved++
		}
	}
	if moved == 0 {
		t.Fatalf("no slots of %s in CLUSTER SHARDS: %+v", id, shards)
	}
	if err := stay[0].Do(ctx, "CLUSTER", "BUMPEPOCH").Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "a Cluster of the two servers that stay", func() bool {
		for _, n := range stay {
			info, err := n.ClusterInfo(ctx).Result()
			if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:2") {
				return false
			}
		}
		return true
	})
	left := time.Now()
	readAll()

	// go-redis closes a server's client a minute after the server left its
	// view of the Cluster. Until then this node still has connections
	// there, and flushes L1 for the probes that do not come back.
	const quiet = 5 * time.Second
	deadline := time.Now().Add(100 * time.Second)
	for {
		readAll()
		last := time.Unix(0, lastFlush.Load())
		if time.Since(last) >= quiet && time.Since(left) >= quiet {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v after the server left, L1 is still flushed (%d flushes; the last %v ago)",
				time.Since(left).Round(time.Second), flushes.Load(), time.Since(last).Round(time.Millisecond))
		}
		time.Sleep(100 * time.Millisecond)
	}
	quietAt := time.Since(left)
	eventually(t, 20*time.Second, "the subscription on the server that left to be closed", func() bool {
		list, err := leaving.ClientList(ctx).Result()
		return err == nil && !strings.Contains(list, " name=stampede-"+c.nodeID+" ")
	})
	// The node still hears about the keys it holds.
	other := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs[:2]})
	t.Cleanup(func() { _ = other.Close() })
	writer, err := New[string](other, Options{Namespace: "leave", TTL: time.Hour, LocalTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = writer.Close() })
	fillL1(t, writer, []*Cache[string]{c}, keys, "old")
	for _, k := range keys {
		if err := writer.Set(ctx, k, "new"); err != nil {
			t.Fatal(err)
		}
	}
	converge(t, c, keys, "new", 5*time.Second)
	t.Logf("L1 flushed %d times in all; no flush from %v after the server left; its subscription closed after %v",
		flushes.Load(), (quietAt - quiet).Round(time.Second), time.Since(left).Round(time.Second))
}

// A Cluster client whose NewClient replaces the node clients' dialer makes
// connections whose closing the cache cannot see, and a closed tracked
// connection takes its keys with it: tracking is refused, and
// InvalidateAuto falls back to broadcast, where writes still reach L1.
func TestTrackingRefusesConnectionsItDidNotDial(t *testing.T) {
	cl := redistest.StartCluster(t)
	var d net.Dialer
	client := func() *redis.ClusterClient {
		rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs(),
			NewClient: func(o *redis.Options) *redis.Client {
				o.Dialer = d.DialContext // a per-node proxy dialer, say
				return redis.NewClient(o)
			}})
		t.Cleanup(func() { _ = rdb.Close() })
		return rdb
	}
	opts := Options{Namespace: "undialed", TTL: time.Hour, LocalTTL: time.Hour}
	if _, err := New[string](client(), Options{Namespace: "undialed", Invalidation: InvalidateTracking}); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("New with InvalidateTracking = %v, want ErrInvalidOptions", err)
	}
	c, err := New[string](client(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if m := c.Stats().Invalidation; m != InvalidateBroadcast {
		t.Fatalf("InvalidateAuto chose %v, want broadcast", m)
	}
	writer, err := New[string](cl.Client(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = writer.Close() })
	keys := keyRange("k", 30)
	fillL1(t, writer, []*Cache[string]{c}, keys, "old")
	for _, k := range keys {
		if err := writer.Set(context.Background(), k, "new"); err != nil {
			t.Fatal(err)
		}
	}
	converge(t, c, keys, "new", 5*time.Second)
}
