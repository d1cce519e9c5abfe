package prometheus

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	prom "github.com/prometheus/client_golang/prometheus"

	"github.com/stampede-go/stampede"
)

// DefaultBuckets are the upper bounds, in seconds, of both histograms'
// buckets when Options leaves them unset: from a millisecond (a load or a
// wait that was over at once) to 30 seconds (the core's default
// LoadTimeout).
var DefaultBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// Options configures a Collector. The zero value takes the defaults.
type Options struct {
	// LoadBuckets are the upper bounds, in seconds and strictly
	// increasing, of stampede_load_duration_seconds's buckets. Default:
	// DefaultBuckets.
	LoadBuckets []float64
	// WaitBuckets are the same for stampede_wait_duration_seconds.
	// Default: DefaultBuckets.
	WaitBuckets []float64
}

// Collector turns a cache's events into Prometheus metrics. It is a
// stampede.Observer, to set as Options.Observer of any number of caches
// (and of httpcache middlewares), and a prometheus.Collector, to register
// once. Its series are told apart by namespace, never by key.
type Collector struct {
	events *prom.CounterVec
	loads  *prom.HistogramVec
	waits  *prom.HistogramVec

	// known maps the label values seen so far to their series, so that an
	// event costs one map read rather than hashing its label values under
	// the vectors' locks. It is copied on write, which is rare: the set
	// stops growing after the first few events of each kind.
	known atomic.Pointer[map[seriesKey]*series]
	mu    sync.Mutex // serializes writers of known
}

// seriesKey is what tells one event's series from another's.
type seriesKey struct {
	ns, reason, class string
	kind              stampede.EventKind
}

// series are what one kind of event updates.
type series struct {
	events prom.Counter
	dur    prom.Observer // the load or wait histogram's child; nil for other kinds
}

// New returns a Collector with opts. Register it, for example with
// prometheus.MustRegister; to add labels of your own to every series
// (the service, the region), register it through
// prometheus.WrapRegistererWith.
func New(opts Options) (*Collector, error) {
	loadBuckets, err := buckets("LoadBuckets", opts.LoadBuckets)
	if err != nil {
		return nil, err
	}
	waitBuckets, err := buckets("WaitBuckets", opts.WaitBuckets)
	if err != nil {
		return nil, err
	}
	return &Collector{
		events: prom.NewCounterVec(prom.CounterOpts{
			Name: "stampede_events_total",
			Help: "Events of stampede caches, by kind (local_hit, redis_hit, stale, miss, load, wait, lease_won, ..., http_hit, ...), reason and error class.",
		}, []string{"namespace", "kind", "reason", "error"}),
		loads: prom.NewHistogramVec(prom.HistogramOpts{
			Name:    "stampede_load_duration_seconds",
			Help:    "How long loader calls took, by why they ran (miss, refresh, early, local) and error class (empty for none).",
			Buckets: loadBuckets,
		}, []string{"namespace", "reason", "error"}),
		waits: prom.NewHistogramVec(prom.HistogramOpts{
			Name:    "stampede_wait_duration_seconds",
			Help:    "How long callers waited for another node's load, by how the wait ended (notify, recheck, timeout, closed).",
			Buckets: waitBuckets,
		}, []string{"namespace", "reason"}),
	}, nil
}

// buckets returns a copy of b, or of DefaultBuckets if b is empty, or an
// error if b is not strictly increasing (which client_golang would turn
// into a panic).
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

var errInvalidOptions = errors.New("stampede/observe/prometheus: invalid options")

// Observe counts e, and adds a load's or a wait's duration to its
// histogram. It never panics: a namespace or reason that is not valid
// UTF-8 is counted with its invalid bytes replaced by U+FFFD.
func (c *Collector) Observe(_ context.Context, e stampede.Event) {
	k := seriesKey{ns: e.Namespace, reason: e.Reason, kind: e.Kind}
	if e.Err != nil {
		k.class = e.ErrClass()
	}
	s := c.series(k)
	s.events.Inc()
	if s.dur != nil {
		s.dur.Observe(e.Duration.Seconds())
	}
}

// series returns k's series, made on first use.
func (c *Collector) series(k seriesKey) *series {
	if m := c.known.Load(); m != nil {
		if s, ok := (*m)[k]; ok {
			return s
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.known.Load()
	if old != nil {
		if s, ok := (*old)[k]; ok {
			return s
		}
	}
	// client_golang panics on label values that are not UTF-8.
	ns := strings.ToValidUTF8(k.ns, "\uFFFD")
	reason := strings.ToValidUTF8(k.reason, "\uFFFD")
	s := &series{events: c.events.WithLabelValues(ns, k.kind.String(), reason, k.class)}
	switch k.kind {
	case stampede.EventLoad:
		s.dur = c.loads.WithLabelValues(ns, reason, k.class)
	case stampede.EventWait:
		s.dur = c.waits.WithLabelValues(ns, reason)
	}
	m := map[seriesKey]*series{}
	if old != nil {
		m = maps.Clone(*old)
	}
	m[k] = s
	c.known.Store(&m)
	return s
}

// Describe sends the descriptors of the three metrics.
func (c *Collector) Describe(ch chan<- *prom.Desc) {
	c.events.Describe(ch)
	c.loads.Describe(ch)
	c.waits.Describe(ch)
}

// Collect sends the current values of every series.
func (c *Collector) Collect(ch chan<- prom.Metric) {
	c.events.Collect(ch)
	c.loads.Collect(ch)
	c.waits.Collect(ch)
}

var (
	_ stampede.Observer = (*Collector)(nil)
	_ prom.Collector    = (*Collector)(nil)
)
