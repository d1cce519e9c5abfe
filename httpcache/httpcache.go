package httpcache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stampede-go/stampede"
)

// Middleware is a shared HTTP cache for one fleet: responses are kept in
// each process's memory and in Redis, and concurrent misses for one URL run
// the handler once across all the processes that share the Redis. It is
// safe for concurrent use.
type Middleware struct {
	cache      *stampede.Cache[*entry]
	opts       Options
	statuses   map[int]bool
	targets    []string // the target list of RFC 9213, canonical names
	statusName string   // the cache's identifier in Cache-Status
	shared     bool     // there is a Redis: entries are kept past their stale window
	// runs is a process-local core cache that every handler run whose
	// response is recorded goes through as a loader (see run): the core
	// catches its panics and lets its caller leave when the response
	// turns into a stream. It stores nothing.
	runs   *stampede.Cache[*outcome]
	runSeq atomic.Uint64 // numbers the runs (runKey)

	closeCtx context.Context // cancelled by Close
	closeFn  context.CancelFunc
}

// New returns a Middleware storing responses in rdb, which may be any
// redis.UniversalClient, or nil for a single process (memory only). Close
// releases what New starts. Invalid options give an error wrapping
// stampede.ErrInvalidOptions.
func New(rdb redis.UniversalClient, opts Options) (*Middleware, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	m := &Middleware{opts: opts, statuses: make(map[int]bool, len(opts.CacheableStatuses)),
		statusName: statusName(opts.CacheStatusName), shared: rdb != nil}
	for _, s := range opts.CacheableStatuses {
		m.statuses[s] = true
	}
	for _, f := range opts.TargetedFields {
		m.targets = append(m.targets, http.CanonicalHeaderKey(f))
	}
	c, err := stampede.New[*entry](rdb, stampede.Options{
		Namespace:       opts.Namespace,
		LockTTL:         opts.LockTTL,
		Recheck:         opts.Recheck,
		WaitTimeout:     opts.WaitTimeout,
		OnWaitTimeout:   stampede.WaitLoadLocally,
		LoadTimeout:     opts.LoadTimeout + loadGrace,
		NotFoundTTL:     -1,
		LocalCapacity:   opts.LocalCapacity,
		LocalMaxCost:    max(opts.LocalBytes, 0),
		LocalCost:       entryCost,
		LocalTTL:        opts.LocalTTL,
		BreakerCooldown: opts.BreakerCooldown,
		Invalidation:    opts.Invalidation,
		OnClient:        opts.OnClient,
		Codec:           codec{},
		Observer:        opts.Observer,
		Logger:          opts.Logger,
	})
	if err != nil {
		return nil, err
	}
	m.runs, err = stampede.New[*outcome](nil, stampede.Options{
		Namespace:     opts.Namespace,
		LoadTimeout:   opts.LoadTimeout, // the runs' own deadline, before the core's (loadGrace)
		NotFoundTTL:   -1,
		LocalCapacity: -1,
	})
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	m.cache = c
	m.closeCtx, m.closeFn = context.WithCancel(context.Background())
	return m, nil
}

// Close stops the background work New started. Requests after Close are
// passed to the handler uncached.
func (m *Middleware) Close() error {
	m.closeFn()
	return errors.Join(m.cache.Close(), m.runs.Close())
}

// Stats returns the core cache's counters.
func (m *Middleware) Stats() stampede.Stats { return m.cache.Stats() }

// Purge removes the stored responses for each absolute URL (all of its
// variants) from Redis and from the memory of every process.
func (m *Middleware) Purge(ctx context.Context, urls ...string) error {
	var errs []error
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil || u.Scheme == "" || u.Host == "" {
			errs = append(errs, fmt.Errorf("httpcache: purge %q: not an absolute URL", raw))
			continue
		}
		if u.Path == "" {
			u.Path = "/" // "http://host" names the same resource as "http://host/"
		}
		if err := m.cache.Delete(ctx, primaryKeyOf(strings.ToLower(u.Scheme), u.Host, u)); err != nil {
			errs = append(errs, fmt.Errorf("httpcache: purge %q: %w", raw, err))
		}
	}
	return errors.Join(errs...)
}

// Handler returns next wrapped by the cache.
func (m *Middleware) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.serve(w, r, next)
	})
}

func (m *Middleware) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodOptions, http.MethodTrace, http.MethodConnect:
		m.forward(w, r, next, cacheStatus{fwd: fwdMethod})
		return
	default:
		m.serveUnsafe(w, r, next)
		return
	}
	if detail := bypassReason(r); detail != "" {
		m.forward(w, r, next, cacheStatus{fwd: fwdBypass, detail: detail})
		return
	}
	c := &call{m: m, next: next, r: r, w: w, rng: r.Method == http.MethodGet && len(r.Header["Range"]) > 0}
	m.lookup(w, r, c, primaryKey(r))
}

