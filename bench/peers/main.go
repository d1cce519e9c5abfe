// Command peers runs the fleet stampede of `go run ./bench` through
// stampede and through the Go libraries users would otherwise pick, in one
// run against one real redis-server, and prints them side by side: loads,
// errors, caller latency, Redis commands and CPU for each, then the hit
// path of each next to a raw go-redis GET, and stampede's Locker next to
// bsm/redislock and rueidislock.
//
// It is a module of its own, so that the peers' dependencies stay out of
// stampede's. Run it from this directory:
//
//	go run .                      # starts its own redis-server
//	go run . -redis 127.0.0.1:6379
//
// See docs/bench.md for how each library is set up and how to read the
// output.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stampede-go/stampede"
	"github.com/stampede-go/stampede/bench/internal/benchnode"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	redis.SetLogger(quietLog{})
	testing.Init() // testing.Benchmark reads -test.benchtime
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "peers:", err)
			os.Exit(1)
		}
	}
}

type quietLog struct{}

func (quietLog) Printf(context.Context, string, ...any) {}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("peers", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		addr      = fs.String("redis", "", "address of the Redis server to use (host:port); default: start a redis-server on a free loopback port")
		nodes     = fs.Int("nodes", 10, "nodes in the fleet, each with its own go-redis client (pool 10) and its own instance of the library")
		requests  = fs.Int("requests", 20_000, "requests in the herd, sent round-robin to the nodes and released together")
		load      = fs.Duration("load", 50*time.Millisecond, "how long one database load takes")
		peerList  = fs.String("peers", strings.Join(peerNames(), ","), "comma-separated libraries to run")
		scList    = fs.String("scenario", "cold,expired,hit", "comma-separated scenarios for the fleet runs; empty: none")
		hits      = fs.Bool("hit", true, "benchmark the hit path of each library next to a raw GET")
		locks     = fs.Bool("locks", true, "benchmark stampede's Locker next to bsm/redislock and rueidislock")
		benchtime = fs.Duration("benchtime", time.Second, "time for each hit-path and locker benchmark")
		jsonOut   = fs.String("json", "", "also write every result as JSON to this file")
		svgOut    = fs.String("svg", "", "also write a chart of the fleet runs as SVG to this file")
		cpuProf   = fs.String("cpuprofile", "", "write a CPU profile of the herd (release to the last load) to this file; needs one library and one scenario")
		blockProf = fs.String("blockprofile", "", "write a block profile (every blocking event) of the herd to this file; needs one library and one scenario")
		mutexProf = fs.String("mutexprofile", "", "write a mutex profile (every contention) of the herd to this file; needs one library and one scenario")
		traceOut  = fs.String("trace", "", "write an execution trace of the herd to this file; needs one library and one scenario")
		from      = fs.String("from", "", "run nothing: print the report (and -svg) of a run saved with -json")
		inv       stampede.Invalidation
	)
	fs.TextVar(&inv, "invalidation", stampede.InvalidateAuto, "stampede's Options.Invalidation: auto (its default, tracking on a redis-server 6.2 or later), broadcast or tracking")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ps, err := pickPeers(*peerList)
	if err != nil {
		return fmt.Errorf("-peers: %w", err)
	}
	scs, err := pickScenarios(*scList)
	if err != nil {
		return fmt.Errorf("-scenario: %w", err)
	}
	if *nodes < 1 || *requests < *nodes {
		return errors.New("need at least one node and a request per node")
	}
	if err := flag.Set("test.benchtime", benchtime.String()); err != nil {
		return err
	}
	if *from != "" {
		return replay(*from, *svgOut, stdout)
	}
	prof := profiles{cpu: *cpuProf, block: *blockProf, mutex: *mutexProf, trace: *traceOut}
	if prof.any() && len(ps)*len(scs) != 1 {
		return errors.New("profiles cover one herd: give -peers and -scenario one name each")
	}

	prog := newProgress(stderr)
	var srv *server
	if *addr == "" {
		srv, err = startServer(ctx)
	} else {
		srv, err = dialServer(ctx, *addr)
	}
	if err != nil {
		return err
	}
	defer srv.stop()
	got, err := resolveInvalidation(ctx, srv.addr, inv)
	if err != nil {
		return fmt.Errorf("-invalidation: %w", err)
	}
	s := setting{Nodes: *nodes, Requests: *requests, Load: load.String(),
		Server: fmt.Sprintf("redis-server %s at %s", srv.version, srv.addr), GoMaxProcs: runtime.GOMAXPROCS(0),
		Invalidation: benchnode.Describe(inv, got)}
	prog.printf("%s", s)

	cfg := fleetConfig{addr: srv.addr, nodes: *nodes, requests: *requests, load: *load, inv: got, profiles: prof}
	var fleet []result
	total, i := len(scs)*len(ps), 0
	for _, sc := range scs {
		for _, p := range ps {
			i++
			prog.start(fmt.Sprintf("%s/%s (%d/%d)", sc, p.name, i, total), *requests)
			r, err := runFleet(ctx, cfg, p, sc, prog)
			prog.end()
			if err != nil {
				return err
			}
			prog.printf("%-8s %-15s loads=%d errors=%d p50=%sms p99=%sms max=%sms wall=%sms cmds=%d trips=%d cpu=%.2fs redis-cpu=%.2fs; all in Get at +%sms, first load +%s–%sms; %s",
				sc, p.name, r.Loads, r.Errors, ms(r.P50), ms(r.P99), ms(r.Max), ms(r.WallMS), r.Commands, r.RoundTrips, r.CPU, r.RedisCPU,
				ms(float64(r.GateMS)), ms(float64(r.LoadStartMS)), ms(float64(r.LoadEndMS)), r.Note)
			fleet = append(fleet, r)
		}
	}

	var hs []hitResult
	if *hits {
		if hs, err = benchHits(ctx, srv.addr, got, prog); err != nil {
			return err
		}
	}
	var ls []lockResult
	if *locks {
		if ls, err = benchLocks(ctx, srv.addr, prog); err != nil {
			return err
		}
	}

	if err := writeReport(stdout, s, fleet, hs, ls); err != nil {
		return err
	}
	if *jsonOut != "" {
		out := saved{s, fleet, hs, ls}
		if err := writeFile(*jsonOut, func(w io.Writer) error {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(out)
		}); err != nil {
			return err
		}
	}
	if *svgOut != "" {
		if err := writeFile(*svgOut, func(w io.Writer) error { return writeSVG(w, s, fleet) }); err != nil {
			return err
		}
	}
	return nil
}

