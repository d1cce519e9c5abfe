package otel_test

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/stampede-go/stampede"
	"github.com/stampede-go/stampede/internal/redistest"
	stampedeotel "github.com/stampede-go/stampede/observe/otel"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A cold key, many callers on several nodes over one real redis-server,
// each caller in a request span of its own: the SDK holds one load, a wait
// for every node that found the lease taken, each ended as the caches'
// Stats say, the same counts as Stats for every kind of event, and a span
// for the load and each wait, children of requests' spans, no key
// anywhere.
func TestStampede(t *testing.T) {
	srv := redistest.Start(t)
	s := newSDK(t, stampedeotel.Options{})

	const nodes, callers = 4, 25
	// The loader holds the lease until every other node has found it taken,
	// so that each of them waits: the counts below do not depend on timing.
	contended := make(chan struct{}, nodes)
	observer := stampede.ObserverFunc(func(ctx context.Context, e stampede.Event) {
		s.obs.Observe(ctx, e)
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

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		requests = map[trace.SpanID]bool{}
		start    = make(chan struct{})
		tracer   = s.tp.Tracer("test")
	)
	for _, c := range caches {
		for range callers {
			wg.Go(func() {
				<-start
				ctx, req := tracer.Start(context.Background(), "GET /products/sku-1")
				defer req.End()
				mu.Lock()
				requests[req.SpanContext().SpanID()] = true
				mu.Unlock()
				v, err := c.Get(ctx, "sku-1", load)
				if err != nil || v != "espresso machine" {
					t.Errorf("Get = %q, %v", v, err)
				}
			})
		}
	}
	close(start)
	wg.Wait()

	var st stampede.Stats
	for _, c := range caches {
		x := c.Stats()
		st.LocalHits += x.LocalHits
		st.RedisHits += x.RedisHits
		st.Misses += x.Misses
		st.StaleServed += x.StaleServed
		st.Loads += x.Loads
		st.LockWon += x.LockWon
		st.LockContended += x.LockContended
		st.WokenByNotify += x.WokenByNotify
		st.WokenByRecheck += x.WokenByRecheck
	}
	if n := loads.Load(); n != 1 || st.Loads != 1 {
		t.Fatalf("the loader ran %d times (Stats: %d); want 1", n, st.Loads)
	}
	if st.LockContended != nodes-1 {
		t.Fatalf("Stats.LockContended = %d; want %d, one per node that did not win the lease", st.LockContended, nodes-1)
	}

	// Metrics.
	got := s.metrics(t)
	ns := attribute.String("stampede.namespace", "products")
	kind := func(k string) attribute.KeyValue { return attribute.String("stampede.kind", k) }
	for _, c := range []struct {
		metric string
		match  []attribute.KeyValue
		want   uint64
	}{
		{"stampede.load.duration", []attribute.KeyValue{ns}, 1},
		{"stampede.load.duration", []attribute.KeyValue{reason(stampede.LoadMiss)}, 1},
		{"stampede.wait.duration", []attribute.KeyValue{ns}, st.LockContended},
		{"stampede.wait.duration", []attribute.KeyValue{ns}, st.WokenByNotify + st.WokenByRecheck},
		{"stampede.wait.duration", []attribute.KeyValue{reason(stampede.WaitNotify)}, st.WokenByNotify},
		{"stampede.wait.duration", []attribute.KeyValue{reason(stampede.WaitRecheck)}, st.WokenByRecheck},
		{"stampede.events", []attribute.KeyValue{kind("load")}, 1},
		{"stampede.events", []attribute.KeyValue{kind("wait")}, st.LockContended},
		{"stampede.events", []attribute.KeyValue{kind("local_hit")}, st.LocalHits},
		{"stampede.events", []attribute.KeyValue{kind("redis_hit")}, st.RedisHits},
		{"stampede.events", []attribute.KeyValue{kind("miss")}, st.Misses},
		{"stampede.events", []attribute.KeyValue{kind("stale")}, st.StaleServed},
		{"stampede.events", []attribute.KeyValue{kind("load_start")}, st.Loads},
		{"stampede.events", []attribute.KeyValue{kind("lease_won")}, st.LockWon},
		{"stampede.events", []attribute.KeyValue{kind("lease_contended")}, st.LockContended},
	} {
		if n := count(got[c.metric], c.match...); n != c.want {
			t.Errorf("%s %v counts %d; want %d", c.metric, c.match, n, c.want)
		}
	}
	if count(got["stampede.wait.duration"]) == 0 {
		t.Error("no wait was observed")
	}
	for name, m := range got {
		if keyed(m) {
			t.Errorf("%s has a data point with stampede.key", name)
		}
	}

	// Spans.
	var loadSpans, waitSpans int
	var waitSeconds float64
	reasons := map[string]uint64{}
	for _, sp := range s.spans.GetSpans() {
		switch sp.Name {
		case "stampede.load":
			loadSpans++
			h := got["stampede.load.duration"].Data.(metricdata.Histogram[float64]).DataPoints[0]
			if d := sp.EndTime.Sub(sp.StartTime).Seconds(); d != h.Sum {
				t.Errorf("the load's span lasts %vs; its histogram says %vs", d, h.Sum)
			}
		case "stampede.wait":
			waitSpans++
			waitSeconds += sp.EndTime.Sub(sp.StartTime).Seconds()
			r, _ := attr(sp, "stampede.reason")
			reasons[r]++
		default:
			continue
		}
		if !requests[sp.Parent.SpanID()] || !sp.Parent.IsValid() {
			t.Errorf("%s's parent %v is not a request's span", sp.Name, sp.Parent.SpanID())
		}
		if o, _ := attr(sp, "stampede.outcome"); o != "ok" {
			t.Errorf("%s: outcome %q; want ok", sp.Name, o)
		}
		if ns, _ := attr(sp, "stampede.namespace"); ns != "products" {
			t.Errorf("%s: namespace %q", sp.Name, ns)
		}
		if _, ok := attr(sp, "stampede.key"); ok {
			t.Errorf("%s records the key", sp.Name)
		}
	}
	if loadSpans != 1 || uint64(waitSpans) != st.LockContended {
		t.Errorf("%d load spans and %d wait spans; want 1 and %d", loadSpans, waitSpans, st.LockContended)
	}
	if reasons[stampede.WaitNotify] != st.WokenByNotify || reasons[stampede.WaitRecheck] != st.WokenByRecheck {
		t.Errorf("wait spans by reason %v; Stats: %d notify, %d recheck", reasons, st.WokenByNotify, st.WokenByRecheck)
	}
	var histSeconds float64
	for _, dp := range got["stampede.wait.duration"].Data.(metricdata.Histogram[float64]).DataPoints {
		histSeconds += dp.Sum
	}
	if math.Abs(waitSeconds-histSeconds) > 1e-9 {
		t.Errorf("wait spans last %vs in all; the histogram sums %vs", waitSeconds, histSeconds)
	}
}

// keyed reports whether any data point of m has stampede.key.
func keyed(m metricdata.Metrics) bool {
	var sets []attribute.Set
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		for _, dp := range d.DataPoints {
			sets = append(sets, dp.Attributes)
		}
	case metricdata.Histogram[float64]:
		for _, dp := range d.DataPoints {
			sets = append(sets, dp.Attributes)
		}
	}
	for _, s := range sets {
		if s.HasValue("stampede.key") {
			return true
		}
	}
	return false
}
