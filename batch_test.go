package stampede

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/stampede-go/stampede/internal/lua"
)

// batchLoader records its calls and returns "v:" + key for every key
// except those it is told are absent.
type batchLoader struct {
	mu     sync.Mutex
	calls  [][]string
	absent map[string]bool
	delay  time.Duration
}

func (l *batchLoader) load(_ context.Context, keys []string) (map[string]string, error) {
	l.mu.Lock()
	l.calls = append(l.calls, slices.Clone(keys))
	l.mu.Unlock()
	time.Sleep(l.delay)
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		if !l.absent[k] {
			out[k] = "v:" + k
		}
	}
	return out, nil
}

// loaded returns how many times each key was loaded.
func (l *batchLoader) loaded() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := map[string]int{}
	for _, call := range l.calls {
		for _, k := range call {
			n[k]++
		}
	}
	return n
}

// 20 nodes x 50 concurrent GetMany over overlapping key sets: every key is
// loaded once fleet-wide, no key is in two loader calls, every caller gets
// every value.
func TestGetManyFleetLoadsEveryKeyOnce(t *testing.T) {
	onBackends(t, true, func(t *testing.T, b backend) {
		// miniredis runs scripts slowly, all the more under -race with a
		// thousand callers: the Redis deadline is widened so that none is
		// taken for Redis failing (which would rightly load again).
		nodes := fleet(t, b, 20, Options{Namespace: "many", TTL: time.Minute, WaitTimeout: 30 * time.Second, RedisTimeout: 20 * time.Second})
		l := &batchLoader{delay: 20 * time.Millisecond}
		all := keyRange("k", 300)
		var wg sync.WaitGroup
		start := make(chan struct{})
		var bad atomic.Value
		for _, n := range nodes {
			for c := range 50 {
				r := rand.New(rand.NewPCG(uint64(c), 7))
				keys := slices.Clone(all)
				r.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
				keys = keys[:100]
				wg.Go(func() {
					<-start
					got, err := n.GetMany(context.Background(), keys, l.load)
					if err != nil {
						bad.Store(err)
						return
					}
					for _, k := range keys {
						if got[k] != "v:"+k {
							bad.Store(fmt.Errorf("key %s: got %q", k, got[k]))
							return
						}
					}
				})
			}
		}
		close(start)
		waitOrFail(t, &wg, 60*time.Second, "GetMany callers")
		if err, _ := bad.Load().(error); err != nil {
			t.Fatal(err)
		}
		for k, n := range l.loaded() {
			require.Equal(t, 1, n, "key %s loaded %d times (stats %+v)", k, n, totalStats(nodes))
		}
		require.LessOrEqual(t, len(l.loaded()), len(all))
		t.Logf("%d loader calls for %d keys", len(l.calls), len(l.loaded()))
	})
}

// A Set of one key while a batch loads it: that key's older value is not
// written back; the others are.
func TestGetManySetDuringLoadFencesThatKey(t *testing.T) {
	onBackends(t, false, func(t *testing.T, b backend) {
		a := newCache[string](t, b, Options{Namespace: "manyset", LocalCapacity: -1})
		other := newCache[string](t, b, Options{Namespace: "manyset", LocalCapacity: -1})
		ctx := context.Background()
		started, gate := make(chan struct{}), make(chan struct{})
		load := func(_ context.Context, keys []string) (map[string]string, error) {
			close(started)
			<-gate
			out := map[string]string{}
			for _, k := range keys {
				out[k] = "old:" + k
			}
			return out, nil
		}
		done := make(chan map[string]string)
		go func() {
			got, _ := a.GetMany(ctx, []string{"x", "y", "z"}, load)
			done <- got
		}()
		<-started
		require.NoError(t, other.Set(ctx, "y", "new"))
		close(gate)
		got := <-done
		require.Equal(t, map[string]string{"x": "old:x", "y": "old:y", "z": "old:z"}, got, "the caller gets what its load produced")
		require.EqualValues(t, 1, a.Stats().WriteBacksRejected)
		for k, want := range map[string]string{"x": "old:x", "y": "new", "z": "old:z"} {
			v, err := other.Get(ctx, k, func(context.Context, string) (string, error) { return "reloaded", nil })
			require.NoError(t, err)
			require.Equal(t, want, v, "key %s in Redis", k)
		}
	})
}

