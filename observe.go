package stampede

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/stampede-go/stampede/internal/bounded"
)

// Observer sees what a cache does, for metrics and tracing: set
// Options.Observer. Observe is called on the goroutine where the event
// happens (a caller's, or the cache's own for background work), so it must
// be quick and safe for concurrent use. Unset, observing costs nothing.
//
// Adapters for Prometheus and OpenTelemetry are modules of their own:
// github.com/stampede-go/stampede/observe/prometheus and .../observe/otel.
type Observer interface {
	Observe(ctx context.Context, e Event)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(ctx context.Context, e Event)

// Observe calls f.
func (f ObserverFunc) Observe(ctx context.Context, e Event) { f(ctx, e) }

// Event is one thing a cache did.
type Event struct {
	Kind      EventKind
	Namespace string // Options.Namespace
	// Key is the cache key, or for httpcache the request's cache key.
	// Metrics should leave it out: there are as many as there are keys.
	Key string
	// Duration is how long a load (EventLoad) or a wait (EventWait) took.
	Duration time.Duration
	// Reason says more, per kind: how a load came about (LoadMiss,
	// LoadRefresh, LoadEarly, LoadLocal), how a wait ended (WaitNotify,
	// WaitRecheck, WaitTimeout, WaitClosed), why L1 was
	// flushed, why httpcache bypassed a request or did not store a
	// response. (A caller whose own context ends leaves without an event:
	// the wait goes on for the others.)
	Reason string
	// Err is the error of a failed load, a Redis error, an unusable
	// entry, a lost lease, or a loader's panic (*PanicError).
	Err error
}

// EventKind says what happened.
type EventKind uint8

// The events. Each of the core cache's is counted in Stats as well, observed or
// not.
const (
	EventLocalHit          EventKind = iota + 1 // a fresh value served from this process's L1
	EventRedisHit                               // a fresh value read from Redis (one read per node, shared by its callers)
	EventStale                                  // a stale copy served while one node refreshes it
	EventMiss                                   // no usable value: this node goes for the rebuild lease
	EventLoadStart                              // a loader call starts (Reason: why)
	EventLoad                                   // a loader call ended (Duration, Err, Reason)
	EventLeaseWon                               // this node took the rebuild lease
	EventLeaseContended                         // another node held the lease: this node waits
	EventWait                                   // a wait for another node's load ended (Duration, Reason)
	EventLeaseRenewed                           // the lease was extended during a slow load
	EventLeaseLost                              // the lease was found gone, or could not be renewed (Err)
	EventWriteBackRejected                      // the lease no longer held: a load's value was not stored
	EventRedisError                             // a Redis call failed: unreachable, hung, refusing (Err)
	EventBreakerOpen                            // the circuit opened: Redis is skipped for BreakerCooldown
	EventBreakerClosed                          // the circuit closed: Redis answered again
	EventCorrupt                                // an entry in Redis could not be used (Err)
	EventLoaderPanic                            // a loader panicked or called runtime.Goexit (Err)
	EventLocalFlush                             // L1 emptied because invalidations may have been lost (Reason)

	// httpcache's events.
	// One per request, but EventHTTPNotStored, which goes with the
	// EventHTTPMiss of the request whose run produced the response. Reason
	// is Cache-Status's fwd (misses, revalidations) or detail (the others).
	// They are observed only, not counted in Stats.
	EventHTTPHit         // a request answered from the cache
	EventHTTPMiss        // a request answered by a handler run, its own or one it shared (Reason: fwd)
	EventHTTPStale       // a request answered with a stale copy (Reason: detail)
	EventHTTPBypass      // a request the cache does not handle (Reason: detail, or "method")
	EventHTTPNotStored   // a run's response that is not stored (Reason: detail)
	EventHTTPRevalidated // a request answered with a stored response a 304 freshened (Reason: fwd)

	numEventKinds
)

// Reasons of EventLoadStart and EventLoad.
const (
	LoadMiss    = "miss"    // nothing usable was cached
	LoadRefresh = "refresh" // a stale copy is being replaced in the background
	LoadEarly   = "early"   // a fresh value refreshed before it expires (XFetch)
	LoadLocal   = "local"   // loaded without the lease: Redis out of reach, or a wait timed out
)

// Reasons of EventWait.
const (
	WaitNotify  = "notify"  // woken by the "filled" message
	WaitRecheck = "recheck" // found the value at a periodic re-check
	WaitTimeout = "timeout" // WaitTimeout passed
	WaitClosed  = "closed"  // the cache was closed
)

var eventNames = [...]string{
	EventLocalHit: "local_hit", EventRedisHit: "redis_hit", EventStale: "stale", EventMiss: "miss",
	EventLoadStart: "load_start", EventLoad: "load", EventLeaseWon: "lease_won",
	EventLeaseContended: "lease_contended", EventWait: "wait", EventLeaseRenewed: "lease_renewed",
	EventLeaseLost: "lease_lost", EventWriteBackRejected: "write_back_rejected",
	EventRedisError: "redis_error", EventBreakerOpen: "breaker_open", EventBreakerClosed: "breaker_closed",
	EventCorrupt: "corrupt", EventLoaderPanic: "loader_panic", EventLocalFlush: "local_flush",
	EventHTTPHit: "http_hit", EventHTTPMiss: "http_miss", EventHTTPStale: "http_stale",
	EventHTTPBypass: "http_bypass", EventHTTPNotStored: "http_not_stored", EventHTTPRevalidated: "http_revalidated",
}

// String returns the kind's name in snake case, as metrics use it.
func (k EventKind) String() string {
	if k > 0 && k < numEventKinds {
		return eventNames[k]
	}
	return "unknown"
}

// ErrClass sorts Err for metrics: "" for none, then "not_found",
// "panic", "timeout" (a deadline, the load's or Redis's), "canceled",
// "redis" (Redis unavailable), or "error".
func (e Event) ErrClass() string {
	err := e.Err
	if err == nil {
		return ""
	}
	var pe *PanicError
	switch {
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.As(err, &pe), errors.Is(err, errGoexit):
		return "panic"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, bounded.ErrTimeout):
		return "timeout"
	case errors.Is(err, context.Canceled), errors.Is(err, ErrClosed):
		return "canceled"
	case errors.Is(err, ErrRedisUnavailable):
		return "redis"
	}
	return "error"
}

