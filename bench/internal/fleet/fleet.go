// Package fleet simulates a fleet of application nodes sharing one Redis and
// measures how many database loads a herd of requests on one hot key causes
// under each protection layer, and how long the callers wait.
//
// Every node has its own go-redis client and connection pool, as a separate
// machine would. The nodes of a run live in this process, or are spread over
// worker processes that share nothing but Redis (Config.Procs).
package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stampede-go/stampede"
	"github.com/stampede-go/stampede/bench/internal/benchnode"
)

// Mode is a protection layer.
type Mode string

// The modes, from none to all of stampede.
const (
	// Naive is plain cache-aside: GET, load on a miss, SET.
	Naive Mode = "naive"
	// SingleFlight coalesces the loads of one node in-process, nothing more.
	SingleFlight Mode = "singleflight"
	// Lock takes a cross-node SET NX lock before loading; losers re-check
	// every 50 ms. No single-flight, no notification.
	Lock Mode = "lock"
	// Full is stampede's Cache.
	Full Mode = "full"
)

// Modes lists every mode in the order tables show them.
var Modes = []Mode{Naive, SingleFlight, Lock, Full}

// Scenario is what the herd runs into.
type Scenario string

// The scenarios.
const (
	// Cold: the key is absent.
	Cold Scenario = "cold"
	// Expiry: the value's TTL has just passed. stampede keeps a stale copy
	// for Options.Stale and serves it while one node rebuilds; the other
	// modes store values with the TTL alone, so for them the key is gone and
	// expiry is a cold miss.
	Expiry Scenario = "expiry"
	// Crash: the first node to start a load dies mid-load. Its loader never
	// returns and its Redis connections are cut, so a lease it holds is
	// never renewed nor released. Its own callers die with it and are not
	// counted.
	Crash Scenario = "crash"
	// RedisDown: no node can reach Redis (connections are refused).
	RedisDown Scenario = "redis-down"
)

// Scenarios lists every scenario in the order tables show them.
var Scenarios = []Scenario{Cold, Expiry, Crash, RedisDown}

// Config describes a fleet and its herd.
type Config struct {
	Nodes    int           // nodes in the fleet
	Requests int           // requests in the herd, spread evenly over the nodes
	Load     time.Duration // how long one load (the database query) takes
	LockTTL  time.Duration // lease of stampede and lock of the lock mode
	Addr     string        // the Redis server every node dials
	// Invalidation is how the caches of Full hear about other nodes'
	// writes. InvalidateAuto (the zero value, stampede's default) is
	// resolved once per run to the mode New picks on this server
	// (benchnode.Invalidation), and every node is made in that mode.
	Invalidation stampede.Invalidation

	// Procs > 0 runs the nodes in that many worker processes started with
	// WorkerCmd, which must call ServeWorker. 0 runs them in this process.
	Procs     int
	WorkerCmd []string

	// Log receives a line per run with its results, and a line of progress
	// every second while it goes on; nil discards both.
	Log io.Writer
	// Step names the run among others in progress lines, as "3/16".
	Step string
}

func (c Config) validate() error {
	switch {
	case c.Nodes < 1:
		return errors.New("fleet: need at least one node")
	case c.Requests < c.Nodes:
		return fmt.Errorf("fleet: %d requests cannot cover %d nodes", c.Requests, c.Nodes)
	case c.Load < 0:
		return errors.New("fleet: negative load time")
	case c.LockTTL < 10*time.Millisecond:
		return errors.New("fleet: lock TTL under 10ms")
	case c.Addr == "":
		return errors.New("fleet: no Redis address")
	case c.Invalidation > stampede.InvalidateTracking:
		return fmt.Errorf("fleet: unknown invalidation mode %v", c.Invalidation)
	case c.Procs < 0:
		return errors.New("fleet: negative process count")
	case c.Procs > 0 && len(c.WorkerCmd) == 0:
		return errors.New("fleet: worker processes need a command")
	}
	return nil
}

