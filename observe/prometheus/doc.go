// Package prometheus exports what stampede caches do as Prometheus
// metrics. A [Collector] is both a stampede.Observer, to set as
// Options.Observer of every cache (any number of them may share one), and
// a prometheus.Collector, to register once:
//
//	metrics, err := prometheus.New(prometheus.Options{})
//	...
//	reg.MustRegister(metrics)
//	products, err := stampede.New[Product](rdb, stampede.Options{Namespace: "products", Observer: metrics})
//
// It exports three metrics. Every series has a namespace label (the
// cache's Options.Namespace); none has the key, since there are as many
// keys as there are values cached.
//
//   - stampede_events_total (counter), labels namespace, kind, reason,
//     error: every event, by its kind (stampede.EventKind's String:
//     local_hit, redis_hit, stale, miss, load_start, load, lease_won,
//     lease_contended, wait, lease_renewed, lease_lost,
//     write_back_rejected, redis_error, breaker_open, breaker_closed,
//     corrupt, loader_panic, local_flush, and httpcache's http_hit,
//     http_miss, http_stale, http_bypass, http_not_stored,
//     http_revalidated), its reason (empty for kinds that have none) and
//     its error class (stampede.Event.ErrClass: empty, not_found, panic,
//     timeout, canceled, redis or error).
//   - stampede_load_duration_seconds (histogram), labels namespace,
//     reason, error: how long each loader call took, by why it ran (miss,
//     refresh, early, local) and its error class. Its _count is the
//     number of loads.
//   - stampede_wait_duration_seconds (histogram), labels namespace,
//     reason: how long callers waited for another node's load, by how the
//     wait ended (notify, recheck, timeout, closed). Its _count
//     is the number of waits.
//
// Observing costs a map read and an atomic add or two per event, with no
// allocation (see BenchmarkObserve and BenchmarkLocalHit).
//
// The package is named after the tool it feeds, like client_golang's own:
// import it under another name, such as stampedeprom.
package prometheus
