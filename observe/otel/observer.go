package otel

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	otelapi "go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/stampede-go/stampede"
)

// ScopeName is the instrumentation scope of the Observer's meter and
// tracer.
const ScopeName = "github.com/stampede-go/stampede/observe/otel"

// DefaultBuckets are the bucket boundaries, in seconds, that both
// histograms advise when Options leaves them unset: from a millisecond (a
// load or a wait that was over at once) to 30 seconds (the core's default
// LoadTimeout).
var DefaultBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// The attributes, on metrics and spans alike.
const (
	keyNamespace = attribute.Key("stampede.namespace")
	keyKind      = attribute.Key("stampede.kind")
	keyReason    = attribute.Key("stampede.reason")
	keyOutcome   = attribute.Key("stampede.outcome")
	keyErrorType = attribute.Key("error.type")
	keyKey       = attribute.Key("stampede.key")
)

// Options configures an Observer. The zero value takes the defaults.
type Options struct {
	// MeterProvider makes the counter and the histograms. Default: the
	// global one, otel.GetMeterProvider(). A noop.MeterProvider turns
	// metrics off.
	MeterProvider metric.MeterProvider
	// TracerProvider makes the spans. Default: the global one,
	// otel.GetTracerProvider(). A noop.TracerProvider turns spans off.
	TracerProvider trace.TracerProvider
	// RecordKeys puts the cache key on each span (stampede.key), and a
	// failed load's error on its span as an exception event (its text may
	// name the key). Keys may be personal data, and tracing backends index
	// attributes. Default: false. Metrics never carry the key.
	RecordKeys bool
	// LoadBuckets are the boundaries, in seconds and strictly increasing,
	// that stampede.load.duration advises. Default: DefaultBuckets. A view
	// in the MeterProvider can override them.
	LoadBuckets []float64
	// WaitBuckets are the same for stampede.wait.duration. Default:
	// DefaultBuckets.
	WaitBuckets []float64
}

// Observer records a cache's events as OpenTelemetry metrics, and each load
// and each wait as a span. It is a stampede.Observer, to set as
// Options.Observer of any number of caches (and of httpcache middlewares).
type Observer struct {
	tracer trace.Tracer
	events metric.Int64Counter
	loads  metric.Float64Histogram
	waits  metric.Float64Histogram
	keys   bool // Options.RecordKeys

	// known maps the attribute values seen so far to their attribute sets,
	// built once: an event costs one map read rather than sorting and
	// hashing a new set. It is copied on write, which is rare: the set
	// stops growing after the first few events of each kind.
	known atomic.Pointer[map[attrKey]*attrs]
	mu    sync.Mutex // serializes writers of known
}

// attrKey is what tells one event's attributes from another's.
type attrKey struct {
	ns, reason, class string
	kind              stampede.EventKind
}

// attrs are one attrKey's attributes, made ready for each use.
type attrs struct {
	add    []metric.AddOption    // the counter's
	record []metric.RecordOption // the load or wait histogram's
	span   []attribute.KeyValue  // a span's, less the key
	failed bool                  // a span's status is Error
}

// New returns an Observer with opts.
func New(opts Options) (*Observer, error) {
	loadBuckets, err := buckets("LoadBuckets", opts.LoadBuckets)
	if err != nil {
		return nil, err
	}
	waitBuckets, err := buckets("WaitBuckets", opts.WaitBuckets)
	if err != nil {
		return nil, err
	}
	mp, tp := opts.MeterProvider, opts.TracerProvider
	if mp == nil {
		mp = otelapi.GetMeterProvider()
	}
	if tp == nil {
		tp = otelapi.GetTracerProvider()
	}
	meter := mp.Meter(ScopeName)
	o := &Observer{tracer: tp.Tracer(ScopeName), keys: opts.RecordKeys}
	var errs [3]error
	o.events, errs[0] = meter.Int64Counter("stampede.events",
		metric.WithUnit("{event}"),
		metric.WithDescription("Events of stampede caches, by kind, reason and error class."))
	o.loads, errs[1] = meter.Float64Histogram("stampede.load.duration",
		metric.WithUnit("s"),
		metric.WithDescription("How long loader calls took, by why they ran (miss, refresh, early, local) and error class."),
		metric.WithExplicitBucketBoundaries(loadBuckets...))
	o.waits, errs[2] = meter.Float64Histogram("stampede.wait.duration",
		metric.WithUnit("s"),
		metric.WithDescription("How long callers waited for another node's load, by how the wait ended (notify, recheck, timeout, closed)."),
		metric.WithExplicitBucketBoundaries(waitBuckets...))
	if err := errors.Join(errs[:]...); err != nil {
		return nil, fmt.Errorf("stampede/observe/otel: %w", err)
	}
	return o, nil
}