// Result is what one run (one scenario, one mode) measured. Latencies and
// overheads are in milliseconds.
type Result struct {
	Scenario Scenario `json:"scenario"`
	Mode     Mode     `json:"mode"`
	Nodes    int      `json:"nodes"`
	Requests int      `json:"requests"`
	Loads    int64    `json:"loads"`
	Errors   int64    `json:"errors"`
	P50      float64  `json:"p50_ms"`
	P99      float64  `json:"p99_ms"`
	Max      float64  `json:"max_ms"`
	// OverheadP50 and OverheadP99 are over the callers that waited for a
	// load: those that started before the value they got had been loaded.
	// For each, overhead is the time from the loader's return to the
	// caller's return: the cost of hearing about the value, on top of the
	// loader's own time. NaN when no caller waited.
	OverheadP50 float64 `json:"-"`
	OverheadP99 float64 `json:"overhead_p99_ms"`

	Answered int            `json:"-"` // requests that returned (all but the dead node's)
	Lost     int            `json:"-"` // requests that died with a crashed node
	Waiters  int            `json:"-"` // callers that waited for a load
	Wall     time.Duration  `json:"-"` // from the start barrier to the last answer
	Stats    stampede.Stats `json:"-"` // summed over the nodes (Full only)
	// Invalidation is the mode the caches ran in (Full only).
	Invalidation stampede.Invalidation `json:"-"`
	// Reported counts the errors stampede reported to its Observer (failed
	// lease renewals, failed background refreshes); FirstReported is one.
	Reported      int    `json:"-"`
	FirstReported string `json:"-"`
}

// Run runs one scenario in one mode and returns what it measured.
func Run(ctx context.Context, cfg Config, sc Scenario, mode Mode) (Result, error) {
	if err := cfg.validate(); err != nil {
		return Result{}, err
	}
	if !slices.Contains(Scenarios, sc) {
		return Result{}, fmt.Errorf("fleet: unknown scenario %q", sc)
	}
	if !slices.Contains(Modes, mode) {
		return Result{}, fmt.Errorf("fleet: unknown mode %q", mode)
	}
	ctl := redis.NewClient(&redis.Options{Addr: cfg.Addr, PoolSize: 4})
	defer ctl.Close()

	j := job{
		Scenario: sc, Mode: mode,
		Nodes: cfg.Nodes, Requests: cfg.Requests,
		Load: cfg.Load, LockTTL: cfg.LockTTL, Addr: cfg.Addr,
		NS: fmt.Sprintf("bench-%d-%s-%s", time.Now().UnixNano(), sc, mode),
	}
	if mode == Full {
		j.Invalidation = cfg.Invalidation
		if j.Invalidation == stampede.InvalidateAuto {
			inv, err := benchnode.Invalidation(ctx, ctl, j.Invalidation)
			if err != nil {
				return Result{}, fmt.Errorf("fleet: %w", err)
			}
			j.Invalidation = inv
		}
	}
	defer cleanup(context.WithoutCancel(ctx), ctl, j.NS)
	if err := setup(ctx, ctl, &j); err != nil {
		return Result{}, fmt.Errorf("fleet: setting up %s: %w", sc, err)
	}

	w := &watch{phase: "starting nodes"}
	answered := w.answered.Load
	if cfg.Procs > 0 {
		answered = func() int64 {
			n, _ := ctl.Get(context.WithoutCancel(ctx), j.NS+":answered").Int64()
			return n
		}
	}
	if cfg.Log != nil {
		label := fmt.Sprintf("%s/%s", sc, mode)
		if cfg.Step != "" {
			label += " (" + cfg.Step + ")"
		}
		t := startTicker(cfg.Log, label, cfg.Requests, w, answered)
		defer t.close()
	}

	var p partial
	var err error
	if cfg.Procs == 0 {
		var g gate = noGate{}
		if sc != RedisDown {
			g = newLocalGate(cfg.Requests)
		}
		p, err = runLocal(ctx, j, allNodes(cfg.Nodes), localBarrier{}, &localClaim{}, g, w)
	} else {
		w.setPhase("worker processes")
		p, err = runProcs(ctx, cfg, ctl, j)
	}
	if err != nil {
		return Result{}, err
	}
	r := p.result(j)
	if mode == Full {
		r.Invalidation = j.Invalidation
	}
	if cfg.Log != nil {
		fmt.Fprintln(cfg.Log, r.progress())
	}
	return r, nil
}

