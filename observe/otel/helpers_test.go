package otel_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	stampedeotel "github.com/stampede-go/stampede/observe/otel"
)

// sdk is an Observer on the SDK, with what it recorded within reach.
type sdk struct {
	obs    *stampedeotel.Observer
	reader *sdkmetric.ManualReader
	spans  *tracetest.InMemoryExporter
	tp     *sdktrace.TracerProvider
}

// newSDK returns an Observer with opts on an SDK meter provider read by
// hand and a tracer provider that keeps every span in memory.
func newSDK(t *testing.T, opts stampedeotel.Options) *sdk {
	t.Helper()
	s := &sdk{reader: sdkmetric.NewManualReader(), spans: tracetest.NewInMemoryExporter()}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(s.reader))
	s.tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(s.spans))
	t.Cleanup(func() {
		_ = mp.Shutdown(context.Background())
		_ = s.tp.Shutdown(context.Background())
	})
	opts.MeterProvider, opts.TracerProvider = mp, s.tp
	obs, err := stampedeotel.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.obs = obs
	return s
}

// metrics collects the Observer's metrics, by name.
func (s *sdk) metrics(t *testing.T) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := s.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != stampedeotel.ScopeName {
			t.Errorf("scope %q; want %q", sm.Scope.Name, stampedeotel.ScopeName)
		}
		for _, m := range sm.Metrics {
			got[m.Name] = m
		}
	}
	return got
}

// count sums the counter's values, or the histogram's counts, of m's data
// points whose attributes include match.
func count(m metricdata.Metrics, match ...attribute.KeyValue) uint64 {
	has := func(set attribute.Set) bool {
		for _, kv := range match {
			if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
				return false
			}
		}
		return true
	}
	var n uint64
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		for _, dp := range d.DataPoints {
			if has(dp.Attributes) {
				n += uint64(dp.Value)
			}
		}
	case metricdata.Histogram[float64]:
		for _, dp := range d.DataPoints {
			if has(dp.Attributes) {
				n += dp.Count
			}
		}
	}
	return n
}

// attr returns the span's attribute key as a string, and whether it has it.
func attr(s tracetest.SpanStub, key attribute.Key) (string, bool) {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value.String(), true
		}
	}
	return "", false
}
