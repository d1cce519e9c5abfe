package main

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stampede-go/stampede"
	"github.com/stampede-go/stampede/bench/internal/benchnode"
	"golang.org/x/sync/errgroup"
)

// scenario is what the herd meets.
type scenario string

const (
	// cold: the key is absent.
	cold scenario = "cold"
	// expired: the value's TTL has just run out. Redis holds what the
	// library leaves then: a stale copy for those that keep one, nothing for
	// the others.
	expired scenario = "expired"
	// hit: a fresh value is in Redis; the nodes' memory is empty.
	hit scenario = "hit"
)

var scenarios = []scenario{cold, expired, hit}

// poolSize is each node's connection pool.
const poolSize = 10

// fleetConfig is one run's fleet and herd.
type fleetConfig struct {
	addr     string
	nodes    int
	requests int
	load     time.Duration
	// inv is stampede's Options.Invalidation, resolved (broadcast or
	// tracking); the zero value, auto, is what New picks on the server.
	inv      stampede.Invalidation
	profiles profiles // of the herd, from its release until its loads are done
}

// result is what one run (one scenario, one library) measured.
type result struct {
	Scenario scenario `json:"scenario"`
	Peer     string   `json:"library"`
	Nodes    int      `json:"nodes"`
	Requests int      `json:"requests"`
	Loads    int64    `json:"loads"`
	Errors   int64    `json:"errors"`
	P50      float64  `json:"p50_ms"`
	P99      float64  `json:"p99_ms"`
	Max      float64  `json:"max_ms"`
	WallMS   float64  `json:"wall_ms"` // from the release to the last answer
	// Commands is what redis-server counted (INFO commandstats), a
	// script's own calls included; Calls breaks it down by command.
	Commands int64            `json:"redis_commands"`
	Calls    map[string]int64 `json:"redis_calls"`
	// RoundTrips is what the nodes sent: one per command or pipeline.
	RoundTrips int64   `json:"round_trips"`
	CPU        float64 `json:"cpu_s"`       // this process (the whole fleet), user + system
	RedisCPU   float64 `json:"redis_cpu_s"` // redis-server, user + system
	// When, after the release, the last caller entered Get (the gate
	// opened) and the first load started and returned, in ms; NaN if none.
	ReleasedAt  int64  `json:"released_unix_ns"` // the herd's release, to line up with outside logs
	GateMS      optMS  `json:"gate_open_ms"`
	LoadStartMS optMS  `json:"first_load_start_ms"`
	LoadEndMS   optMS  `json:"first_load_end_ms"`
	Note        string `json:"note,omitempty"`
}

// herd is the state of one run that its nodes share.
type herd struct {
	cfg  fleetConfig
	gate *gate

	loads    atomic.Int64
	inflight atomic.Int64
	lastLoad atomic.Int64 // Unix ns of the latest load's start or end

	firstStart atomic.Int64 // Unix ns the first load started
	firstEnd   atomic.Int64 // Unix ns the first load returned
}

// loader is the database of the run: it counts its calls, answers no sooner
// than the load time after the whole herd has arrived (see gate), and
// returns the time it finished.
func (r *herd) loader(ctx context.Context) (string, error) {
	r.loads.Add(1)
	r.inflight.Add(1)
	now := time.Now().UnixNano()
	r.lastLoad.Store(now)
	r.firstStart.CompareAndSwap(0, now)
	defer func() {
		now := time.Now().UnixNano()
		r.lastLoad.Store(now)
		r.firstEnd.CompareAndSwap(0, now)
		r.inflight.Add(-1)
	}()
	r.gate.wait(ctx)
	t := time.NewTimer(r.cfg.load)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return stamp(time.Now()), nil
}

// optMS is milliseconds, or NaN for none, which JSON writes as null.
type optMS float64

func (m *optMS) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*m = optMS(math.NaN())
		return nil
	}
	v, err := strconv.ParseFloat(string(b), 64)
	*m = optMS(v)
	return err
}

func (m optMS) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(m)) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, math.Round(float64(m)*1000)/1000, 'f', -1, 64), nil
}

// stamp is a value: the time it was made, in Unix ns.
func stamp(t time.Time) string { return strconv.FormatInt(t.UnixNano(), 10) }

// node is one simulated server: its own client and pool, its own instance
// of the library.
type node struct {
	rdb   *redis.Client
	impl  getter
	trips *atomic.Int64
}

func newClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:     addr,
		PoolSize: poolSize,
		// Pipelines (stampede's MULTI/EXEC read among them) share the one
		// pool, as in go run ./bench, so that the pool filled before the
		// run is all the node has: a pipeline pool of its own would be
		// dialled during the herd, by some libraries and not others, and
		// in tracking mode stampede's own client has used its pipeline
		// connection once by the time New returns.
		PipelinePoolSize: -1,
		// The herd queues for connections far longer than a live service
		// would; that is the simulation, not an outage.
		PoolTimeout:     30 * time.Second,
		DisableIdentity: true,
	})
}

