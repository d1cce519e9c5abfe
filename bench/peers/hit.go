package main

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stampede-go/stampede"
	"github.com/stampede-go/stampede/bench/internal/benchnode"
)

// The hit path: one node, a fresh value in Redis, the same Get over and
// over, sequentially and from 64 goroutines, next to a raw go-redis GET
// measured before and after in the same run.

// hitGoroutines is the parallel hit benchmark's concurrency.
const hitGoroutines = 64

// hitCase is one library's hit path.
type hitCase struct {
	name string
	// reads says what a repeated hit reads: "memory" for libraries with an
	// in-process layer, "Redis" for the others.
	reads    string
	valueKey func(env) string
	node     func(env, *redis.Client, loadFunc) (getter, error)
}

// hitCases are the peers' hit paths; rows whose hit is another's (the
// +Stale and +early variants) are left out, and stampede is measured with
// its L1 off too, for a Redis hit.
func hitCases() []hitCase {
	byName := map[string]peer{}
	for _, p := range peers {
		byName[p.name] = p
	}
	c := func(name, reads string) hitCase {
		p := byName[name]
		return hitCase{name: name, reads: reads, valueKey: p.valueKey, node: p.node}
	}
	return []hitCase{
		c("stampede", "memory (L1)"),
		{name: "stampede, L1 off", reads: "Redis (MULTI GET PTTL EXEC)", valueKey: stampedeKey, node: newStampedeNoL1},
		c("go-redis/cache", "memory (TinyLFU)"),
		c("rockscache", "Redis (EVAL)"),
		c("sturdyc", "memory"),
		c("gocache", "Redis (GET)"),
		c("singleflight", "Redis (GET)"),
		c("naive", "Redis (GET)"),
	}
}

func newStampedeNoL1(e env, rdb *redis.Client, load loadFunc) (getter, error) {
	o := e.stampedeOptions()
	o.LocalCapacity = -1
	c, err := stampede.New[string](rdb, o)
	if err != nil {
		return nil, err
	}
	return &stampedeNode{c: c, load: func(ctx context.Context, _ string) (string, error) { return load(ctx) }}, nil
}

// hitResult is one hit-path measurement.
type hitResult struct {
	Name     string  `json:"library"`
	Reads    string  `json:"reads"`
	NsPerOp  float64 `json:"ns_per_op"`
	Allocs   int64   `json:"allocs_per_op"`
	OpsPerS  float64 `json:"ops_per_s_64_goroutines"`
	Loads    int64   `json:"loads"` // must be 0: every call is a hit
	Errors   int64   `json:"errors"`
	Baseline bool    `json:"baseline,omitempty"` // a raw GET
	// RawNsPerOp and RawOpsPerS are the raw GETs measured just before and
	// after this case, averaged: what its ratios divide by.
	RawNsPerOp float64 `json:"raw_get_ns_per_op,omitempty"`
	RawOpsPerS float64 `json:"raw_get_ops_per_s,omitempty"`
}

// benchHits measures every case with a raw GET before and after it; each
// case's ratio is against the mean of the two raw GETs around it, so that
// the load others put on a shared machine drifts out of the ratios.
func benchHits(ctx context.Context, addr string, inv stampede.Invalidation, prog *progress) ([]hitResult, error) {
	cases := hitCases()
	raw := func(n int) (hitResult, error) {
		prog.start(fmt.Sprintf("hit path: raw GET %d/%d", n, len(cases)+1), 0)
		return benchRawGet(ctx, addr)
	}
	prev, err := raw(1)
	if err != nil {
		return nil, err
	}
	out := []hitResult{prev}
	for i, hc := range cases {
		prog.start(fmt.Sprintf("hit path %d/%d: %s", i+1, len(cases), hc.name), 0)
		r, err := benchHit(ctx, addr, inv, hc)
		if err != nil {
			return nil, fmt.Errorf("hit path of %s: %w", hc.name, err)
		}
		next, err := raw(i + 2)
		if err != nil {
			return nil, err
		}
		r.RawNsPerOp = (prev.NsPerOp + next.NsPerOp) / 2
		r.RawOpsPerS = (prev.OpsPerS + next.OpsPerS) / 2
		out = append(out, r, next)
		prev = next
	}
	prog.end()
	return out, nil
}

func benchRawGet(ctx context.Context, addr string) (hitResult, error) {
	rdb := newClient(addr)
	defer rdb.Close()
	if err := benchnode.Warm(ctx, rdb, poolSize); err != nil {
		return hitResult{}, err
	}
	key := fmt.Sprintf("peers-raw-%d", time.Now().UnixNano())
	defer rdb.Del(context.WithoutCancel(ctx), key)
	if err := rdb.Set(ctx, key, stamp(time.Now()), time.Minute).Err(); err != nil {
		return hitResult{}, err
	}
	var errs atomic.Int64
	get := func() {
		if rdb.Get(ctx, key).Err() != nil {
			errs.Add(1)
		}
	}
	r := measureHit(get)
	r.Name, r.Reads, r.Baseline, r.Errors = "raw go-redis GET", "Redis (GET)", true, errs.Load()
	return r, nil
}

func benchHit(ctx context.Context, addr string, inv stampede.Invalidation, hc hitCase) (hitResult, error) {
	e := env{ns: fmt.Sprintf("peers-hit-%d", time.Now().UnixNano()), ttl: time.Minute, stale: time.Minute, inv: inv}
	rdb := newClient(addr)
	defer rdb.Close()
	defer cleanup(context.WithoutCancel(ctx), rdb, e.ns)
	if err := benchnode.Warm(ctx, rdb, poolSize); err != nil {
		return hitResult{}, err
	}
	seeder, err := hc.node(e, rdb, func(context.Context) (string, error) { return stamp(time.Now()), nil })
	if err != nil {
		return hitResult{}, err
	}
	_, err = seeder.get(ctx)
	seeder.close()
	if err != nil {
		return hitResult{}, err
	}
	if err := waitStored(ctx, rdb, hc.valueKey(e)); err != nil {
		return hitResult{}, err
	}

	var loads, errs atomic.Int64
	e.made = &benchnode.Clients{}
	g, err := hc.node(e, rdb, func(context.Context) (string, error) {
		loads.Add(1)
		return stamp(time.Now()), nil
	})
	if err != nil {
		return hitResult{}, err
	}
	defer g.close()
	if err := e.made.Warm(ctx, poolSize); err != nil {
		return hitResult{}, err
	}
	// One Get first: libraries with a memory layer fill it from Redis.
	if _, err := g.get(ctx); err != nil {
		return hitResult{}, err
	}
	time.Sleep(10 * time.Millisecond) // some fill their memory asynchronously
	r := measureHit(func() {
		if _, err := g.get(ctx); err != nil {
			errs.Add(1)
		}
	})
	r.Name, r.Reads, r.Loads, r.Errors = hc.name, hc.reads, loads.Load(), errs.Load()
	return r, nil
}

// measureHit times get sequentially (ns/op, allocs/op) and from
// hitGoroutines goroutines (ops/s).
func measureHit(get func()) hitResult {
	seq := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			get()
		}
	})
	par := testing.Benchmark(func(b *testing.B) {
		b.SetParallelism((hitGoroutines + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				get()
			}
		})
	})
	r := hitResult{NsPerOp: float64(seq.T.Nanoseconds()) / float64(max(seq.N, 1)), Allocs: seq.AllocsPerOp()}
	if par.N > 0 && par.T > 0 {
		r.OpsPerS = float64(par.N) / par.T.Seconds()
	}
	return r
}
