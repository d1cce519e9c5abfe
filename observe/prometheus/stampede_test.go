package prometheus_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/stampede-go/stampede"
	"github.com/stampede-go/stampede/internal/redistest"
	stampedeprom "github.com/stampede-go/stampede/observe/prometheus"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A cold key, many callers on several nodes over one real redis-server:
// the scrape shows one load, a wait for every node that found the lease
// taken, each ended as the caches' Stats say, and the same counts as Stats
// for every kind of event.
func TestStampede(t *testing.T) {
	srv := redistest.Start(t)
	metrics, err := stampedeprom.New(stampedeprom.Options{})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics)

	const nodes, callers = 4, 25
	// The loader holds the lease until every other node has found it taken,
	// so that each of them waits: the counts below do not depend on timing.
	contended := make(chan struct{}, nodes)
	observer := stampede.ObserverFunc(func(ctx context.Context, e stampede.Event) {
		metrics.Observe(ctx, e)
		if e.Kind == stampede.EventLeaseContended {
			select {
			case contended <- struct{}{}:
			default:
			}
		}
	})
	var loads atomic.Int64
	load := func(ctx context.Context, key string) (string, error) {
		loads.Add(1)
		for range nodes - 1 {
			select {
			case <-contended:
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
		return "espresso machine", nil
	}
	caches := make([]*stampede.Cache[string], nodes)
	for i := range caches {
		c, err := stampede.New[string](srv.Client(t), stampede.Options{
			Namespace:   "products",
			LoadTimeout: 20 * time.Second, // a bound for a broken run, not a speed check
			Observer:    observer,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		caches[i] = c
	}

	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, c := range caches {
		for range callers {
			wg.Go(func() {
				<-start
				v, err := c.Get(context.Background(), "sku-1", load)
				if err != nil || v != "espresso machine" {
					t.Errorf("Get = %q, %v", v, err)
				}
			})
		}
	}
	close(start)
	wg.Wait()

	var s stampede.Stats
	for _, c := range caches {
		x := c.Stats()
		s.LocalHits += x.LocalHits
		s.RedisHits += x.RedisHits
		s.Misses += x.Misses
		s.StaleServed += x.StaleServed
		s.Loads += x.Loads
		s.LockWon += x.LockWon
		s.LockContended += x.LockContended
		s.WokenByNotify += x.WokenByNotify
		s.WokenByRecheck += x.WokenByRecheck
	}
	if n := loads.Load(); n != 1 || s.Loads != 1 {
		t.Fatalf("the loader ran %d times (Stats: %d); want 1", n, s.Loads)
	}
	if s.LockContended != nodes-1 {
		t.Fatalf("Stats.LockContended = %d; want %d, one per node that did not win the lease", s.LockContended, nodes-1)
	}

	got := gather(t, reg)
	ns := map[string]string{"namespace": "products"}
	for _, c := range []struct {
		name  string
		match map[string]string
		want  uint64
	}{
		{"stampede_load_duration_seconds", ns, 1},
		{"stampede_load_duration_seconds", map[string]string{"reason": stampede.LoadMiss, "error": ""}, 1},
		{"stampede_events_total", map[string]string{"kind": "load", "reason": stampede.LoadMiss, "error": ""}, 1},
		{"stampede_wait_duration_seconds", ns, s.LockContended},
		{"stampede_wait_duration_seconds", ns, s.WokenByNotify + s.WokenByRecheck},
		{"stampede_wait_duration_seconds", map[string]string{"reason": stampede.WaitNotify}, s.WokenByNotify},
		{"stampede_wait_duration_seconds", map[string]string{"reason": stampede.WaitRecheck}, s.WokenByRecheck},
		{"stampede_events_total", map[string]string{"kind": "wait"}, s.LockContended},
		{"stampede_events_total", map[string]string{"kind": "local_hit"}, s.LocalHits},
		{"stampede_events_total", map[string]string{"kind": "redis_hit"}, s.RedisHits},
		{"stampede_events_total", map[string]string{"kind": "miss"}, s.Misses},
		{"stampede_events_total", map[string]string{"kind": "stale"}, s.StaleServed},
		{"stampede_events_total", map[string]string{"kind": "load_start"}, s.Loads},
		{"stampede_events_total", map[string]string{"kind": "lease_won"}, s.LockWon},
		{"stampede_events_total", map[string]string{"kind": "lease_contended"}, s.LockContended},
	} {
		if n := got.count(c.name, c.match); n != c.want {
			t.Errorf("%s %v counts %d; want %d", c.name, c.match, n, c.want)
		}
	}
	if w := got.count("stampede_wait_duration_seconds", nil); w == 0 {
		t.Error("no wait was observed")
	}
	for name, ms := range got {
		for _, m := range ms {
			for _, l := range m.GetLabel() {
				if l.GetName() == "key" || l.GetValue() == "sku-1" {
					t.Errorf("%s has the key as a label: %s=%q", name, l.GetName(), l.GetValue())
				}
			}
		}
	}
}

// scrape is a registry's series by metric name.
type scrape map[string][]*dto.Metric

func gather(t *testing.T, reg prometheus.Gatherer) scrape {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	s := scrape{}
	for _, mf := range mfs {
		s[mf.GetName()] = mf.GetMetric()
	}
	return s
}

// count sums the counters' values, or the histograms' sample counts, of
// name's series whose labels include match.
func (s scrape) count(name string, match map[string]string) uint64 {
	var n uint64
	for _, m := range s[name] {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		ok := true
		for k, v := range match {
			if got, has := labels[k]; !has || got != v {
				ok = false
			}
		}
		switch {
		case !ok:
		case m.Counter != nil:
			n += uint64(m.Counter.GetValue())
		case m.Histogram != nil:
			n += m.Histogram.GetSampleCount()
		}
	}
	return n
}