// A loader that panics mid-batch leaves no key stuck: the callers get the
// panic, the leases are dropped, and the next GetMany loads.
func TestGetManyPanickingLoaderFreesItsKeys(t *testing.T) {
	onBackends(t, false, func(t *testing.T, b backend) {
		nodes := fleet(t, b, 2, Options{Namespace: "manypanic", LockTTL: time.Minute, WaitTimeout: 30 * time.Second})
		ctx := context.Background()
		started := make(chan struct{})
		boom := func(_ context.Context, keys []string) (map[string]string, error) {
			close(started)
			time.Sleep(50 * time.Millisecond) // the other node is waiting
			panic("loader exploded")
		}
		errc := make(chan error, 1)
		go func() { _, err := nodes[0].GetMany(ctx, []string{"a", "b"}, boom); errc <- err }()
		<-started
		l := &batchLoader{}
		got, err := nodes[1].GetMany(ctx, []string{"a", "b"}, l.load)
		require.NoError(t, err, "the waiter takes the leases over")
		require.Equal(t, map[string]string{"a": "v:a", "b": "v:b"}, got)
		err = <-errc
		var pe *PanicError
		require.ErrorAs(t, err, &pe, "the loader's caller gets the panic")
		var be *BatchError
		require.ErrorAs(t, err, &be)
		require.Len(t, be.Errs, 2)
	})
}

// Keys the loader leaves out are not found, and cached as such; a loader
// error fails only the keys of its call.
func TestGetManyNotFoundAndErrors(t *testing.T) {
	b := realRedis(t)
	c := newCache[string](t, b, Options{Namespace: "manynf"})
	ctx := context.Background()
	l := &batchLoader{absent: map[string]bool{"gone": true}}
	got, err := c.GetMany(ctx, []string{"here", "gone", "here"}, l.load)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"here": "v:here"}, got)
	got, err = c.GetMany(ctx, []string{"here", "gone"}, l.load)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"here": "v:here"}, got)
	require.Len(t, l.calls, 1, "a tombstone and a value, both cached")

	dbDown := errors.New("db down")
	failing := func(context.Context, []string) (map[string]string, error) { return nil, dbDown }
	got, err = c.GetMany(ctx, []string{"here", "new1", "new2"}, failing)
	require.Equal(t, map[string]string{"here": "v:here"}, got, "cached keys are served")
	var be *BatchError
	require.ErrorAs(t, err, &be)
	require.ErrorIs(t, err, dbDown)
	require.Len(t, be.Errs, 2)

	_, err = c.GetMany(ctx, []string{"ok", ""}, l.load)
	require.ErrorIs(t, err, ErrInvalidKey)
	_, err = c.GetMany(ctx, nil, nil)
	require.ErrorIs(t, err, ErrNilLoader)
}

// The caller's ctx bounds the batch: keys another node is still loading
// when it ends are returned missing with ctx's error.
func TestGetManyObeysTheCallersContext(t *testing.T) {
	b := realRedis(t)
	nodes := fleet(t, b, 2, Options{Namespace: "manyctx", WaitTimeout: time.Minute})
	ctx := context.Background()
	gate, started := make(chan struct{}), make(chan struct{})
	defer close(gate)
	go nodes[0].GetMany(ctx, []string{"slow"}, func(context.Context, []string) (map[string]string, error) {
		close(started)
		<-gate
		return map[string]string{"slow": "late"}, nil
	})
	<-started
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	l := &batchLoader{}
	got, err := nodes[1].GetMany(cctx, []string{"fast", "slow"}, l.load)
	require.Equal(t, map[string]string{"fast": "v:fast"}, got)
	var be *BatchError
	require.ErrorAs(t, err, &be)
	require.ErrorIs(t, be.Errs["slow"], context.DeadlineExceeded)
}

// pipelineCounter counts the calls a client sends, scripts and pipelines.
type pipelineCounter struct{ n atomic.Int64 }

