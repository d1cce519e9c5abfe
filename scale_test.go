package stampede

// The scale scenario: fleets of 10 to 500 nodes on one redis-server, each
// node an independent go-redis client, reading a realistic key mix while
// writes arrive at a set rate. It measures what the invalidation traffic
// costs each node and the server (docs/scale.md). It runs on demand only:
//
//	STAMPEDE_SCALE=1 go test -run '^TestScale$' -v -timeout 60m .
//
// STAMPEDE_SCALE may also list the fleet sizes (STAMPEDE_SCALE=10,50), and
// STAMPEDE_SCALE_MODES the modes (STAMPEDE_SCALE_MODES=tracking), and
// STAMPEDE_SCALE_WRITES the writes (mix or unread; both by default).

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stampede-go/stampede/internal/redistest"
)

// scaleConfig is one fleet's workload.
type scaleConfig struct {
	nodes       int
	keys, hot   int           // keys in the mix; the first hot of them are hot
	hotReads    float64       // share of reads that go to a hot key
	hotWrites   float64       // share of writes that go to a hot key
	readsPerSec int           // per node
	writesPerS  int           // for the whole fleet
	unread      bool          // writes go to keys no node reads, not to the mix
	warm, quiet time.Duration // reads only: to fill L1, then to measure the server's cost of reads alone
	measure     time.Duration // reads and writes
	opts        Options
}

func defaultScale(nodes int) scaleConfig {
	return scaleConfig{
		nodes: nodes, keys: 20_000, hot: 20, hotReads: 0.5, hotWrites: 0.05,
		readsPerSec: 4, writesPerS: 100,
		warm: 5 * time.Second, quiet: 8 * time.Second, measure: 15 * time.Second,
		opts: Options{Namespace: "scale", TTL: time.Hour, LocalCapacity: 4096},
	}
}

// scaleNode is one node of the fleet and what its subscription received.
type scaleNode struct {
	c         *Cache[string]
	touched   sync.Map     // keys this node was asked for
	msgs      atomic.Int64 // messages about a key
	concerned atomic.Int64 // ... that this node held in L1 or waited for
	untouched atomic.Int64 // ... that this node was never asked for
	other     atomic.Int64 // messages about no key (probes)
}

// scaleRun is what one fleet measured.
type scaleRun struct {
	cfg        scaleConfig
	mode       string
	writes     int64 // Sets
	fills      int64 // loads written back: each publishes as a Set does
	reads      int64
	msgs       int64 // messages about a key, all nodes
	concerned  int64
	untouched  int64
	other      int64
	fleetCPU   float64 // this process's CPU seconds per second while measuring
	stats      Stats   // the fleet's counters at the end, summed
	tracked    string  // the server's tracking table at the end (INFO stats) and its memory
	cpuQuiet   float64 // redis-server CPU seconds per second, reads only
	cpuBusy    float64 // ... reads and writes
	lat        []time.Duration
	redisReads int64 // commands the server ran while measuring
}

func TestScale(t *testing.T) {
	spec := os.Getenv("STAMPEDE_SCALE")
	if spec == "" {
		t.Skip("on demand: STAMPEDE_SCALE=1 go test -run '^TestScale$' -v -timeout 60m .")
	}
	sizes := []int{10, 50, 200, 500}
	if spec != "1" {
		sizes = nil
		for _, f := range strings.Split(spec, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				t.Fatalf("STAMPEDE_SCALE=%q: want 1 or a list of fleet sizes", spec)
			}
			sizes = append(sizes, n)
		}
	}
	scenarios := []bool{false, true}
	switch os.Getenv("STAMPEDE_SCALE_WRITES") {
	case "mix":
		scenarios = []bool{false}
	case "unread":
		scenarios = []bool{true}
	}
	for _, unread := range scenarios {
		var runs []scaleRun
		for _, n := range sizes {
			for _, mode := range scaleModes() {
				cfg := defaultScale(n)
				cfg.unread = unread
				mode.apply(&cfg.opts)
				r := runScale(t, cfg)
				r.mode = mode.name
				t.Log(r.line())
				runs = append(runs, r)
			}
		}
		what := "writes to the key mix the nodes read"
		if unread {
			what = "writes to keys no node reads"
		}
		t.Logf("scale: table, %s\n%s", what, scaleTable(runs))
	}
}