// job is one run as a set of nodes sees it; worker processes get it as JSON.
type job struct {
	Scenario Scenario
	Mode     Mode
	Nodes    int // in the whole fleet
	Requests int // in the whole herd
	Load     time.Duration
	LockTTL  time.Duration
	Addr     string
	// Invalidation is the caches' mode in Full, resolved: broadcast or
	// tracking.
	Invalidation stampede.Invalidation
	NS           string // prefix of every Redis key and channel of this run
	IDs          []int  // the nodes a worker runs
	Procs        int    // the number of workers
	// Expired is, in Expiry with full, the expired value as setup wrote it
	// to Redis, so that every worker can tell when the refresh has landed.
	// It is binary (stampede's entry header), so it travels as []byte:
	// encoding/json base64-encodes that, while a string would be coerced to
	// UTF-8 and then never match the value in Redis.
	Expired []byte
}

// share is how many of the herd's requests go to node id.
func (j job) share(id int) int {
	n := j.Requests / j.Nodes
	if id < j.Requests%j.Nodes {
		n++
	}
	return n
}

const hotKey = "hot"

func allNodes(n int) []int {
	ids := make([]int, n)
	for i := range ids {
		ids[i] = i
	}
	return ids
}

// setup prepares Redis for the scenario. Only Expiry needs anything: a
// value written through stampede (so it carries its envelope) whose TTL has
// just run out while its stale window is open.
func setup(ctx context.Context, ctl *redis.Client, j *job) error {
	if j.Scenario != Expiry || j.Mode != Full {
		return nil
	}
	c, err := stampede.New[string](ctl, stampede.Options{
		Namespace: j.NS, TTL: time.Millisecond, Stale: 10 * time.Minute,
		LocalCapacity: -1, Beta: -1,
	})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Set(ctx, hotKey, stamp(time.Now())); err != nil {
		return err
	}
	time.Sleep(5 * time.Millisecond)
	j.Expired, err = ctl.Get(ctx, j.NS+":{"+hotKey+"}").Bytes()
	return err
}

// cleanup deletes the run's keys, so the next run starts from nothing.
func cleanup(ctx context.Context, ctl *redis.Client, ns string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var keys []string
	iter := ctl.Scan(ctx, 0, ns+":*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if len(keys) > 0 {
		ctl.Del(ctx, keys...)
	}
}

func (r Result) progress() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-10s %-12s %d nodes x %d requests: loads=%d errors=%d p50=%s p99=%s max=%s overhead p99=%s wall=%s",
		r.Scenario, r.Mode, r.Nodes, r.Requests, r.Loads, r.Errors,
		ms(r.P50), ms(r.P99), ms(r.Max), ms(r.OverheadP99), r.Wall.Round(time.Millisecond))
	if r.Lost > 0 {
		fmt.Fprintf(&b, " (%d requests died with the crashed node)", r.Lost)
	}
	if r.Mode == Full {
		s := r.Stats
		fmt.Fprintf(&b, " [%s invalidation, redis hits %d, stale %d, woken by notify %d / recheck %d, lock won %d, renewals %d, leases lost %d, write-backs rejected %d, redis errors %d]",
			r.Invalidation, s.RedisHits, s.StaleServed, s.WokenByNotify, s.WokenByRecheck, s.LockWon,
			s.LeaseRenewals, s.LeasesLost, s.WriteBacksRejected, s.RedisErrors)
		if r.Reported > 0 {
			fmt.Fprintf(&b, " %d errors reported, first: %s", r.Reported, r.FirstReported)
		}
	}
	return b.String()
}
