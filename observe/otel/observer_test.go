package otel_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
	"go.opentelemetry.io/otel/trace"

	"github.com/stampede-go/stampede"
	stampedeotel "github.com/stampede-go/stampede/observe/otel"
)

var (
	products = attribute.String("stampede.namespace", "products")
	kindOf   = func(k stampede.EventKind) attribute.KeyValue { return attribute.String("stampede.kind", k.String()) }
	reason   = func(r string) attribute.KeyValue { return attribute.String("stampede.reason", r) }
	errType  = func(c string) attribute.KeyValue { return attribute.String("error.type", c) }
)

// Each event is counted by namespace, kind, reason and error class; loads
// and waits land in their histograms and become spans, children of the
// span in ctx, that end when observed and last the event's duration. The
// key is nowhere.
func TestObserve(t *testing.T) {
	s := newSDK(t, stampedeotel.Options{LoadBuckets: []float64{0.1, 1}, WaitBuckets: []float64{0.05}})
	ctx, parent := s.tp.Tracer("test").Start(context.Background(), "request")
	events := []stampede.Event{
		{Kind: stampede.EventLocalHit},
		{Kind: stampede.EventLocalHit},
		{Kind: stampede.EventLoad, Duration: 20 * time.Millisecond, Reason: stampede.LoadMiss},
		{Kind: stampede.EventLoad, Duration: 2 * time.Second, Reason: stampede.LoadRefresh, Err: errors.New("db down")},
		{Kind: stampede.EventLoad, Duration: 500 * time.Millisecond, Reason: stampede.LoadMiss, Err: stampede.ErrNotFound},
		{Kind: stampede.EventWait, Duration: 10 * time.Millisecond, Reason: stampede.WaitNotify},
		{Kind: stampede.EventWait, Duration: 3 * time.Second, Reason: stampede.WaitTimeout},
		{Kind: stampede.EventHTTPBypass, Reason: "method"},
	}
	for _, e := range events {
		e.Namespace, e.Key = "products", "sku-1"
		s.obs.Observe(ctx, e)
	}
	parent.End()

	got := s.metrics(t)
	opts := []metricdatatest.Option{metricdatatest.IgnoreTimestamp(), metricdatatest.IgnoreExemplars()}
	sum := func(v int64, kv ...attribute.KeyValue) metricdata.DataPoint[int64] {
		return metricdata.DataPoint[int64]{Attributes: attribute.NewSet(kv...), Value: v}
	}
	metricdatatest.AssertEqual(t, metricdata.Metrics{
		Name: "stampede.events", Unit: "{event}", Description: "Events of stampede caches, by kind, reason and error class.",
		Data: metricdata.Sum[int64]{Temporality: metricdata.CumulativeTemporality, IsMonotonic: true, DataPoints: []metricdata.DataPoint[int64]{
			sum(2, products, kindOf(stampede.EventLocalHit)),
			sum(1, products, kindOf(stampede.EventLoad), reason("miss")),
			sum(1, products, kindOf(stampede.EventLoad), reason("refresh"), errType("error")),
			sum(1, products, kindOf(stampede.EventLoad), reason("miss"), errType("not_found")),
			sum(1, products, kindOf(stampede.EventWait), reason("notify")),
			sum(1, products, kindOf(stampede.EventWait), reason("timeout")),
			sum(1, products, kindOf(stampede.EventHTTPBypass), reason("method")),
		}},
	}, got["stampede.events"], opts...)
	hist := func(bounds []float64, counts []uint64, total float64, kv ...attribute.KeyValue) metricdata.HistogramDataPoint[float64] {
		return metricdata.HistogramDataPoint[float64]{
			Attributes: attribute.NewSet(kv...), Bounds: bounds, BucketCounts: counts,
			Count: 1, Sum: total, Min: metricdata.NewExtrema(total), Max: metricdata.NewExtrema(total),
		}
	}
	loadBounds, waitBounds := []float64{0.1, 1}, []float64{0.05}
	metricdatatest.AssertEqual(t, metricdata.Metrics{
		Name: "stampede.load.duration", Unit: "s", Description: "How long loader calls took, by why they ran (miss, refresh, early, local) and error class.",
		Data: metricdata.Histogram[float64]{Temporality: metricdata.CumulativeTemporality, DataPoints: []metricdata.HistogramDataPoint[float64]{
			hist(loadBounds, []uint64{1, 0, 0}, 0.02, products, reason("miss")),
			hist(loadBounds, []uint64{0, 0, 1}, 2, products, reason("refresh"), errType("error")),
			hist(loadBounds, []uint64{0, 1, 0}, 0.5, products, reason("miss"), errType("not_found")),
		}},
	}, got["stampede.load.duration"], opts...)
	metricdatatest.AssertEqual(t, metricdata.Metrics{
		Name: "stampede.wait.duration", Unit: "s", Description: "How long callers waited for another node's load, by how the wait ended (notify, recheck, timeout, closed).",
		Data: metricdata.Histogram[float64]{Temporality: metricdata.CumulativeTemporality, DataPoints: []metricdata.HistogramDataPoint[float64]{
			hist(waitBounds, []uint64{1, 0}, 0.01, products, reason("notify")),
			hist(waitBounds, []uint64{0, 1}, 3, products, reason("timeout")),
		}},
	}, got["stampede.wait.duration"], opts...)

	spans := s.spans.GetSpans()
	type want struct {
		name            string
		d               time.Duration
		reason, outcome string
		errType         string
		status          codes.Code
	}
	wants := []want{
		{"stampede.load", 20 * time.Millisecond, "miss", "ok", "", codes.Unset},
		{"stampede.load", 2 * time.Second, "refresh", "error", "error", codes.Error},
		{"stampede.load", 500 * time.Millisecond, "miss", "not_found", "not_found", codes.Unset},
		{"stampede.wait", 10 * time.Millisecond, "notify", "ok", "", codes.Unset},
		{"stampede.wait", 3 * time.Second, "timeout", "timeout", "", codes.Unset},
	}
	if len(spans) != len(wants)+1 { // and the request
		t.Fatalf("%d spans; want %d", len(spans), len(wants)+1)
	}
	for i, w := range wants {
		sp := spans[i]
		if sp.Name != w.name || sp.EndTime.Sub(sp.StartTime) != w.d || sp.SpanKind != trace.SpanKindInternal {
			t.Errorf("span %d: %s of %v, kind %v; want %s of %v, internal", i, sp.Name, sp.EndTime.Sub(sp.StartTime), sp.SpanKind, w.name, w.d)
		}
		if sp.Parent.SpanID() != parent.SpanContext().SpanID() || sp.SpanContext.TraceID() != parent.SpanContext().TraceID() {
			t.Errorf("span %d: not a child of the span in ctx", i)
		}
		for key, v := range map[attribute.Key]string{
			"stampede.namespace": "products", "stampede.kind": w.name[len("stampede."):],
			"stampede.reason": w.reason, "stampede.outcome": w.outcome, "error.type": w.errType,
		} {
			if got, _ := attr(sp, key); got != v {
				t.Errorf("span %d: %s = %q; want %q", i, key, got, v)
			}
		}
		if _, ok := attr(sp, "stampede.key"); ok {
			t.Errorf("span %d records the key without RecordKeys", i)
		}
		if sp.Status.Code != w.status || len(sp.Events) != 0 {
			t.Errorf("span %d: status %v, %d events; want %v, none", i, sp.Status, len(sp.Events), w.status)
		}
	}
}