// scaleMode is a way of invalidating L1 that the scenario compares.
type scaleMode struct {
	name  string
	apply func(*Options)
}

// scaleModes returns the modes to compare: both, or those named in
// STAMPEDE_SCALE_MODES (broadcast,tracking).
func scaleModes() []scaleMode {
	all := []scaleMode{
		{"broadcast", func(o *Options) { o.Invalidation = InvalidateBroadcast }},
		{"tracking", func(o *Options) { o.Invalidation = InvalidateTracking }},
	}
	only := os.Getenv("STAMPEDE_SCALE_MODES")
	if only == "" {
		return all
	}
	var modes []scaleMode
	for _, m := range all {
		if slices.Contains(strings.Split(only, ","), m.name) {
			modes = append(modes, m)
		}
	}
	return modes
}

func runScale(t *testing.T, cfg scaleConfig) scaleRun {
	srv := redistest.Start(t)
	ctx := context.Background()
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 1})
	defer admin.Close()

	// Every key has a value before the fleet starts: reads then never
	// miss, so that the only writes are the Sets the scenario makes, at
	// the rate it makes them, and the reads-only phase costs reads alone.
	seed(t, srv, cfg)

	var (
		writesAt sync.Map // key -> time.Time of its last write's start
		latMu    sync.Mutex
		lat      []time.Duration
		counting atomic.Bool
	)
	nodes := make([]*scaleNode, cfg.nodes)
	clients := make([]*redis.Client, cfg.nodes)
	for i := range nodes {
		n := &scaleNode{}
		tap := &redistest.Tap{OnMessage: func(ch string, payload []string) {
			if !counting.Load() {
				return
			}
			keys := n.messageKeys(ch, payload)
			if keys == nil {
				n.other.Add(1)
				return
			}
			now := time.Now()
			for _, k := range keys {
				n.msgs.Add(1)
				if _, ok := n.touched.Load(k); !ok {
					n.untouched.Add(1)
				}
				if n.c.getL1(k) == nil && !n.c.waiting(k) {
					continue
				}
				n.concerned.Add(1)
				if at, ok := writesAt.Load(k); ok {
					latMu.Lock()
					lat = append(lat, now.Sub(at.(time.Time)))
					latMu.Unlock()
				}
			}
		}}
		clients[i] = redis.NewClient(&redis.Options{Addr: srv.Addr(), Dialer: tap.Dial, PoolSize: 2})
		c, err := New[string](clients[i], cfg.opts)
		if err != nil {
			t.Fatal(err)
		}
		n.c = c
		nodes[i] = n
	}
	defer func() {
		for i, n := range nodes {
			n.c.Close()
			clients[i].Close()
		}
	}()

	key := func(hotShare float64) string {
		if rand.Float64() < hotShare {
			return fmt.Sprintf("k%05d", rand.IntN(cfg.hot))
		}
		return fmt.Sprintf("k%05d", rand.IntN(cfg.keys))
	}
	load := func(_ context.Context, k string) (string, error) { return "v:" + k, nil }

	// Readers: a few goroutines share the fleet's read rate, each Get on a
	// node picked at random.
	var reads atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	const readers = 8
	every := time.Duration(float64(time.Second) * readers / float64(cfg.nodes*cfg.readsPerSec))
	for range readers {
		wg.Go(func() {
			next := time.Now()
			for {
				next = next.Add(every)
				select {
				case <-stop:
					return
				case <-time.After(time.Until(next)):
				}
				n := nodes[rand.IntN(len(nodes))]
				k := key(cfg.hotReads)
				n.touched.Store(k, true)
				if _, err := n.c.Get(ctx, k, load); err == nil {
					reads.Add(1)
				}
			}
		})
	}
	cpu := func() float64 {
		info := admin.Info(ctx, "cpu").Val()
		var total float64
		for _, l := range strings.Split(info, "\r\n") {
			name, val, _ := strings.Cut(l, ":")
			if name == "used_cpu_sys" || name == "used_cpu_user" {
				f, _ := strconv.ParseFloat(val, 64)
				total += f
			}
		}
		return total
	}
	field := func(section, name string) string {
		info := admin.Info(ctx, section).Val()
		for _, l := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(l, name+":"); ok {
				return v
			}
		}
		return ""
	}
	calls := func() int64 {
		n, _ := strconv.ParseInt(field("stats", "total_commands_processed"), 10, 64)
		return n
	}

	time.Sleep(cfg.warm)
	c0, t0 := cpu(), time.Now()
	time.Sleep(cfg.quiet)
	c1, t1 := cpu(), time.Now()
	cpuQuiet := (c1 - c0) / t1.Sub(t0).Seconds()

	// Writes: one goroutine at the fleet's write rate, each a Set on a
	// node picked at random.
	reads.Store(0)
	counting.Store(true)
	var writes atomic.Int64
	wstop := make(chan struct{})
	var wwg sync.WaitGroup
	wwg.Go(func() {
		every := time.Second / time.Duration(cfg.writesPerS)
		next := time.Now()
		for {
			next = next.Add(every)
			select {
			case <-wstop:
				return
			case <-time.After(time.Until(next)):
			}
			k := key(cfg.hotWrites)
			if cfg.unread {
				k = fmt.Sprintf("w%05d", rand.IntN(cfg.keys))
			}
			writesAt.Store(k, time.Now())
			if err := nodes[rand.IntN(len(nodes))].c.Set(ctx, k, "w"); err == nil {
				writes.Add(1)
			}
		}
	})
	loads := func() (n int64) {
		for _, n2 := range nodes {
			n += int64(n2.c.Stats().Loads)
		}
		return n
	}
	loads0, calls0 := loads(), calls()
	c2, t2, p2 := cpu(), time.Now(), processCPU()
	time.Sleep(cfg.measure)
	c3, t3, p3 := cpu(), time.Now(), processCPU()
	loads1, calls1 := loads(), calls()
	tracked := fmt.Sprintf("%s keys, %s (key, connection) pairs; used_memory %s", field("stats", "tracking_total_keys"),
		field("stats", "tracking_total_items"), field("memory", "used_memory_human"))
	close(wstop)
	wwg.Wait()
	counting.Store(false)
	close(stop)
	wg.Wait()

	r := scaleRun{cfg: cfg, writes: writes.Load(), fills: loads1 - loads0, reads: reads.Load(), cpuQuiet: cpuQuiet,
		cpuBusy: (c3 - c2) / t3.Sub(t2).Seconds(), redisReads: calls1 - calls0,
		fleetCPU: (p3 - p2).Seconds() / t3.Sub(t2).Seconds(), tracked: tracked}
	for _, n := range nodes {
		st := n.c.Stats()
		r.stats.Loads += st.Loads
		r.stats.RedisErrors += st.RedisErrors
		r.stats.LocalFlushes += st.LocalFlushes
		r.stats.LocalHits += st.LocalHits
		r.stats.RedisHits += st.RedisHits
		r.msgs += n.msgs.Load()
		r.concerned += n.concerned.Load()
		r.untouched += n.untouched.Load()
		r.other += n.other.Load()
	}
	latMu.Lock()
	r.lat = lat
	latMu.Unlock()
	return r
}