// saved is a run as -json writes it and -from reads it.
type saved struct {
	Setting setting      `json:"setting"`
	Fleet   []result     `json:"fleet"`
	Hits    []hitResult  `json:"hit_path"`
	Locks   []lockResult `json:"locker"`
}

// replay prints the report of a saved run, and its chart if svgOut is set.
func replay(name, svgOut string, stdout io.Writer) error {
	b, err := os.ReadFile(name)
	if err != nil {
		return err
	}
	var sv saved
	if err := json.Unmarshal(b, &sv); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := writeReport(stdout, sv.Setting, sv.Fleet, sv.Hits, sv.Locks); err != nil {
		return err
	}
	if svgOut != "" {
		return writeFile(svgOut, func(w io.Writer) error { return writeSVG(w, sv.Setting, sv.Fleet) })
	}
	return nil
}

func pickPeers(list string) ([]peer, error) {
	var out []peer
	for _, name := range splitList(list) {
		i := slices.IndexFunc(peers, func(p peer) bool { return p.name == name })
		if i < 0 {
			return nil, fmt.Errorf("unknown library %q (want some of %s)", name, strings.Join(peerNames(), ","))
		}
		out = append(out, peers[i])
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}

func pickScenarios(list string) ([]scenario, error) {
	var out []scenario
	for _, name := range splitList(list) {
		if !slices.Contains(scenarios, scenario(name)) {
			return nil, fmt.Errorf("unknown scenario %q (want some of cold,expired,hit)", name)
		}
		out = append(out, scenario(name))
	}
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// profiles names the files to profile a herd into; empty: not that one.
type profiles struct{ cpu, block, mutex, trace string }

func (p profiles) any() bool { return p != profiles{} }

// start starts the profiles asked for; the returned func stops them and
// writes the files.
func (p profiles) start() (stop func() error, err error) {
	var stops []func() error
	stopAll := func() error {
		var errs []error
		for _, s := range stops {
			errs = append(errs, s())
		}
		return errors.Join(errs...)
	}
	if p.block != "" {
		runtime.SetBlockProfileRate(1)
		stops = append(stops, func() error {
			defer runtime.SetBlockProfileRate(0)
			return writeFile(p.block, func(w io.Writer) error { return pprof.Lookup("block").WriteTo(w, 0) })
		})
	}
	if p.mutex != "" {
		runtime.SetMutexProfileFraction(1)
		stops = append(stops, func() error {
			defer runtime.SetMutexProfileFraction(0)
			return writeFile(p.mutex, func(w io.Writer) error { return pprof.Lookup("mutex").WriteTo(w, 0) })
		})
	}
	if p.cpu != "" {
		f, err := os.Create(p.cpu)
		if err != nil {
			return nil, errors.Join(err, stopAll())
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, errors.Join(err, stopAll())
		}
		stops = append(stops, func() error { pprof.StopCPUProfile(); return f.Close() })
	}
	if p.trace != "" {
		f, err := os.Create(p.trace)
		if err != nil {
			return nil, errors.Join(err, stopAll())
		}
		if err := trace.Start(f); err != nil {
			f.Close()
			return nil, errors.Join(err, stopAll())
		}
		stops = append(stops, func() error { trace.Stop(); return f.Close() })
	}
	return stopAll, nil
}

func writeFile(name string, write func(io.Writer) error) error {
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
