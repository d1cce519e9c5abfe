// Command bench simulates a fleet of servers behind one Redis, sends a herd
// of requests at one hot key, and counts the database loads each protection
// layer lets through: none (naive), in-process single-flight, a cross-node
// lock, and stampede.
//
// Run it from the repository root:
//
//	go run ./bench
//
// See docs/bench.md for the flags and how to read the output.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stampede-go/stampede"
	"github.com/stampede-go/stampede/bench/internal/batch"
	"github.com/stampede-go/stampede/bench/internal/benchnode"
	"github.com/stampede-go/stampede/bench/internal/fleet"
)

// workerEnv marks a process started by -procs as a worker.
const workerEnv = "STAMPEDE_BENCH_WORKER"

// The default fleet finishes in under a minute and 300 MB on two cores;
// -full is the sweep the README's redis-server table comes from.
const (
	defaultNodes    = 20
	defaultRequests = 10_000
	fullNodes       = 50
	fullRequests    = 100_000
)

// fleetLine says which fleet runs, first thing, so that nobody mistakes the
// default for the full sweep.
func fleetLine(nodes, requests int) string {
	switch {
	case nodes == defaultNodes && requests == defaultRequests:
		return fmt.Sprintf("%d nodes × %s requests: the default, smaller fleet (-full runs %d × %s)",
			nodes, fleet.Thousands(requests), fullNodes, fleet.Thousands(fullRequests))
	case nodes == fullNodes && requests == fullRequests:
		return fmt.Sprintf("%d nodes × %s requests: the full sweep", nodes, fleet.Thousands(requests))
	}
	return fmt.Sprintf("%d nodes × %s requests, as asked (default %d × %s, -full %d × %s)",
		nodes, fleet.Thousands(requests), defaultNodes, fleet.Thousands(defaultRequests), fullNodes, fleet.Thousands(fullRequests))
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	redis.SetLogger(quietLog{})
	if os.Getenv(workerEnv) == "1" {
		if err := fleet.ServeWorker(ctx, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "bench worker:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// quietLog drops go-redis's log lines: refused connections are the point
// of some scenarios, and the results count every failure.
type quietLog struct{}

func (quietLog) Printf(context.Context, string, ...any) {}

func run(ctx context.Context) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var (
		nodes     = fs.Int("nodes", defaultNodes, "number of nodes in the fleet, each with its own Redis client and pool (-full: 50)")
		requests  = fs.Int("requests", defaultRequests, "requests in the herd, spread evenly over the nodes and released together (-full: 100000)")
		full      = fs.Bool("full", false, "run the full sweep: 50 nodes × 100,000 requests (takes minutes and over a GB of memory);\n-nodes and -requests given as well win")
		load      = fs.Duration("load", 100*time.Millisecond, "how long one database load takes")
		lockTTL   = fs.Duration("lockttl", 5*time.Second, "rebuild lease (stampede's LockTTL, whose default this is) and the lock mode's lock TTL;\na crashed loader blocks the fleet this long")
		addr      = fs.String("redis", "", "address of a Redis server to use (host:port); default: an embedded miniredis")
		procs     = fs.Int("procs", 0, "run the nodes in this many worker processes that share nothing but Redis;\n0 runs them all in this process")
		scenarios = fs.String("scenario", joinAll(fleet.Scenarios), "comma-separated scenarios to run")
		modes     = fs.String("mode", joinAll(fleet.Modes), "comma-separated modes to run")
		batches   = fs.Bool("batch", true, "also run the batch scenario: every node's callers read many keys at once (GetMany)")
		jsonOut   = fs.String("json", "", "also write the results as JSON to this file")
		svgOut    = fs.String("svg", "", "also write a chart of the results as SVG to this file")
		inv       stampede.Invalidation
	)
	fs.TextVar(&inv, "invalidation", stampede.InvalidateAuto, "how stampede's caches (mode full, and the batch scenario) hear about other nodes' writes:\nauto (stampede's default: tracking on a redis-server 6.2 or later, broadcast on the embedded miniredis),\nbroadcast or tracking")
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprint(out, `Usage: go run ./bench [flags]

Simulates a fleet of servers sharing one Redis. A herd of requests hits one
hot key on every node at once; the loader stands for the database. For each
scenario and mode it reports the loads the database saw, errors, caller
latency, and the waiters' overhead (time from the loader's return to the
caller's return, for callers that waited for that load).

By default the fleet is 20 nodes × 10,000 requests, which runs in under a
minute; -full runs 50 nodes × 100,000 requests. Progress goes to stderr
every second, the table to stdout at the end.

Modes:
  naive         GET, load on a miss, SET
  singleflight  per-node single-flight, no coordination between nodes
  lock          cross-node SET NX lock, losers re-check every 50 ms
  full          stampede's Cache (single-flight, lease, pub/sub wake-up,
                stale-while-revalidate, L1)

Scenarios:
  cold        the key is absent
  expiry      the value's TTL just passed; stampede still holds a stale copy,
              the other modes store none, so for them this is a cold miss
  crash       the first node to load dies mid-load (loader never returns,
              Redis connections cut); its callers die with it, uncounted
  redis-down  no node can reach Redis (connections refused)

Then, with -batch (the default), the batch scenario: 5 callers on each node
each read 50 keys at once from overlapping sets of 500 cold keys (on the
embedded miniredis, whose scripts run slowly: up to 10 nodes, 2 callers
each, 20 keys of 100), read
naively (MGET, load the misses, SET), with per-node single-flight, and with
stampede's GetMany; it reports how often each key reached the database.

The tables go to stdout, progress to stderr.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *full {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["nodes"] {
			*nodes = fullNodes
		}
		if !set["requests"] {
			*requests = fullRequests
		}
	}
	scs, err := parseList(*scenarios, fleet.Scenarios)
	if err != nil {
		return fmt.Errorf("-scenario: %w", err)
	}
	mds, err := parseList(*modes, fleet.Modes)
	if err != nil {
		return fmt.Errorf("-mode: %w", err)
	}

	backend := "real Redis at " + *addr
	embedded := *addr == ""
	if embedded {
		mr := miniredis.NewMiniRedis()
		mr.ClockTTL(true) // keys expire in real time, as in Redis
		if err := mr.Start(); err != nil {
			return fmt.Errorf("starting embedded miniredis: %w", err)
		}
		defer mr.Close()
		*addr = mr.Addr()
		backend = "embedded miniredis"
	} else {
		rdb := redis.NewClient(&redis.Options{Addr: *addr})
		err := rdb.Ping(ctx).Err()
		if err == nil {
			if info, ierr := rdb.Info(ctx, "server").Result(); ierr == nil {
				backend = "redis-server " + infoField(info, "redis_version") + " at " + *addr
			}
		}
		rdb.Close()
		if err != nil {
			return fmt.Errorf("-redis %s: %w", *addr, err)
		}
	}

	// Resolved once, so that the caption says which mode ran.
	invDesc := ""
	if slices.Contains(mds, fleet.Full) || *batches {
		rdb := redis.NewClient(&redis.Options{Addr: *addr, PoolSize: 2})
		got, err := benchnode.Invalidation(ctx, rdb, inv)
		rdb.Close()
		if err != nil {
			return fmt.Errorf("-invalidation on the %s: %w", backend, err)
		}
		invDesc = benchnode.Describe(inv, got)
		inv = got
	}

	cfg := fleet.Config{
		Nodes: *nodes, Requests: *requests, Load: *load, LockTTL: *lockTTL,
		Addr: *addr, Invalidation: inv, Procs: *procs, Log: os.Stderr,
	}
	if *procs > 0 {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		cfg.WorkerCmd = []string{self}
		os.Setenv(workerEnv, "1") // inherited by the workers only; this process checked it already
	}
	setting := fleet.Setting{Nodes: *nodes, Requests: *requests, Load: *load, LockTTL: *lockTTL,
		Backend: backend, Invalidation: invDesc, Procs: *procs}
	fmt.Fprintf(os.Stderr, "bench: %s\n", fleetLine(*nodes, *requests))
	setting.WakeP50, setting.WakeP99 = fleet.WakeFloor(*requests)
	fmt.Fprintf(os.Stderr, "bench: %s; GOMAXPROCS=%d; waking %d goroutines takes p50 %v, p99 %v here\n",
		setting, runtime.GOMAXPROCS(0), *requests, setting.WakeP50.Round(time.Microsecond), setting.WakeP99.Round(time.Microsecond))

	var results []fleet.Result
	began := time.Now()
	step, steps := 0, len(scs)*len(mds)
	for _, sc := range scs {
		for _, m := range mds {
			step++
			cfg.Step = fmt.Sprintf("%d/%d", step, steps)
			r, err := fleet.Run(ctx, cfg, sc, m)
			if err != nil {
				return err
			}
			results = append(results, r)
		}
	}
	fmt.Fprintf(os.Stderr, "bench: %d runs in %v\n", len(results), time.Since(began).Round(time.Millisecond))

	fmt.Printf("%s\n\n", fleetLine(*nodes, *requests))
	if err := fleet.WriteMarkdown(os.Stdout, setting, results); err != nil {
		return err
	}
	if *jsonOut != "" {
		if err := writeFile(*jsonOut, func(f *os.File) error { return fleet.WriteJSON(f, results) }); err != nil {
			return err
		}
	}
	if *svgOut != "" {
		if err := writeFile(*svgOut, func(f *os.File) error { return fleet.WriteSVG(f, setting, results) }); err != nil {
			return err
		}
	}
	if *batches {
		return runBatches(ctx, *nodes, *addr, backend, embedded, inv)
	}
	return nil
}

// runBatches runs the batch scenario on the fleet's nodes and prints its
// table.
func runBatches(ctx context.Context, nodes int, addr, backend string, embedded bool, inv stampede.Invalidation) error {
	cfg := batch.Config{Nodes: nodes, Callers: 5, PerCall: 50, KeySpace: 500, Load: 50 * time.Millisecond, Addr: addr, Invalidation: inv}
	if embedded {
		// miniredis runs each script in an interpreter of its own, some
		// hundred times slower than redis-server: a smaller herd, and a
		// Redis deadline it can keep (see batch.Config).
		cfg.Nodes, cfg.Callers, cfg.PerCall, cfg.KeySpace = min(nodes, 10), 2, 20, 100
		cfg.RedisTimeout = 10 * time.Second
	}
	var results []batch.Result
	for i, m := range batch.Modes {
		fmt.Fprintf(os.Stderr, "bench: batch/%s (%d/%d)\n", m, i+1, len(batch.Modes))
		r, err := batch.Run(ctx, cfg, m)
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	fmt.Println()
	return batch.WriteMarkdown(os.Stdout, cfg, backend, results)
}

func writeFile(name string, write func(*os.File) error) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func joinAll[T ~string](all []T) string {
	s := make([]string, len(all))
	for i, v := range all {
		s[i] = string(v)
	}
	return strings.Join(s, ",")
}

// parseList parses a comma-separated subset of all, keeping all's order.
func parseList[T ~string](s string, all []T) ([]T, error) {
	want := map[T]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !slices.Contains(all, T(f)) {
			return nil, fmt.Errorf("unknown %q (want some of %s)", f, joinAll(all))
		}
		want[T(f)] = true
	}
	if len(want) == 0 {
		return nil, errors.New("empty list")
	}
	var out []T
	for _, v := range all {
		if want[v] {
			out = append(out, v)
		}
	}
	return out, nil
}

func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return "?"
}
