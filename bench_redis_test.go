package stampede

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// BenchmarkRedisHit compares a Get served by Redis (L1 off: one round trip
// for the value and its remaining TTL) with a plain go-redis GET of the same
// value, on one server in one run. The raw GET runs before and after, so
// drift in the machine shows; read the ratio of hit to raw.
func BenchmarkRedisHit(b *testing.B) {
	srv := realRedis(b)
	rdb := srv.client(b)
	ctx := context.Background()
	c := newCache[string](b, srv, Options{Namespace: "bench", TTL: time.Hour, LocalCapacity: -1, Beta: -1})
	load := func(context.Context, string) (string, error) { return "value", nil }
	if _, err := c.Get(ctx, "k", load); err != nil {
		b.Fatal(err)
	}
	rdb.Set(ctx, "raw", "value", time.Hour)
	raw := func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := rdb.Get(ctx, "raw").Bytes(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("raw-GET", raw)
	b.Run("stampede", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Get(ctx, "k", load); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("raw-GET-again", raw)
	if s := c.Stats(); s.Loads != 1 {
		b.Fatalf("loads = %d", s.Loads)
	}
}

// roundTrips counts commands and pipelines sent by a client, but for the
// PUBLISH of tracking mode's probes, which no Get waits for.
type roundTrips struct{ n atomic.Int64 }

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() != "publish" {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// A miss that wins the lease costs one round trip to read, one to take the
// lease, one to write back and publish; nothing polls while the loader runs.
func TestMissThatWinsTheLeaseTakesThreeRoundTrips(t *testing.T) {
	onBackends(t, false, func(t *testing.T, b backend) {
		rdb := b.client(t).(*redis.Client)
		c, err := New[string](rdb, Options{Namespace: "rt", LocalCapacity: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx := context.Background()
		load := func(context.Context, string) (string, error) {
			time.Sleep(150 * time.Millisecond) // long enough for a poll to show
			return "v", nil
		}
		if _, err := c.Get(ctx, "warm", load); err != nil { // loads the scripts
			t.Fatal(err)
		}
		h := &roundTrips{}
		hookAll(c, h)
		if _, err := c.Get(ctx, "cold", load); err != nil {
			t.Fatal(err)
		}
		if got := h.n.Load(); got != 3 {
			t.Fatalf("%d round trips, want 3 (read, lease, fill)", got)
		}
		h.n.Store(0)
		if _, err := c.Get(ctx, "cold", load); err != nil {
			t.Fatal(err)
		}
		if got := h.n.Load(); got != 1 {
			t.Fatalf("a Redis hit took %d round trips, want 1", got)
		}
	})
}
