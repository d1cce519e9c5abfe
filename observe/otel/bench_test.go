package otel_test

import (
	"context"
	"errors"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/stampede-go/stampede"
	stampedeotel "github.com/stampede-go/stampede/observe/otel"
)

// BenchmarkObserve is what the Observer adds to each event, with the SDK's
// meter and tracer: a counter for every event, and for loads and waits a
// histogram and a span (sampled, or dropped by the sampler).
func BenchmarkObserve(b *testing.B) {
	events := []struct {
		name string
		e    stampede.Event
	}{
		{"local_hit", stampede.Event{Kind: stampede.EventLocalHit, Namespace: "products", Key: "sku-1"}},
		{"load", stampede.Event{Kind: stampede.EventLoad, Namespace: "products", Key: "sku-1", Duration: 12 * time.Millisecond, Reason: stampede.LoadMiss}},
		{"load_error", stampede.Event{Kind: stampede.EventLoad, Namespace: "products", Key: "sku-1", Duration: 12 * time.Millisecond, Reason: stampede.LoadRefresh, Err: errors.New("db down")}},
		{"wait", stampede.Event{Kind: stampede.EventWait, Namespace: "products", Key: "sku-1", Duration: 3 * time.Millisecond, Reason: stampede.WaitNotify}},
	}
	for _, sampled := range []bool{true, false} {
		sampler := sdktrace.AlwaysSample()
		if !sampled {
			sampler = sdktrace.NeverSample()
		}
		for _, ev := range events {
			name := ev.name
			if !sampled {
				if ev.e.Kind != stampede.EventLoad && ev.e.Kind != stampede.EventWait {
					continue // no span either way
				}
				name += "/unsampled"
			}
			b.Run(name, func(b *testing.B) {
				// An exporter that drops what it is given, so that the
				// figures are the Observer's and the SDK's, not a growing
				// slice's.
				tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler), sdktrace.WithSyncer(discard{}))
				mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
				defer tp.Shutdown(context.Background())
				defer mp.Shutdown(context.Background())
				o, err := stampedeotel.New(stampedeotel.Options{MeterProvider: mp, TracerProvider: tp})
				if err != nil {
					b.Fatal(err)
				}
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					o.Observe(ctx, ev.e)
				}
			})
		}
	}
}

// discard is a span exporter that keeps nothing.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// BenchmarkLocalHit is an L1 hit, the cheapest Get, without an observer
// and with this one: what turning it on costs where it costs the most.
func BenchmarkLocalHit(b *testing.B) {
	observer := newBenchObserver(b)
	for _, bc := range []struct {
		name string
		obs  stampede.Observer
	}{{"unobserved", nil}, {"observed", observer}} {
		b.Run(bc.name, func(b *testing.B) {
			c, err := stampede.New[string](nil, stampede.Options{Observer: bc.obs})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			load := func(context.Context, string) (string, error) { return "v", nil }
			if _, err := c.Get(ctx, "k", load); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Get(ctx, "k", load); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if s := c.Stats(); s.Loads != 1 || s.LocalHits == 0 {
				b.Fatalf("%d loads, %d L1 hits; want 1 load, the rest L1 hits", s.Loads, s.LocalHits)
			}
		})
	}
}

// newBenchObserver is an Observer on the SDK, as in BenchmarkObserve.
func newBenchObserver(b *testing.B) stampede.Observer {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(discard{}))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	o, err := stampedeotel.New(stampedeotel.Options{MeterProvider: mp, TracerProvider: tp})
	if err != nil {
		b.Fatal(err)
	}
	return o
}