// maxRangeRetries bounds how many times a request looks again after
// sharing the lookup of a range request that found nothing stored: each
// time, another range request arrived first and led the lookup.
const maxRangeRetries = 3

// bypassReason says why a GET or HEAD request is not answered from, nor
// stored in, the cache; "" when it may be.
func bypassReason(r *http.Request) string {
	// Servers canonicalize the names of request fields: index directly.
	h := r.Header
	switch {
	case len(h["Range"]) > 0 && r.Method == http.MethodGet && !singleRange(h["Range"]):
		// One byte range is answered from a stored response; several, or
		// another unit, are the handler's to answer (or ignore).
		return "range"
	case len(h["Upgrade"]) > 0:
		return "upgrade"
	case len(h["Accept"]) > 0 && strings.Contains(h.Get("Accept"), "text/event-stream"):
		return "event-stream"
	case len(h["Cache-Control"]) > 0 && parseCacheControl(h).has("no-store"):
		return "no-store"
	case len(h["If-Match"]) > 0 || len(h["If-Unmodified-Since"]) > 0:
		// Preconditions a cache does not evaluate (RFC 9111 4.3.2): the
		// handler, which knows the current state, does.
		return "precondition"
	}
	return ""
}

func singleRange(lines []string) bool {
	_, ok := parseSingleRange(lines)
	return ok
}

// forward hands the request to next with the ResponseWriter untouched, so
// Flush, Hijack and Unwrap keep working.
func (m *Middleware) forward(w http.ResponseWriter, r *http.Request, next http.Handler, cs cacheStatus) {
	addCacheStatus(w.Header(), m.member(r, cs))
	next.ServeHTTP(w, r)
}

// bypass forwards a request the cache passes by, saying why.
func (m *Middleware) bypass(w http.ResponseWriter, r *http.Request, next http.Handler, detail string) {
	m.forward(w, r, next, cacheStatus{fwd: fwdBypass, detail: detail})
}

// lookup answers r from key, running the handler through the core cache on
// a miss.
func (m *Middleware) lookup(w http.ResponseWriter, r *http.Request, c *call, key string) {
	if m.closeCtx.Err() != nil {
		m.bypass(w, r, c.next, "closed")
		return
	}
	start := time.Now()
	res, err := m.cache.FetchPrev(r.Context(), key, c.load)
	// The request's own run is what it serves when the core ran it for
	// this request. A run the core started in the background after serving
	// a stored copy (a refresh) is not this request's answer.
	if own := c.finish(); own != nil {
		if err != nil || res.Source == stampede.SourceLoader {
			m.serveOwn(w, r, c, own, err == nil && res.Stored, err)
			return
		}
		if own.stream != nil {
			_ = own.stream.pr.CloseWithError(errNoReader)
		}
	}
	if err != nil {
		if errors.Is(err, stampede.ErrClosed) {
			m.bypass(w, r, c.next, "closed")
			return
		}
		m.serveError(w, r, err, res.Waited, c.errorFwd(err))
		return
	}
	e := res.Value
	switch e.kind {
	case kindPass:
		if e.reason != reasonRangeMiss {
			m.bypass(w, r, c.next, "hit-for-miss")
			return
		}
		switch {
		case c.rng:
			// Nothing stored for this range request, or for the one whose
			// lookup it shared: the handler answers the range itself, as
			// without a cache.
			m.forward(w, r, c.next, cacheStatus{fwd: c.missFwd(), detail: "range"})
		case c.retries < maxRangeRetries:
			// This request shared the lookup of a range request that found
			// nothing: look again, and lead the fill or join it.
			m.lookup(w, r, &call{m: m, next: c.next, r: r, w: w, variant: c.variant, primary: c.primary,
				retries: c.retries + 1}, key)
		default:
			m.bypass(w, r, c.next, reasonRangeMiss)
		}
	case kindVary:
		if c.variant != nil {
			m.bypass(w, r, c.next, "vary-loop")
			return
		}
		vc := &call{m: m, next: c.next, r: r, w: w, variant: e, primary: key, rng: c.rng}
		m.lookup(w, r, vc, variantKey(key, e.gen, e.vary, r))
	default:
		m.serveResult(w, r, c, key, res, start)
	}
}

// failedWrite reports an invalidation or a Vary record that could not be
// written: no request sees it.
func (m *Middleware) failedWrite(ctx context.Context, what, key string, err error) {
	if m.opts.Logger != nil {
		m.opts.Logger.LogAttrs(ctx, slog.LevelWarn, "httpcache: "+what+" failed",
			slog.String("namespace", m.opts.Namespace), slog.String("key", key), slog.Any("error", err))
	}
}
