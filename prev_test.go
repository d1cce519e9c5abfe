package stampede

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A refresh's loader is handed the stale copy it replaces.
func TestFetchPrevGetsTheStaleCopy(t *testing.T) {
	onBackends(t, false, func(t *testing.T, b backend) {
		c := newCache[string](t, b, Options{Namespace: "prev", TTL: 100 * time.Millisecond, Stale: time.Minute})
		ctx := context.Background()
		prevs := make(chan Prev[string], 4)
		load := func(_ context.Context, key string, prev Prev[string]) (string, Entry, error) {
			prevs <- prev
			if !prev.OK {
				return "v1", Entry{}, nil
			}
			return prev.Value + "+1", Entry{}, nil
		}
		r, err := c.FetchPrev(ctx, "k", load)
		require.NoError(t, err)
		require.Equal(t, "v1", r.Value)
		require.False(t, (<-prevs).OK, "a cold load has no previous value")

		b.advance(150 * time.Millisecond) // past TTL, inside Stale
		r, err = c.FetchPrev(ctx, "k", load)
		require.NoError(t, err)
		require.Equal(t, SourceStale, r.Source)
		prev := <-prevs
		require.True(t, prev.OK)
		require.Equal(t, "v1", prev.Value)
		require.GreaterOrEqual(t, prev.Age, 100*time.Millisecond)
		eventually(t, 5*time.Second, "refreshed from the previous value", func() bool {
			r, _ := c.FetchPrev(ctx, "k", load)
			return r.Value == "v1+1"
		})
	})
}

// A kept value (Entry.Keep) is never served: past TTL and Stale, callers
// wait for the load that replaces it, one per fleet, and that load is given
// it. A load that fails leaves it for the next one.
func TestKeptValueReachesTheLoadAndNoCaller(t *testing.T) {
	onBackends(t, true, func(t *testing.T, b backend) {
		ttl := 200 * time.Millisecond
		nodes := fleet(t, b, 3, Options{Namespace: "keep", TTL: ttl, LocalTTL: time.Minute, WaitTimeout: 10 * time.Second})
		ctx := context.Background()
		var loads atomic.Int64
		fail := atomic.Bool{}
		load := func(_ context.Context, key string, prev Prev[string]) (string, Entry, error) {
			loads.Add(1)
			time.Sleep(20 * time.Millisecond)
			if fail.Load() {
				return "", Entry{}, errors.New("origin down")
			}
			if !prev.OK {
				return "v1", Entry{Keep: time.Minute}, nil
			}
			return prev.Value + "+1", Entry{Keep: time.Minute}, nil
		}
		r, err := nodes[0].FetchPrev(ctx, "k", load)
		require.NoError(t, err)
		require.Equal(t, "v1", r.Value)
		if d := b.client(t).PTTL(ctx, "keep:{k}").Val(); d <= ttl {
			t.Fatalf("Redis keeps the value %v, want TTL + Keep", d)
		}

		b.advance(ttl + 50*time.Millisecond) // past TTL: kept, not servable
		fail.Store(true)
		_, err = nodes[1].FetchPrev(ctx, "k", load)
		require.Error(t, err, "a failed load of a kept value")
		fail.Store(false)
		loads.Store(0)

		var wg sync.WaitGroup
		var mu sync.Mutex
		got := map[string]int{}
		for _, n := range nodes {
			for range 20 {
				wg.Go(func() {
					r, err := n.FetchPrev(ctx, "k", load)
					if err != nil {
						t.Error(err)
					}
					mu.Lock()
					got[r.Value]++
					mu.Unlock()
				})
			}
		}
		wg.Wait()
		require.Equal(t, map[string]int{"v1+1": 60}, got, "every caller gets the value built on the kept one, none the kept one")
		require.EqualValues(t, 1, loads.Load(), "one load fleet-wide")
	})
}

// Result.Waited tells the callers that waited for another's work from the
// one that did it.
func TestResultWaited(t *testing.T) {
	b := realRedis(t)
	nodes := fleet(t, b, 2, Options{Namespace: "waited"})
	ctx := context.Background()
	gate, started := make(chan struct{}), make(chan struct{})
	load := func(context.Context, string) (string, Entry, error) {
		close(started)
		<-gate
		return "v", Entry{}, nil
	}
	results := make(chan Result[string], 3)
	go func() { r, _ := nodes[0].Fetch(ctx, "k", load); results <- r }()
	<-started
	go func() { r, _ := nodes[0].Fetch(ctx, "k", load); results <- r }() // joins
	go func() { r, _ := nodes[1].Fetch(ctx, "k", load); results <- r }() // waits for node 0
	eventually(t, 5*time.Second, "the others wait", func() bool { return nodes[1].Stats().LockContended == 1 })
	time.Sleep(20 * time.Millisecond) // the joiner is in (it cannot be observed)
	close(gate)
	waited := 0
	for range 3 {
		r := <-results
		require.Equal(t, "v", r.Value)
		if r.Waited {
			waited++
		}
	}
	require.Equal(t, 2, waited, "the joiner and the other node's caller waited; the loader's caller did not")
	r, err := nodes[0].Fetch(ctx, "k", load)
	require.NoError(t, err)
	require.False(t, r.Waited, "an L1 hit")
}

// With LocalMaxCost, L1 is bounded by cost, and a value costing more than
// all of it stays out.
func TestLocalMaxCost(t *testing.T) {
	c := newCache[string](t, mini(t), Options{Namespace: "cost", LocalMaxCost: 100,
		LocalCost: func(v any) int64 { return int64(len(v.(string))) }})
	ctx := context.Background()
	for _, v := range []string{"small", strings.Repeat("x", 200)} {
		load := func(context.Context, string) (string, Entry, error) { return v, Entry{}, nil }
		_, err := c.Fetch(ctx, v[:1], load)
		require.NoError(t, err)
		r, err := c.Fetch(ctx, v[:1], load)
		require.NoError(t, err)
		want := SourceLocal
		if len(v) > 100 {
			want = SourceRedis
		}
		require.Equal(t, want, r.Source, "value of %d bytes", len(v))
	}
}
