package otel_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/stampede-go/stampede"
	stampedeotel "github.com/stampede-go/stampede/observe/otel"
)

// Give one Observer to every cache: a load becomes a span in the trace of
// the request that led it, and every event a count, by namespace, never by
// key.
func Example() {
	// Providers that keep what they get, to print it below. In a service:
	// Options{} and the global providers, or those of your SDK setup.
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))

	obs, err := stampedeotel.New(stampedeotel.Options{MeterProvider: mp, TracerProvider: tp})
	if err != nil {
		panic(err)
	}
	mr, _ := miniredis.Run() // stands in for your Redis
	defer mr.Close()
	var nodes []*stampede.Cache[string]
	for range 2 { // two nodes of a fleet
		rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		defer rdb.Close()
		c, err := stampede.New[string](rdb, stampede.Options{
			Namespace: "products",
			TTL:       time.Minute,
			Observer:  obs,
		})
		if err != nil {
			panic(err)
		}
		defer c.Close()
		nodes = append(nodes, c)
	}
	load := func(context.Context, string) (string, error) { return "espresso machine", nil }

	ctx, req := tp.Tracer("shop").Start(context.Background(), "GET /products/sku-1")
	nodes[0].Get(ctx, "sku-1", load) // a miss: takes the lease and loads
	req.End()
	nodes[1].Get(context.Background(), "sku-1", load) // reads what the first node stored

	names := map[trace.SpanID]string{}
	for _, s := range spans.GetSpans() {
		names[s.SpanContext.SpanID()] = s.Name
	}
	for _, s := range spans.GetSpans() {
		if !s.Parent.IsValid() {
			continue
		}
		var attrs []string
		for _, kv := range s.Attributes {
			attrs = append(attrs, fmt.Sprintf("%s=%s", kv.Key, kv.Value.String()))
		}
		slices.Sort(attrs)
		fmt.Printf("span %s, child of %s: %s\n", s.Name, names[s.Parent.SpanID()], strings.Join(attrs, " "))
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		panic(err)
	}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		switch d := m.Data.(type) {
		case metricdata.Sum[int64]:
			var counts []string
			for _, dp := range d.DataPoints {
				kind, _ := dp.Attributes.Value("stampede.kind")
				counts = append(counts, fmt.Sprintf("%s=%d", kind.String(), dp.Value))
			}
			slices.Sort(counts)
			fmt.Println(m.Name+":", strings.Join(counts, " "))
		case metricdata.Histogram[float64]:
			for _, dp := range d.DataPoints {
				reason, _ := dp.Attributes.Value("stampede.reason")
				fmt.Printf("%s: count=%d (reason %s)\n", m.Name, dp.Count, reason.String())
			}
		}
	}
	// Output:
	// span stampede.load, child of GET /products/sku-1: stampede.kind=load stampede.namespace=products stampede.outcome=ok stampede.reason=miss
	// stampede.events: lease_won=1 load=1 load_start=1 miss=1 redis_hit=1
	// stampede.load.duration: count=1 (reason miss)
}
