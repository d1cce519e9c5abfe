// Package batch measures batches: a fleet of nodes whose callers each read
// many keys at once, from overlapping sets, all cold. It counts how often
// each key reaches the database under three ways of reading a batch:
//
//   - naive: MGET, then load the misses in one call, then SET them;
//   - singleflight: the same, but keys another caller of the same node is
//     already loading are joined instead of loaded again;
//   - full: stampede's GetMany (one lease per key fleet-wide, one loader
//     call for the keys a node won, waiters woken per key).
package batch

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stampede-go/stampede"
)

// Mode is a way of reading a batch.
type Mode string

// The modes.
const (
	Naive        Mode = "naive"
	SingleFlight Mode = "singleflight"
	Full         Mode = "full"
)

// Modes lists the modes in the order tables show them.
var Modes = []Mode{Naive, SingleFlight, Full}

// Config is a fleet and its callers.
type Config struct {
	Nodes    int           // nodes, each with its own Redis client
	Callers  int           // concurrent batches per node, released together
	PerCall  int           // keys per batch
	KeySpace int           // distinct keys the batches draw from
	Load     time.Duration // how long one loader call takes, whatever its size
	Addr     string        // the Redis server
	// RedisTimeout, when set, is stampede's Options.RedisTimeout. The
	// embedded miniredis runs a script over many keys slowly enough,
	// beside a fleet on two cores, to pass the default of 1 s; stampede
	// would then rightly take Redis for failing and load alone.
	RedisTimeout time.Duration
	// Invalidation is stampede's Options.Invalidation for full.
	// Default: InvalidateAuto, stampede's.
	Invalidation stampede.Invalidation
}

func (c Config) String() string {
	s := fmt.Sprintf("%d nodes × %d concurrent batches of %d keys drawn from %d, all cold, loader %v per call",
		c.Nodes, c.Callers, c.PerCall, c.KeySpace, c.Load)
	if c.RedisTimeout > 0 {
		s += fmt.Sprintf(", stampede's RedisTimeout %v", c.RedisTimeout)
	}
	return s
}

// Result is one mode's run.
type Result struct {
	Mode        Mode
	Keys        int   // distinct keys asked for
	KeyLoads    int64 // keys the loader was asked for, in all
	LoaderCalls int64
	Errors      int64
	Wrong       int64 // keys answered with the wrong value, or missing
	P50, P99    time.Duration
	Max         time.Duration
	Wall        time.Duration
}

// Run runs one mode. The namespace is fresh, so every key starts cold.
func Run(ctx context.Context, cfg Config, mode Mode) (Result, error) {
	ns := fmt.Sprintf("batch-%d-%s", time.Now().UnixNano(), mode)
	var loads, calls atomic.Int64
	load := func(_ context.Context, keys []string) (map[string]string, error) {
		calls.Add(1)
		loads.Add(int64(len(keys)))
		time.Sleep(cfg.Load)
		out := make(map[string]string, len(keys))
		for _, k := range keys {
			out[k] = "v:" + k
		}
		return out, nil
	}
	nodes := make([]reader, cfg.Nodes)
	for i := range nodes {
		rdb := redis.NewClient(&redis.Options{Addr: cfg.Addr, PoolSize: 10})
		defer rdb.Close()
		switch mode {
		case Naive:
			nodes[i] = &naive{rdb: rdb, ns: ns, load: load}
		case SingleFlight:
			nodes[i] = &flightBatch{naive: naive{rdb: rdb, ns: ns, load: load}}
		case Full:
			c, err := stampede.New[string](rdb, stampede.Options{Namespace: ns, TTL: time.Minute, RedisTimeout: cfg.RedisTimeout, Invalidation: cfg.Invalidation})
			if err != nil {
				return Result{}, err
			}
			defer c.Close()
			nodes[i] = full{c: c, load: load}
		default:
			return Result{}, fmt.Errorf("unknown mode %q", mode)
		}
	}
	all := make([]string, cfg.KeySpace)
	for i := range all {
		all[i] = "k" + strconv.Itoa(i)
	}
	asked := map[string]bool{}
	batches := make([][]string, cfg.Nodes*cfg.Callers)
	r := rand.New(rand.NewPCG(1, 2)) // the same sets for every mode
	for i := range batches {
		keys := slices.Clone(all)
		r.Shuffle(len(keys), func(a, b int) { keys[a], keys[b] = keys[b], keys[a] })
		batches[i] = keys[:min(cfg.PerCall, len(keys))]
		for _, k := range batches[i] {
			asked[k] = true
		}
	}
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		latencies []time.Duration
		errs      atomic.Int64
		wrong     atomic.Int64
		start     = make(chan struct{})
	)
	for i, keys := range batches {
		n := nodes[i%cfg.Nodes]
		wg.Go(func() {
			<-start
			t0 := time.Now()
			got, err := n.getMany(ctx, keys)
			took := time.Since(t0)
			if err != nil {
				errs.Add(1)
			}
			for _, k := range keys {
				if got[k] != "v:"+k {
					wrong.Add(1)
				}
			}
			mu.Lock()
			latencies = append(latencies, took)
			mu.Unlock()
		})
	}
	began := time.Now()
	close(start)
	wg.Wait()
	res := Result{Mode: mode, Keys: len(asked), KeyLoads: loads.Load(), LoaderCalls: calls.Load(),
		Errors: errs.Load(), Wrong: wrong.Load(), Wall: time.Since(began)}
	sort.Slice(latencies, func(a, b int) bool { return latencies[a] < latencies[b] })
	if len(latencies) > 0 {
		res.P50 = latencies[len(latencies)/2]
		res.P99 = latencies[len(latencies)*99/100]
		res.Max = latencies[len(latencies)-1]
	}
	return res, nil
}

