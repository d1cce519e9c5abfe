// Package otel records what stampede caches do as OpenTelemetry metrics
// and spans. An [Observer] is a stampede.Observer, to set as
// Options.Observer of every cache (any number of them may share one):
//
//	obs, err := otel.New(otel.Options{}) // the global MeterProvider and TracerProvider
//	...
//	products, err := stampede.New[Product](rdb, stampede.Options{Namespace: "products", Observer: obs})
//
// # Metrics
//
// Instrumentation scope ScopeName. Every data point has stampede.namespace
// (the cache's Options.Namespace); none has the key, since there are as
// many keys as there are values cached.
//
//   - stampede.events (Int64Counter, unit {event}), attributes
//     stampede.namespace, stampede.kind, stampede.reason, error.type:
//     every event, by its kind (stampede.EventKind's String: local_hit,
//     redis_hit, stale, miss, load_start, load, lease_won,
//     lease_contended, wait, lease_renewed, lease_lost,
//     write_back_rejected, redis_error, breaker_open, breaker_closed,
//     corrupt, loader_panic, local_flush, and httpcache's http_hit,
//     http_miss, http_stale, http_bypass, http_not_stored,
//     http_revalidated), its reason and its error class
//     (stampede.Event.ErrClass: not_found, panic, timeout, canceled, redis
//     or error). stampede.reason and error.type are left out when empty.
//   - stampede.load.duration (Float64Histogram, unit s), attributes
//     stampede.namespace, stampede.reason, error.type: how long each loader
//     call took, by why it ran (miss, refresh, early, local) and its error
//     class.
//   - stampede.wait.duration (Float64Histogram, unit s), attributes
//     stampede.namespace, stampede.reason: how long callers waited for
//     another node's load, by how the wait ended (notify, recheck,
//     timeout, closed).
//
// A Prometheus exporter names them stampede_events_total,
// stampede_load_duration_seconds and stampede_wait_duration_seconds, as
// package observe/prometheus does.
//
// # Spans
//
// Each load and each wait is a span, stampede.load or stampede.wait (kind
// internal), the child of the span in the context the cache passes to
// Observe, which is that of the Get that led the load or the wait on its
// node (the first of the callers sharing it), its cancellation dropped.
// The cache reports a load or a wait when it ends, so the span is made
// then, with its start set to that moment less the event's duration. Its
// attributes:
//
//   - stampede.namespace, stampede.kind (load or wait);
//   - stampede.reason: why a load ran (miss, refresh, early, local), how a
//     wait ended (notify, recheck, timeout, closed);
//   - stampede.outcome: ok, or for a failed load its error class, for a
//     wait that ended without the value its reason (timeout or closed);
//   - error.type: a failed load's error class; its status is then Error,
//     but for not_found, which is an answer (cached as a tombstone);
//   - stampede.key, only with Options.RecordKeys, which also records a
//     failed load's error as an exception event.
//
// # Cost
//
// With the SDK, a counted event costs about 250 ns and no allocation, most
// of it the SDK's; a load or a wait costs a few microseconds and a dozen
// allocations for its span (see BenchmarkObserve and BenchmarkLocalHit).
//
// The package is named after the tool it feeds: import it under another
// name, such as stampedeotel.
package otel