func (h *pipelineCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *pipelineCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}
func (h *pipelineCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// Round trips of a GetMany: all missing, one lease call and one fill per
// slot group; all in L1, none; on a Cluster as on one server. In tracking
// mode the values the batch wrote reach L1 only when read back, in one
// call per slot group.
func TestGetManyRoundTripsPerSlotGroup(t *testing.T) {
	for _, bk := range []struct {
		name string
		b    func(t testing.TB) backend
	}{{"redis", realRedis}, {"cluster", cluster}} {
		for _, mode := range []Invalidation{InvalidateBroadcast, InvalidateTracking} {
			t.Run(bk.name+"/"+mode.String(), func(t *testing.T) {
				b := bk.b(t)
				rdb := b.client(t)
				c, err := New[string](rdb, Options{Namespace: "rt", Invalidation: mode})
				require.NoError(t, err)
				defer c.Close()
				ctx := context.Background()
				l := &batchLoader{}
				// Load the scripts on every node first: a node that lacks one
				// answers NOSCRIPT once, and go-redis sends the script itself.
				for _, sc := range []*redis.Script{lua.LockMany, lua.FillMany} {
					switch r := rdb.(type) {
					case *redis.Client:
						require.NoError(t, sc.Load(ctx, r).Err())
					case *redis.ClusterClient:
						require.NoError(t, r.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
							return sc.Load(ctx, m).Err()
						}))
					}
				}
				keys := keyRange("key", 60)
				slots := map[uint16]bool{}
				for _, k := range keys {
					slots[slot(c.valueKey(k))] = true
				}
				groups := 1
				if bk.name == "cluster" {
					groups = len(slots)
				}
				h := &pipelineCounter{}
				hookAll(c, h)
				got, err := c.GetMany(ctx, keys, l.load)
				require.NoError(t, err)
				require.Len(t, got, len(keys))
				require.EqualValues(t, 2*groups, h.n.Load(), "all missing: a lease call and a fill per slot group (%d groups)", groups)
				if mode == InvalidateTracking {
					// The fills' own invalidations (value and lease keys,
					// tracked by the lease call's reads) come on the
					// subscription; one arriving after the read-back
					// would evict what it read.
					require.Eventually(t, func() bool { return c.Stats().Messages >= uint64(2*len(keys)) },
						3*time.Second, time.Millisecond, "the fills' invalidations arrive")
					h.n.Store(0)
					_, err = c.GetMany(ctx, keys, l.load)
					require.NoError(t, err)
					require.EqualValues(t, groups, h.n.Load(), "tracking, own fills read back: one call per slot group")
					c.l1.Wait() // L1 applies what reads put there asynchronously
				}
				h.n.Store(0)
				_, err = c.GetMany(ctx, keys, l.load)
				require.NoError(t, err)
				require.Zero(t, h.n.Load(), "all in L1: no round trip")
				require.Len(t, l.calls, 1, "one loader call per batch")
				sort.Strings(l.calls[0])
				require.Equal(t, keys, l.calls[0])
			})
		}
	}
}

// In tracking mode a value a GetMany read into L1 leaves it when another
// node writes it: the batch's reads are tracked like a Get's.
func TestGetManyTrackedReadsAreInvalidated(t *testing.T) {
	for _, b := range []func(testing.TB) backend{realRedis, cluster} {
		b := b(t)
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			opts := Options{Namespace: "mtrk", TTL: time.Hour, LocalTTL: time.Hour, Invalidation: InvalidateTracking}
			nodes := fleet(t, b, 2, opts)
			keys := keyRange("k", 20)
			for _, k := range keys {
				require.NoError(t, nodes[1].Set(ctx, k, "old"))
			}
			l := &batchLoader{}
			got, err := nodes[0].GetMany(ctx, keys, l.load)
			require.NoError(t, err)
			nodes[0].l1.Wait()
			for _, k := range keys {
				require.Equal(t, "old", got[k])
				require.NotNil(t, nodes[0].getL1(k), "%s read by GetMany is in L1", k)
			}
			for _, k := range keys {
				require.NoError(t, nodes[1].Set(ctx, k, "new"))
			}
			require.Eventually(t, func() bool {
				for _, k := range keys {
					if nodes[0].getL1(k) != nil {
						return false
					}
				}
				return true
			}, 3*time.Second, 5*time.Millisecond, "the other node's Sets evict what GetMany read")
			got, err = nodes[0].GetMany(ctx, keys, l.load)
			require.NoError(t, err)
			for _, k := range keys {
				require.Equal(t, "new", got[k])
			}
			require.Empty(t, l.calls, "no loads: every value was in Redis")
		})
	}
}