// note counts an event of kind about key and shows it to the observer. It
// is small enough to inline, so that without an observer the event is not
// even built.
func (c *Cache[V]) note(ctx context.Context, kind EventKind, key string) {
	c.stats.n[kind].Add(1)
	if c.obs != nil {
		c.obs.Observe(ctx, Event{Kind: kind, Namespace: c.opts.Namespace, Key: key})
	}
}

// noteErr is note for an event with an error.
func (c *Cache[V]) noteErr(ctx context.Context, kind EventKind, key string, err error) {
	c.stats.n[kind].Add(1)
	if c.obs != nil {
		c.obs.Observe(ctx, Event{Kind: kind, Namespace: c.opts.Namespace, Key: key, Err: err})
	}
}

// noteTimed is note for an event with a duration, a reason and maybe an
// error.
func (c *Cache[V]) noteTimed(ctx context.Context, kind EventKind, key string, d time.Duration, reason string, err error) {
	c.stats.n[kind].Add(1)
	if c.obs != nil {
		c.obs.Observe(ctx, Event{Kind: kind, Namespace: c.opts.Namespace, Key: key, Duration: d, Reason: reason, Err: err})
	}
}

// observers returns what Options.Observer and Options.Logger make of the
// events, or nil when neither is set.
func observers(o Observer, l *slog.Logger) Observer {
	switch {
	case l == nil:
		return o
	case o == nil:
		return logObserver{l}
	}
	return ObserverFunc(func(ctx context.Context, e Event) {
		o.Observe(ctx, e)
		logObserver{l}.Observe(ctx, e)
	})
}

// logObserver writes the events an operator wants to read to a logger:
// the ones that say something went wrong, at the level it deserves.
type logObserver struct{ l *slog.Logger }

func (lo logObserver) Observe(ctx context.Context, e Event) {
	level, msg := slog.LevelDebug, ""
	switch e.Kind {
	case EventLoad:
		if e.Err == nil || errors.Is(e.Err, ErrNotFound) || e.Reason == LoadMiss || e.Reason == LoadLocal {
			return // the callers got the error; only background failures are news
		}
		level, msg = slog.LevelWarn, "background refresh failed"
	case EventLoaderPanic:
		level, msg = slog.LevelError, "loader panicked"
	case EventLeaseLost:
		level, msg = slog.LevelWarn, "rebuild lease lost"
	case EventWriteBackRejected:
		level, msg = slog.LevelInfo, "write-back rejected: the lease no longer held"
	case EventBreakerOpen:
		level, msg = slog.LevelWarn, "redis unavailable: circuit open"
	case EventBreakerClosed:
		level, msg = slog.LevelInfo, "redis available again: circuit closed"
	case EventCorrupt:
		level, msg = slog.LevelWarn, "unusable entry in redis"
	case EventLocalFlush:
		level, msg = slog.LevelInfo, "local cache flushed"
	default:
		return
	}
	if !lo.l.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 5)
	attrs = append(attrs, slog.String("namespace", e.Namespace))
	if e.Key != "" {
		attrs = append(attrs, slog.String("key", e.Key))
	}
	if e.Duration > 0 {
		attrs = append(attrs, slog.Duration("duration", e.Duration))
	}
	if e.Reason != "" {
		attrs = append(attrs, slog.String("reason", e.Reason))
	}
	var pe *PanicError
	switch {
	case errors.As(e.Err, &pe):
		attrs = append(attrs, slog.Any("panic", pe.Value), slog.String("stack", string(pe.Stack)))
	case e.Err != nil:
		attrs = append(attrs, slog.Any("error", e.Err))
	}
	lo.l.LogAttrs(ctx, level, "stampede: "+msg, attrs...)
}