// WriteMarkdown writes the results as a table.
func WriteMarkdown(w io.Writer, cfg Config, backend string, results []Result) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s, %s\n\n", cfg, backend)
	b.WriteString("| mode | loads per key | loader calls | errors | p50 ms | p99 ms | max ms | wall ms |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range results {
		perKey := float64(r.KeyLoads) / float64(max(r.Keys, 1))
		fmt.Fprintf(&b, "| %s | %.2f | %d | %d | %.1f | %.1f | %.1f | %.1f |\n", r.Mode, perKey, r.LoaderCalls,
			r.Errors+r.Wrong, msf(r.P50), msf(r.P99), msf(r.Max), msf(r.Wall))
	}
	b.WriteString("\nloads per key: keys the database was asked for, over the distinct keys asked; 1.00 means each key once, fleet-wide. errors counts failed batches and wrong or missing values.\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func msf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// reader reads one batch.
type reader interface {
	getMany(ctx context.Context, keys []string) (map[string]string, error)
}

// naive reads a batch with MGET, loads the misses in one call and SETs
// them.
type naive struct {
	rdb  *redis.Client
	ns   string
	load func(context.Context, []string) (map[string]string, error)
}

func (n *naive) key(k string) string { return n.ns + ":" + k }

func (n *naive) getMany(ctx context.Context, keys []string) (map[string]string, error) {
	got, missing, err := n.mget(ctx, keys)
	if err != nil {
		return nil, err
	}
	if len(missing) == 0 {
		return got, nil
	}
	loaded, err := n.fill(ctx, missing)
	for k, v := range loaded {
		got[k] = v
	}
	return got, err
}

// mget reads keys; missing are the ones Redis lacks.
func (n *naive) mget(ctx context.Context, keys []string) (got map[string]string, missing []string, err error) {
	rkeys := make([]string, len(keys))
	for i, k := range keys {
		rkeys[i] = n.key(k)
	}
	vals, err := n.rdb.MGet(ctx, rkeys...).Result()
	if err != nil {
		return nil, nil, err
	}
	got = make(map[string]string, len(keys))
	for i, v := range vals {
		if s, ok := v.(string); ok {
			got[keys[i]] = s
		} else {
			missing = append(missing, keys[i])
		}
	}
	return got, missing, nil
}

// fill loads keys in one call and stores them.
func (n *naive) fill(ctx context.Context, keys []string) (map[string]string, error) {
	loaded, err := n.load(ctx, keys)
	if err != nil {
		return nil, err
	}
	pipe := n.rdb.Pipeline()
	for k, v := range loaded {
		pipe.Set(ctx, n.key(k), v, time.Minute)
	}
	_, err = pipe.Exec(ctx)
	return loaded, err
}

// flightBatch is naive with per-key single-flight within the node: a batch
// loads only the missing keys no other caller of its node is loading, and
// waits for the others.
type flightBatch struct {
	naive
	mu      sync.Mutex
	loading map[string]*loadCall
}

type loadCall struct {
	done chan struct{}
	v    string
	err  error
}

func (n *flightBatch) getMany(ctx context.Context, keys []string) (map[string]string, error) {
	got, missing, err := n.mget(ctx, keys)
	if err != nil {
		return nil, err
	}
	mine := map[string]*loadCall{}
	joined := map[string]*loadCall{}
	n.mu.Lock()
	if n.loading == nil {
		n.loading = map[string]*loadCall{}
	}
	for _, k := range missing {
		if c := n.loading[k]; c != nil {
			joined[k] = c
			continue
		}
		c := &loadCall{done: make(chan struct{})}
		n.loading[k] = c
		mine[k] = c
	}
	n.mu.Unlock()
	if len(mine) > 0 {
		own := make([]string, 0, len(mine))
		for k := range mine {
			own = append(own, k)
		}
		loaded, err := n.fill(ctx, own)
		n.mu.Lock()
		for k, c := range mine {
			c.v, c.err = loaded[k], err
			delete(n.loading, k)
			close(c.done)
		}
		n.mu.Unlock()
		for k, v := range loaded {
			got[k] = v
		}
	}
	for k, c := range joined {
		<-c.done
		if c.err != nil {
			return got, c.err
		}
		got[k] = c.v
	}
	return got, nil
}

// full is stampede's GetMany.
type full struct {
	c    *stampede.Cache[string]
	load func(context.Context, []string) (map[string]string, error)
}

func (f full) getMany(ctx context.Context, keys []string) (map[string]string, error) {
	return f.c.GetMany(ctx, keys, f.load)
}