// tripHook counts a node's round trips to Redis.
type tripHook struct{ n *atomic.Int64 }

func (h tripHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h tripHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}
func (h tripHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// runFleet runs one scenario through one library.
func runFleet(ctx context.Context, cfg fleetConfig, p peer, sc scenario, prog *progress) (result, error) {
	e := env{ns: fmt.Sprintf("peers-%d", time.Now().UnixNano()), ttl: time.Minute, stale: time.Minute, inv: cfg.inv}
	ctl := redis.NewClient(&redis.Options{Addr: cfg.addr, PoolSize: 2, DisableIdentity: true})
	defer ctl.Close()
	defer cleanup(context.WithoutCancel(ctx), ctl, e.ns)

	r := &herd{cfg: cfg, gate: newGate(cfg.requests)}
	prog.phase("connecting %d nodes", cfg.nodes)
	nodes := make([]*node, cfg.nodes)
	var eg errgroup.Group
	eg.SetLimit(8)
	for i := range nodes {
		eg.Go(func() error {
			rdb := newClient(cfg.addr)
			if err := benchnode.Warm(ctx, rdb, poolSize); err != nil {
				rdb.Close()
				return err
			}
			trips := new(atomic.Int64)
			rdb.AddHook(tripHook{trips})
			ne := e
			ne.made = &benchnode.Clients{Hooks: []redis.Hook{tripHook{trips}}}
			impl, err := p.node(ne, rdb, r.loader)
			if err == nil {
				if err = ne.made.Warm(ctx, poolSize); err != nil {
					impl.close()
				}
			}
			if err != nil {
				rdb.Close()
				return err
			}
			nodes[i] = &node{rdb: rdb, impl: impl, trips: trips}
			return nil
		})
	}
	err := eg.Wait()
	defer func() {
		for _, n := range nodes {
			if n != nil {
				n.impl.close()
				n.rdb.Close()
			}
		}
	}()
	if err != nil {
		return result{}, fmt.Errorf("%s: %w", p.name, err)
	}

	prog.phase("seeding")
	if err := seed(ctx, cfg, e, p, sc); err != nil {
		return result{}, fmt.Errorf("%s/%s: seeding: %w", p.name, sc, err)
	}

	// The herd: request i goes to node i mod N, as a round-robin balancer
	// would send it; all wait at one barrier and are released together.
	lat := make([]int64, cfg.requests)
	bad := make([]bool, cfg.requests)
	start := make(chan struct{})
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(start) }) }
	defer release() // on an early return, the herd runs into closed nodes and ends
	var ready, done sync.WaitGroup
	ready.Add(cfg.requests)
	done.Add(cfg.requests)
	for i := range cfg.requests {
		n := nodes[i%len(nodes)]
		go func() {
			defer done.Done()
			// Each request has a context of its own, as a server gives
			// every request; one shared by the herd would put all of its
			// waiters on one Done channel.
			rctx, cancel := context.WithCancel(ctx)
			defer cancel()
			ready.Done()
			<-start
			r.gate.arrive()
			t0 := time.Now()
			v, err := n.impl.get(rctx)
			lat[i] = int64(time.Since(t0))
			if _, perr := strconv.ParseInt(v, 10, 64); err != nil || perr != nil {
				bad[i] = true
			}
			prog.done.Add(1)
		}()
	}
	ready.Wait()
	runtime.GC() // not the previous run's garbage

	before, err := readServerStats(ctx, ctl)
	if err != nil {
		return result{}, err
	}
	var trips0 int64
	for _, n := range nodes {
		trips0 += n.trips.Load()
	}
	stopProfiles := func() error { return nil }
	if cfg.profiles.any() {
		if stopProfiles, err = cfg.profiles.start(); err != nil {
			return result{}, err
		}
	}
	cpu0 := processCPU()
	prog.phase("herd")
	released := time.Now()
	release()
	done.Wait()
	wall := time.Since(released)
	prog.phase("waiting for loads to finish")
	r.settle(ctx)
	cpu := processCPU() - cpu0
	if err := stopProfiles(); err != nil {
		return result{}, err
	}
	after, err := readServerStats(ctx, ctl)
	if err != nil {
		return result{}, err
	}
	var trips int64
	for _, n := range nodes {
		trips += n.trips.Load()
	}

	d := after.sub(before)
	res := result{
		Scenario: sc, Peer: p.name, Nodes: cfg.nodes, Requests: cfg.requests,
		Loads:  r.loads.Load(),
		WallMS: float64(wall) / 1e6, Commands: d.total(), Calls: d.calls,
		RoundTrips: trips - trips0,
		CPU:        cpu.Seconds(), RedisCPU: d.cpu.Seconds(),
	}
	for _, b := range bad {
		if b {
			res.Errors++
		}
	}
	slices.Sort(lat)
	res.P50, res.P99, res.Max = quantile(lat, 0.50), quantile(lat, 0.99), quantile(lat, 1)
	since := func(ns int64) optMS {
		if ns == 0 {
			return optMS(math.NaN())
		}
		return optMS(float64(ns-released.UnixNano()) / 1e6)
	}
	res.ReleasedAt = released.UnixNano()
	res.GateMS, res.LoadStartMS, res.LoadEndMS = since(r.gate.opened.Load()), since(r.firstStart.Load()), since(r.firstEnd.Load())
	res.Note = stampedeNote(nodes)
	return res, nil
}