// Stale values are served at once by GetMany and refreshed in the
// background, once across the fleet, in one loader call for all of them.
func TestGetManyServesStaleAndRefreshesOnce(t *testing.T) {
	b := realRedis(t)
	ttl := 200 * time.Millisecond
	nodes := fleet(t, b, 3, Options{Namespace: "manystale", TTL: ttl, Stale: time.Minute, LocalCapacity: -1, Beta: -1})
	ctx := context.Background()
	l := &batchLoader{}
	keys := []string{"a", "b", "c"}
	_, err := nodes[0].GetMany(ctx, keys, l.load)
	require.NoError(t, err)
	time.Sleep(ttl + 50*time.Millisecond)
	gate := make(chan struct{})
	var refreshCalls atomic.Int64
	refresh := func(_ context.Context, keys []string) (map[string]string, error) {
		refreshCalls.Add(1)
		<-gate
		out := map[string]string{}
		for _, k := range keys {
			out[k] = "new:" + k
		}
		return out, nil
	}
	for _, n := range nodes {
		r, err := n.FetchMany(ctx, keys, func(ctx context.Context, missing []string) (map[string]Loaded[string], error) {
			m, err := refresh(ctx, missing)
			out := map[string]Loaded[string]{}
			for k, v := range m {
				out[k] = Loaded[string]{Value: v}
			}
			return out, err
		})
		require.NoError(t, err)
		for _, k := range keys {
			require.Equal(t, SourceStale, r[k].Source, "key %s: stale, at once", k)
			require.Equal(t, "v:"+k, r[k].Value)
		}
	}
	close(gate)
	eventually(t, 5*time.Second, "refreshed", func() bool {
		got, _ := nodes[1].GetMany(ctx, keys, l.load)
		return got["a"] == "new:a" && got["b"] == "new:b" && got["c"] == "new:c"
	})
	require.EqualValues(t, 1, refreshCalls.Load(), "one refresh, of every stale key, across the fleet")
}

// A batch's background refresh lets go of the keys it marked as being
// refreshed: later refreshes of them happen, and their stale L1 copies are
// not served without asking Redis.
func TestBatchStaleRefreshUnmarksItsKeys(t *testing.T) {
	b := realRedis(t)
	c := newCache[string](t, b, Options{Namespace: "unmark", TTL: 200 * time.Millisecond, Stale: time.Minute})
	var loads atomic.Int64
	load := func(_ context.Context, keys []string) (map[string]string, error) {
		n := loads.Add(1)
		out := map[string]string{}
		for _, k := range keys {
			out[k] = fmt.Sprintf("v%d", n)
		}
		return out, nil
	}
	ctx := context.Background()
	_, err := c.GetMany(ctx, []string{"k"}, load)
	require.NoError(t, err)
	time.Sleep(300 * time.Millisecond)
	c.FlushLocal()
	_, err = c.GetMany(ctx, []string{"k"}, load) // stale: refreshed in the background
	require.NoError(t, err)
	eventually(t, 5*time.Second, "the refresh done and its key let go", func() bool {
		return loads.Load() == 2 && !c.refreshRunning("k")
	})
}

// An error that cannot be compared (a slice type) reaches errors.Is through
// a BatchError without a panic.
func TestBatchErrorWithUncomparableErrors(t *testing.T) {
	c := newCache[string](t, backend{}, Options{})
	_, err := c.GetMany(context.Background(), []string{"a", "b"}, func(context.Context, []string) (map[string]string, error) {
		return nil, sliceErr{"bad"}
	})
	require.NotPanics(t, func() { _ = errors.Is(err, context.Canceled) })
	var se sliceErr
	require.ErrorAs(t, err, &se)
}

type sliceErr []string

func (e sliceErr) Error() string { return strings.Join(e, ",") }