// buckets returns b, or DefaultBuckets if b is empty, or an error if b is
// not strictly increasing.
func buckets(field string, b []float64) ([]float64, error) {
	if len(b) == 0 {
		return slices.Clone(DefaultBuckets), nil
	}
	for i := 1; i < len(b); i++ {
		if !(b[i] > b[i-1]) {
			return nil, fmt.Errorf("%w: %s not strictly increasing: %v", errInvalidOptions, field, b)
		}
	}
	return slices.Clone(b), nil
}

var errInvalidOptions = errors.New("stampede/observe/otel: invalid options")

// Observe counts e, and records a load or a wait in its histogram and as a
// span that ended now and began e.Duration ago, a child of the span in ctx.
func (o *Observer) Observe(ctx context.Context, e stampede.Event) {
	k := attrKey{ns: e.Namespace, reason: e.Reason, kind: e.Kind}
	if e.Err != nil {
		k.class = e.ErrClass()
	}
	a := o.attrs(k)
	o.events.Add(ctx, 1, a.add...)
	var name string
	switch e.Kind {
	case stampede.EventLoad:
		o.loads.Record(ctx, e.Duration.Seconds(), a.record...)
		name = "stampede.load"
	case stampede.EventWait:
		o.waits.Record(ctx, e.Duration.Seconds(), a.record...)
		name = "stampede.wait"
	default:
		return
	}
	end := time.Now()
	kv := a.span
	if o.keys && e.Key != "" {
		kv = append(slices.Clip(kv), keyKey.String(e.Key))
	}
	_, span := o.tracer.Start(ctx, name,
		trace.WithTimestamp(end.Add(-e.Duration)),
		trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(kv...))
	if a.failed {
		if o.keys {
			span.RecordError(e.Err, trace.WithTimestamp(end))
		}
		span.SetStatus(codes.Error, k.class)
	}
	span.End(trace.WithTimestamp(end))
}

// attrs returns k's attributes, made on first use.
func (o *Observer) attrs(k attrKey) *attrs {
	if m := o.known.Load(); m != nil {
		if a, ok := (*m)[k]; ok {
			return a
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	old := o.known.Load()
	if old != nil {
		if a, ok := (*old)[k]; ok {
			return a
		}
	}
	a := newAttrs(k)
	m := map[attrKey]*attrs{}
	if old != nil {
		m = maps.Clone(*old)
	}
	m[k] = a
	o.known.Store(&m)
	return a
}

// newAttrs builds k's attributes: the counter's have the kind, the
// histograms' do not (each holds one kind), and a span's have the outcome.
func newAttrs(k attrKey) *attrs {
	ns := keyNamespace.String(k.ns)
	var common []attribute.KeyValue // reason and error class, when set
	if k.reason != "" {
		common = append(common, keyReason.String(k.reason))
	}
	if k.class != "" {
		common = append(common, keyErrorType.String(k.class))
	}
	kind := keyKind.String(k.kind.String())
	counter := attribute.NewSet(append([]attribute.KeyValue{ns, kind}, common...)...)
	a := &attrs{add: []metric.AddOption{metric.WithAttributeSet(counter)}}
	if k.kind != stampede.EventLoad && k.kind != stampede.EventWait {
		return a
	}
	hist := attribute.NewSet(append([]attribute.KeyValue{ns}, common...)...)
	a.record = []metric.RecordOption{metric.WithAttributeSet(hist)}
	outcome := "ok"
	switch {
	case k.kind == stampede.EventLoad && k.class != "":
		outcome = k.class
		// Not found is an answer (cached as a tombstone), not a failure.
		a.failed = k.class != "not_found"
	case k.kind == stampede.EventWait && k.reason != stampede.WaitNotify && k.reason != stampede.WaitRecheck:
		outcome = k.reason // gave up before the value came: timeout, closed
	}
	a.span = append([]attribute.KeyValue{ns, kind, keyOutcome.String(outcome)}, common...)
	return a
}

var _ stampede.Observer = (*Observer)(nil)