// seed writes every key of the mix, with a cache of its own.
func seed(t *testing.T, srv *redistest.Server, cfg scaleConfig) {
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 16})
	defer rdb.Close()
	c, err := New[string](rdb, cfg.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < cfg.keys; i += 16 {
				k := fmt.Sprintf("k%05d", i)
				if err := c.Set(context.Background(), k, "v:"+k); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// waiting says whether a caller of this node waits for key.
func (c *Cache[V]) waiting(key string) bool {
	c.waiters.mu.Lock()
	defer c.waiters.mu.Unlock()
	_, ok := c.waiters.m[key]
	return ok
}

// messageKeys returns the cache keys a message is about (a tracking
// message about a lease counts as one about its key), or nil for a message
// about none.
func (n *scaleNode) messageKeys(ch string, payload []string) []string {
	switch {
	case ch == n.c.channel && len(payload) == 1 && len(payload[0]) > msgHeaderLen:
		return []string{payload[0][msgHeaderLen:]}
	case ch == invalidateChannel:
		keys := []string{}
		for _, rk := range payload {
			if k, _, ok := n.c.cacheKeyOf(rk); ok {
				keys = append(keys, k)
			}
		}
		return keys
	}
	return nil
}

func (r scaleRun) seconds() float64 { return r.cfg.measure.Seconds() }

// perNodeWrite is what one node received per write (a Set or a fill), on
// average.
func (r scaleRun) perNodeWrite(n int64) float64 {
	if r.writes+r.fills == 0 {
		return 0
	}
	return float64(n) / float64(r.cfg.nodes) / float64(r.writes+r.fills)
}

// cpuPerWrite is the server's CPU per write (a Set or a fill) beyond what
// the reads alone cost.
func (r scaleRun) cpuPerWrite() time.Duration {
	ws := float64(r.writes+r.fills) / r.seconds()
	if ws == 0 {
		return 0
	}
	return time.Duration((r.cpuBusy - r.cpuQuiet) / ws * float64(time.Second))
}

func (r scaleRun) quantile(q float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	s := slices.Clone(r.lat)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func (r scaleRun) line() string {
	what := "mix"
	if r.cfg.unread {
		what = "unread keys"
	}
	return fmt.Sprintf("scale: %d nodes, %s, writes to %s: %.0f Sets/s + %.0f fills/s, %.0f Gets/s; per node %.1f msgs/s (%.4f per write: %.4f about a key it held or waited for, %.4f about a key it was never asked for), %.1f probes/s; redis %.0f commands/s, CPU %.1f%% busy, %.1f%% reads only, %v per write; fleet process CPU %.0f%%; invalidation p50 %v p99 %v (%d samples); fleet totals: %d L1 hits, %d Redis hits, %d loads, %d Redis errors, %d L1 flushes; tracking table: %s",
		r.cfg.nodes, r.mode, what, float64(r.writes)/r.seconds(), float64(r.fills)/r.seconds(), float64(r.reads)/r.seconds(),
		float64(r.msgs)/float64(r.cfg.nodes)/r.seconds(), r.perNodeWrite(r.msgs), r.perNodeWrite(r.concerned), r.perNodeWrite(r.untouched),
		float64(r.other)/float64(r.cfg.nodes)/r.seconds(), float64(r.redisReads)/r.seconds(),
		100*r.cpuBusy, 100*r.cpuQuiet, r.cpuPerWrite().Round(100*time.Nanosecond), 100*r.fleetCPU,
		r.quantile(0.5).Round(10*time.Microsecond), r.quantile(0.99).Round(10*time.Microsecond), len(r.lat),
		r.stats.LocalHits, r.stats.RedisHits, r.stats.Loads, r.stats.RedisErrors, r.stats.LocalFlushes, r.tracked)
}

func scaleTable(runs []scaleRun) string {
	var b strings.Builder
	b.WriteString("| nodes | mode | writes/s | msgs per node per s | per node per write | about keys held/waited | about keys never asked for | probes per node per s | redis CPU | reads only | redis CPU per write | fleet CPU | invalidation p50 | p99 |\n")
	b.WriteString("|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range runs {
		fmt.Fprintf(&b, "| %d | %s | %.0f | %.1f | %.4f | %.4f | %.4f | %.1f | %.1f%% | %.1f%% | %v | %.0f%% | %v | %v |\n",
			r.cfg.nodes, r.mode, float64(r.writes+r.fills)/r.seconds(),
			float64(r.msgs)/float64(r.cfg.nodes)/r.seconds(), r.perNodeWrite(r.msgs), r.perNodeWrite(r.concerned), r.perNodeWrite(r.untouched),
			float64(r.other)/float64(r.cfg.nodes)/r.seconds(),
			100*r.cpuBusy, 100*r.cpuQuiet, r.cpuPerWrite().Round(time.Microsecond), 100*r.fleetCPU,
			r.quantile(0.5).Round(10*time.Microsecond), r.quantile(0.99).Round(10*time.Microsecond))
	}
	return b.String()
}