// stampedeNote sums stampede's own counters over the nodes of a stampede
// run: how the waiters were woken, stale copies served, leases.
func stampedeNote(nodes []*node) string {
	var s stampede.Stats
	any := false
	for _, n := range nodes {
		if sn, ok := n.impl.(*stampedeNode); ok {
			st := sn.stats()
			any = true
			s.RedisHits += st.RedisHits
			s.StaleServed += st.StaleServed
			s.WokenByNotify += st.WokenByNotify
			s.WokenByRecheck += st.WokenByRecheck
			s.LockWon += st.LockWon
			s.LockContended += st.LockContended
			s.RedisErrors += st.RedisErrors
		}
	}
	if !any {
		return ""
	}
	return fmt.Sprintf("redis hits %d, stale served %d, leases won %d, contended %d, waiters woken by notification %d / by re-check %d, redis errors %d",
		s.RedisHits, s.StaleServed, s.LockWon, s.LockContended, s.WokenByNotify, s.WokenByRecheck, s.RedisErrors)
}

// seed prepares Redis for the scenario. The nodes' memory stays empty.
func seed(ctx context.Context, cfg fleetConfig, e env, p peer, sc scenario) error {
	rdb := redis.NewClient(&redis.Options{Addr: cfg.addr, PoolSize: 2, DisableIdentity: true})
	defer rdb.Close()
	switch sc {
	case expired:
		if p.seedExpired == nil {
			return nil
		}
		return p.seedExpired(ctx, e, rdb)
	case hit:
		// Through the library's own write path, by a node of its own.
		g, err := p.node(e, rdb, func(context.Context) (string, error) { return stamp(time.Now()), nil })
		if err != nil {
			return err
		}
		_, err = g.get(ctx)
		g.close()
		if err != nil {
			return err
		}
		return waitStored(ctx, rdb, p.valueKey(e))
	}
	return nil
}

// waitStored waits until key exists: some libraries write on a goroutine
// of their own.
func waitStored(ctx context.Context, rdb *redis.Client, key string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := rdb.Exists(ctx, key).Result()
		if err == nil && n == 1 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s was not stored", key)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// settle waits until no load is running and none has started or ended for
// a while, so that background refreshes are counted too.
func (r *herd) settle(ctx context.Context) {
	const quiet = 250 * time.Millisecond
	deadline := time.Now().Add(30 * time.Second)
	since := time.Now()
	for time.Now().Before(deadline) && ctx.Err() == nil {
		last := time.Unix(0, r.lastLoad.Load())
		if last.Before(since) {
			last = since
		}
		if r.inflight.Load() == 0 && time.Since(last) > quiet {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// cleanup deletes the run's keys.
func cleanup(ctx context.Context, ctl *redis.Client, ns string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var keys []string
	iter := ctl.Scan(ctx, 0, ns+"*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if len(keys) > 0 {
		ctl.Del(ctx, keys...)
	}
}

// quantile of sorted nanoseconds, in milliseconds, nearest rank; NaN for
// no data.
func quantile(sorted []int64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	i = min(max(i, 0), len(sorted)-1)
	return float64(sorted[i]) / 1e6
}

// gate holds every load back until the whole herd has arrived (entered the
// library's Get), or arrivals have stopped for gateQuiet. On a real fleet
// the herd's lookups run on many machines at once and have all missed
// before the database answers; on one small machine they queue, and the
// first value would land while most of the herd is still in line.
type gate struct {
	want  int64
	count atomic.Int64
	last  atomic.Int64 // Unix ns of the latest arrival

	open      chan struct{}
	opened    atomic.Int64 // Unix ns it opened
	openOnce  sync.Once
	watchOnce sync.Once
}

const (
	gateQuiet = 250 * time.Millisecond
	gateLimit = 20 * time.Second
)

func newGate(want int) *gate {
	g := &gate{want: int64(want), open: make(chan struct{})}
	g.last.Store(time.Now().UnixNano())
	return g
}

func (g *gate) arrive() {
	g.last.Store(time.Now().UnixNano())
	if g.count.Add(1) == g.want {
		g.release()
	}
}

func (g *gate) release() {
	g.openOnce.Do(func() {
		g.opened.Store(time.Now().UnixNano())
		close(g.open)
	})
}

func (g *gate) wait(ctx context.Context) {
	g.watchOnce.Do(func() { go g.watch() })
	select {
	case <-g.open:
	case <-ctx.Done():
	}
}

func (g *gate) watch() {
	deadline := time.Now().Add(gateLimit)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-g.open:
			return
		case <-tick.C:
		}
		if time.Since(time.Unix(0, g.last.Load())) > gateQuiet || time.Now().After(deadline) {
			g.release()
			return
		}
	}
}
