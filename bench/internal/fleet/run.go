package fleet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stampede-go/stampede"
	"golang.org/x/sync/errgroup"
)

// partial is what a set of nodes measured: all of them in one process, or a
// worker's share, sent to the coordinator as JSON.
type partial struct {
	Loads  int64
	Errors int64
	Lost   int     // requests of nodes that died
	Lat    []int64 // latency of every answered request, ns
	Over   []int64 // overhead of every caller that waited for a load, ns
	Wall   time.Duration
	Stats  stampede.Stats
	// Errors stampede reported to its Observer (failed renewals,
	// background refreshes): how many, and the first.
	Reported      int
	FirstReported string
}

func (p *partial) merge(q partial) {
	p.Loads += q.Loads
	p.Errors += q.Errors
	p.Lost += q.Lost
	p.Lat = append(p.Lat, q.Lat...)
	p.Over = append(p.Over, q.Over...)
	p.Wall = max(p.Wall, q.Wall)
	p.Stats = addStats(p.Stats, q.Stats)
	p.Reported += q.Reported
	if p.FirstReported == "" {
		p.FirstReported = q.FirstReported
	}
}

func (p partial) result(j job) Result {
	slices.Sort(p.Lat)
	slices.Sort(p.Over)
	return Result{
		Scenario: j.Scenario, Mode: j.Mode, Nodes: j.Nodes, Requests: j.Requests,
		Loads: p.Loads, Errors: p.Errors,
		P50: quantile(p.Lat, 0.50), P99: quantile(p.Lat, 0.99), Max: quantile(p.Lat, 1),
		OverheadP50: quantile(p.Over, 0.50), OverheadP99: quantile(p.Over, 0.99),
		Answered: len(p.Lat), Lost: p.Lost, Waiters: len(p.Over),
		Wall: p.Wall, Stats: p.Stats,
		Reported: p.Reported, FirstReported: p.FirstReported,
	}
}

// quantile of sorted nanoseconds, in milliseconds, by the nearest-rank
// method; NaN for no data.
func quantile(sorted []int64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	i = min(max(i, 0), len(sorted)-1)
	return float64(sorted[i]) / 1e6
}

// barrier holds the herd back until every node of the fleet is ready.
type barrier interface {
	wait(ctx context.Context) error
}

// localBarrier: the whole fleet is in this process, so it is ready now.
type localBarrier struct{}

func (localBarrier) wait(context.Context) error { return nil }

// claimer picks the one load, fleet-wide, whose node dies in Crash.
type claimer interface {
	claim(ctx context.Context) bool
}

type localClaim struct{ taken atomic.Bool }

func (c *localClaim) claim(context.Context) bool { return c.taken.CompareAndSwap(false, true) }

// errDied is what a dead node's loader "returns" once the run is over.
var errDied = errors.New("fleet: node died")

// stamp is the value a load produces: the time it finished, in Unix ns. A
// caller that started before it waited for that load, and the difference to
// its own return is its overhead.
func stamp(t time.Time) string { return strconv.FormatInt(t.UnixNano(), 10) }

// runLocal runs the nodes ids of job j in this process, reporting to w.
func runLocal(ctx context.Context, j job, ids []int, b barrier, cl claimer, g gate, w *watch) (partial, error) {
	ctx, cancel := context.WithTimeout(ctx, runLimit(j))
	defer cancel()

	nodes := make([]*node, len(ids))
	var eg errgroup.Group
	eg.SetLimit(8)
	for i, id := range ids {
		eg.Go(func() error {
			n, err := newNode(ctx, j, id, cl, g, w)
			nodes[i] = n
			return err
		})
	}
	err := eg.Wait()
	defer func() {
		var wg sync.WaitGroup
		for _, n := range nodes {
			if n != nil {
				wg.Add(1)
				go func() { defer wg.Done(); n.close() }()
			}
		}
		wg.Wait()
	}()
	if err != nil {
		return partial{}, err
	}

	start := make(chan struct{})
	for _, n := range nodes {
		n.launch(start)
	}
	if err := b.wait(ctx); err != nil {
		close(start)
		for _, n := range nodes {
			n.cancel()
		}
		return partial{}, err
	}
	var seeded *refreshWatch
	if j.Scenario == Expiry && j.Mode == Full {
		if seeded, err = watchRefresh(j); err != nil {
			close(start)
			for _, n := range nodes {
				n.cancel()
			}
			return partial{}, err
		}
		defer seeded.close()
	}
	released := time.Now()
	w.setPhase("herd released")
	close(start)

	var p partial
	for _, n := range nodes {
		select {
		case <-n.done:
		case <-n.died:
		case <-ctx.Done():
			return partial{}, fmt.Errorf("fleet: %s/%s did not finish in %v", j.Scenario, j.Mode, runLimit(j))
		}
	}
	p.Wall = time.Since(released)
	if seeded != nil {
		w.setPhase("waiting for the refresh to land")
		if err := seeded.wait(ctx, runLimit(j)); err != nil {
			return partial{}, err
		}
	}
	w.setPhase("closing nodes")
	// The survivors are done: end the dead nodes' hung loads and callers.
	for _, n := range nodes {
		if n.dead.Load() {
			close(n.kill)
			n.cancel()
			<-n.done
		}
	}
	for _, n := range nodes {
		p.merge(n.partial())
	}
	return p, nil
}

// runLimit bounds a run, so that a fleet that never answers fails instead
// of hanging.
func runLimit(j job) time.Duration {
	return time.Minute + 20*j.Load + 10*j.LockTTL
}

func addStats(a, b stampede.Stats) stampede.Stats {
	a.LocalHits += b.LocalHits
	a.RedisHits += b.RedisHits
	a.Misses += b.Misses
	a.Loads += b.Loads
	a.StaleServed += b.StaleServed
	a.EarlyRefreshes += b.EarlyRefreshes
	a.LockWon += b.LockWon
	a.LockContended += b.LockContended
	a.WokenByNotify += b.WokenByNotify
	a.WokenByRecheck += b.WokenByRecheck
	a.LeaseRenewals += b.LeaseRenewals
	a.LeasesLost += b.LeasesLost
	a.WriteBacksRejected += b.WriteBacksRejected
	a.RedisErrors += b.RedisErrors
	a.LoaderPanics += b.LoaderPanics
	a.Corrupt += b.Corrupt
	return a
}

// refreshWatch waits for the refresh that nobody waits for. In Expiry the
// callers are served the stale copy at once and may all be done before the
// refresh lands; its load is counted only once it has.
type refreshWatch struct {
	rdb    *redis.Client
	key    string
	seeded []byte // the expired value, read by setup before the herd
}

func watchRefresh(j job) (*refreshWatch, error) {
	if len(j.Expired) == 0 {
		return nil, errors.New("fleet: setup did not record the expired value")
	}
	return &refreshWatch{
		rdb:    redis.NewClient(&redis.Options{Addr: j.Addr, PoolSize: 1}),
		key:    j.NS + ":{" + hotKey + "}",
		seeded: j.Expired,
	}, nil
}

func (w *refreshWatch) close() { w.rdb.Close() }

// wait returns once Redis holds a value other than the expired one.
func (w *refreshWatch) wait(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if v, err := w.rdb.Get(ctx, w.key).Bytes(); err == nil && !bytes.Equal(v, w.seeded) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return fmt.Errorf("fleet: the expired value was not refreshed within %v", limit)
}
