package stampede

import (
	"context"
	"fmt"

	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/stampede-go/stampede/internal/redistest"
)

func TestMain(m *testing.M) {
	// Tests kill Redis on purpose; go-redis would log every failed dial.
	redis.SetLogger(quietLogger{})
	goleak.VerifyTestMain(m)
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// backend is a Redis for a test: miniredis (fast, time under control), a real
// redis-server, or a real three-master Cluster.
type backend struct {
	name    string
	mr      *miniredis.Miniredis // nil for real servers
	srv     *redistest.Server    // the real single server, if any
	cluster *redistest.Cluster
}

// client returns a new client with its own pool, as a separate node would
// have, closed when the test ends.
func (b backend) client(t testing.TB) redis.UniversalClient {
	switch {
	case b.mr != nil:
		c := redis.NewClient(&redis.Options{Addr: b.mr.Addr()})
		t.Cleanup(func() { c.Close() })
		return c
	case b.srv != nil:
		return b.srv.Client(t)
	default:
		return b.cluster.Client(t)
	}
}

// advance moves time forward by d for Redis and for this process: miniredis
// is fast-forwarded, a real server is waited for.
func (b backend) advance(d time.Duration) {
	if b.mr != nil {
		b.mr.FastForward(d)
	}
	time.Sleep(d)
}

func mini(t testing.TB) backend {
	return backend{name: "miniredis", mr: miniredis.RunT(t)}
}

func realRedis(t testing.TB) backend {
	return backend{name: "redis", srv: redistest.Start(t)}
}

func cluster(t testing.TB) backend {
	return backend{name: "cluster", cluster: redistest.StartCluster(t)}
}

// onBackends runs fn against miniredis, a real redis-server and, with
// withCluster, a real Cluster. The real ones skip locally when redis-server
// is not installed and fail under CI=true.
func onBackends(t *testing.T, withCluster bool, fn func(t *testing.T, b backend)) {
	t.Run("miniredis", func(t *testing.T) { fn(t, mini(t)) })
	t.Run("redis", func(t *testing.T) { fn(t, realRedis(t)) })
	if withCluster {
		t.Run("cluster", func(t *testing.T) { fn(t, cluster(t)) })
	}
}

// newCache makes a cache over a new client of b, closed when the test ends.
func newCache[V any](t testing.TB, b backend, opts Options) *Cache[V] {
	t.Helper()
	var rdb redis.UniversalClient
	if b.name != "" {
		rdb = b.client(t)
	}
	c, err := New[V](rdb, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// fleet makes n caches, each with its own client: n nodes.
func fleet(t testing.TB, b backend, n int, opts Options) []*Cache[string] {
	t.Helper()
	cs := make([]*Cache[string], n)
	for i := range cs {
		cs[i] = newCache[string](t, b, opts)
	}
	return cs
}

// countingLoader counts its calls and returns "v<n>:key" after waiting for
// gate (if not nil) or delay.
type countingLoader struct {
	calls atomic.Int64
	delay time.Duration
	gate  chan struct{}
}

func (l *countingLoader) load(ctx context.Context, key string) (string, error) {
	n := l.calls.Add(1)
	if l.gate != nil {
		select {
		case <-l.gate:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	if l.delay > 0 {
		time.Sleep(l.delay)
	}
	return fmt.Sprintf("v%d:%s", n, key), nil
}

// storm runs per Gets on every cache at once and returns the values seen.
func storm(t testing.TB, cs []*Cache[string], per int, key string, load func(context.Context, string) (string, error)) []string {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		vals  []string
		start = make(chan struct{})
	)
	for _, c := range cs {
		for range per {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				v, err := c.Get(context.Background(), key, load)
				if err != nil {
					t.Errorf("Get: %v", err)
				}
				mu.Lock()
				vals = append(vals, v)
				mu.Unlock()
			}()
		}
	}
	close(start)
	waitOrFail(t, &wg, 30*time.Second, "storm")
	return vals
}

// waitOrFail waits for wg, failing the test (instead of hanging it) if that
// takes longer than limit: a deadlock detector, not a speed check.
func waitOrFail(t testing.TB, wg *sync.WaitGroup, limit time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(limit):
		t.Fatalf("%s: still waiting after %v", what, limit)
	}
}

// eventually polls cond until it holds or limit passes.
func eventually(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %v", what, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func totalStats(cs []*Cache[string]) Stats {
	var s Stats
	for _, c := range cs {
		x := c.Stats()
		s.Loads += x.Loads
		s.LockWon += x.LockWon
		s.LockContended += x.LockContended
		s.StaleServed += x.StaleServed
		s.WokenByNotify += x.WokenByNotify
		s.WokenByRecheck += x.WokenByRecheck
		s.RedisErrors += x.RedisErrors
		s.WriteBacksRejected += x.WriteBacksRejected
		s.EarlyRefreshes += x.EarlyRefreshes
		s.Misses += x.Misses
	}
	return s
}

// hookAll adds h to the client c was made with and, in tracking mode, to
// the client its tracked reads go through (until a resubscription replaces
// it), so that h sees every call c makes.
func hookAll[V any](c *Cache[V], h redis.Hook) {
	c.rdb.AddHook(h)
	if c.trk != nil {
		c.trk.data.Load().rdb.AddHook(h)
	}
}