// With RecordKeys, a span has the key and a failed load's error; the
// metrics still do not have the key.
func TestRecordKeys(t *testing.T) {
	s := newSDK(t, stampedeotel.Options{RecordKeys: true})
	err := errors.New("db down for sku-1")
	s.obs.Observe(context.Background(), stampede.Event{Kind: stampede.EventLoad, Namespace: "products", Key: "sku-1",
		Duration: time.Millisecond, Reason: stampede.LoadMiss, Err: err})
	spans := s.spans.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("%d spans; want 1", len(spans))
	}
	if k, _ := attr(spans[0], "stampede.key"); k != "sku-1" {
		t.Errorf("stampede.key = %q; want sku-1", k)
	}
	if ev := spans[0].Events; len(ev) != 1 || ev[0].Name != "exception" {
		t.Errorf("events %+v; want the error as an exception", ev)
	}
	for name, m := range s.metrics(t) {
		if keyed(m) {
			t.Errorf("%s has a data point with stampede.key", name)
		}
	}
}

func TestNewRejectsUnsortedBuckets(t *testing.T) {
	for _, opts := range []stampedeotel.Options{
		{LoadBuckets: []float64{1, 0.5}},
		{WaitBuckets: []float64{0.1, 0.1}},
	} {
		if _, err := stampedeotel.New(opts); err == nil {
			t.Errorf("New(%+v): no error", opts)
		}
	}
}

// Every metric and attribute the Observer records is named in the package
// doc and in the README.
func TestDocumented(t *testing.T) {
	s := newSDK(t, stampedeotel.Options{RecordKeys: true})
	for _, e := range []stampede.Event{
		{Kind: stampede.EventLocalHit, Reason: "r"},
		{Kind: stampede.EventLoad, Reason: stampede.LoadMiss, Err: errors.New("x"), Key: "k"},
		{Kind: stampede.EventWait, Reason: stampede.WaitNotify},
	} {
		s.obs.Observe(context.Background(), e)
	}
	names := map[string]bool{}
	for name, m := range s.metrics(t) {
		names[name] = true
		switch d := m.Data.(type) {
		case metricdata.Sum[int64]:
			for _, kv := range d.DataPoints[0].Attributes.ToSlice() {
				names[string(kv.Key)] = true
			}
		case metricdata.Histogram[float64]:
			for _, kv := range d.DataPoints[0].Attributes.ToSlice() {
				names[string(kv.Key)] = true
			}
		}
	}
	for _, sp := range s.spans.GetSpans() {
		names[sp.Name] = true
		for _, kv := range sp.Attributes {
			names[string(kv.Key)] = true
		}
	}
	if len(names) < 3+2+6 {
		t.Fatalf("recorded only %v", names)
	}
	for _, file := range []string{"doc.go", "README.md"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for name := range names {
			if !strings.Contains(string(b), name) {
				t.Errorf("%s does not name %s", file, name)
			}
		}
	}
}
