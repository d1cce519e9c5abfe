package redistest_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stampede-go/stampede/internal/redistest"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestServerSetGet(t *testing.T) {
	ctx := testContext(t)
	s := redistest.Start(t)
	c := s.Client(t)

	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	got, err := c.Get(ctx, "k").Result()
	if err != nil || got != "v" {
		t.Fatalf("GET = %q, %v; want %q, nil", got, err, "v")
	}
}

func TestServerExtraArgs(t *testing.T) {
	ctx := testContext(t)
	s := redistest.Start(t, "--maxmemory", "1mb")
	got, err := s.Client(t).ConfigGet(ctx, "maxmemory").Result()
	if err != nil || got["maxmemory"] != "1048576" {
		t.Fatalf("CONFIG GET maxmemory = %v, %v; want 1048576", got, err)
	}
}

func TestServerKillRestart(t *testing.T) {
	ctx := testContext(t)
	s := redistest.Start(t)
	addr := s.Addr()
	c := s.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}

	s.Kill()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING after Kill succeeded; want an error")
	}
	s.Kill() // a second Kill is harmless

	s.Restart(t)
	if s.Addr() != addr {
		t.Fatalf("Addr after Restart = %s; want %s", s.Addr(), addr)
	}
	// The client made before the crash reconnects by itself.
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Restart: %v", err)
	}
	// Nothing is persisted, so the restarted server is empty.
	if err := c.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET after Restart: err = %v; want redis.Nil", err)
	}
	if err := c.Set(ctx, "k", "v2", 0).Err(); err != nil {
		t.Fatalf("SET after Restart: %v", err)
	}
}

func TestCluster(t *testing.T) {
	ctx := testContext(t)
	cl := redistest.StartCluster(t)
	if n := len(cl.Addrs()); n != 3 {
		t.Fatalf("len(Addrs()) = %d; want 3", n)
	}
	c := cl.Client(t)

	const n = 30
	for i := range n {
		k := fmt.Sprintf("key-%d", i)
		if err := c.Set(ctx, k, i, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
	}
	for i := range n {
		k := fmt.Sprintf("key-%d", i)
		got, err := c.Get(ctx, k).Int()
		if err != nil || got != i {
			t.Fatalf("GET %s = %d, %v; want %d", k, got, err, i)
		}
	}
	// The keys fall in different slots, spread over all three masters.
	var masters atomic.Int32
	err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		size, err := m.DBSize(ctx).Result()
		if err != nil {
			return err
		}
		if size == 0 {
			return fmt.Errorf("master %s holds no keys", m.Options().Addr)
		}
		masters.Add(1)
		return nil
	})
	if err != nil || masters.Load() != 3 {
		t.Fatalf("masters holding keys = %d, %v; want 3", masters.Load(), err)
	}
}

func TestClusterScriptOnHashTag(t *testing.T) {
	ctx := testContext(t)
	c := redistest.StartCluster(t).Client(t)

	// The shape of a value key and its lock key: one hash slot, so one
	// script may touch both.
	script := redis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
return redis.call('MGET', KEYS[1], KEYS[2])`)
	got, err := script.Run(ctx, c, []string{"ns:{user:1}", "ns:{user:1}:lock"}, "value", "token").StringSlice()
	if err != nil || len(got) != 2 || got[0] != "value" || got[1] != "token" {
		t.Fatalf("script = %q, %v; want [value token]", got, err)
	}

	// Without the tag the keys land in different slots and Redis refuses.
	err = script.Run(ctx, c, []string{"ns:user:1", "ns:user:1:lock"}, "value", "token").Err()
	if err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Fatalf("script over two slots: err = %v; want CROSSSLOT", err)
	}
}

func TestMini(t *testing.T) {
	ctx := testContext(t)
	m, c := redistest.Mini(t)
	if err := c.Set(ctx, "k", "v", time.Minute).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if got, err := m.Get("k"); err != nil || got != "v" {
		t.Fatalf("miniredis Get = %q, %v; want %q", got, err, "v")
	}
	m.FastForward(time.Minute)
	if m.Exists("k") {
		t.Fatal("key still there after its TTL passed")
	}
}
