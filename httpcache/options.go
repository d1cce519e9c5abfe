package httpcache

import (
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stampede-go/stampede"
)

// Options configures a Middleware. The zero value of every field means its
// documented default.
type Options struct {
	// Namespace prefixes the Redis keys and the pub/sub channel, as in
	// stampede.Options. Default: "httpcache".
	Namespace string
	// DefaultTTL is the freshness lifetime of cacheable responses that carry
	// no s-maxage, max-age or Expires, and get no heuristic lifetime (see
	// HeuristicFraction). Default: 0, such responses are not stored.
	DefaultTTL time.Duration
	// HeuristicFraction turns on heuristic freshness (RFC 9111 4.2.2): a
	// response without explicit freshness, whose status is heuristically
	// cacheable (RFC 9110 15.1) or which is marked public, and which has
	// a Last-Modified, is fresh for this fraction of the time between its
	// Last-Modified and its Date, at most 24 hours. 0.1 is the usual
	// choice. It must be within [0, 1]. Default: 0, no heuristic.
	HeuristicFraction float64
	// StaleOnError serves a stale copy, for up to this long past its
	// freshness, in place of a handler run that failed (a 500, 502, 503 or
	// 504, a panic, a timeout), even when the response did not allow it
	// with stale-if-error: what nginx calls proxy_cache_use_stale and
	// Varnish grace. It never applies to a response that forbids stale
	// use (no-cache, must-revalidate, proxy-revalidate or s-maxage, RFC
	// 9111 4.2.4), and it keeps entries in Redis for that much longer.
	// Default: 0, off.
	StaleOnError time.Duration
	// TargetedFields is the cache's target list of RFC 9213: the response
	// fields, most specific first, whose cache directives govern this
	// cache in place of Cache-Control and Expires when one of them has a
	// valid value (for example "Example-Cache-Control",
	// "CDN-Cache-Control"). The fields are stored and forwarded.
	// Default: CDN-Cache-Control. An empty, non-nil slice: none.
	TargetedFields []string
	// HonorRequestCacheControl makes the cache follow a client's
	// Cache-Control no-cache, max-age and min-fresh request directives
	// (RFC 9111 5.2.1): when the client will not take the stored response,
	// the request goes to the handler, with the stored response's
	// validators, and its answer (the stored body freshened by a 304, or
	// the new response) is served; the requests that ask at the same time
	// in one process share one run. The stored entry is left as it is,
	// unless the cache is revalidating it meanwhile and shares that run.
	// Default: false: like nginx and Varnish, the cache answers from a
	// fresh stored response whatever the client asks, since a browser's
	// reload (max-age=0) would otherwise reach the origin every time.
	HonorRequestCacheControl bool
	// MaxBodySize is the largest body stored, in bytes. A response that
	// grows past it is streamed to its own client untouched, with memory
	// bounded, and not stored. Default: 1 MiB.
	MaxBodySize int
	// HitForMissTTL is how long a URL whose last response was not cacheable
	// is remembered as such: meanwhile its requests go to the handler at
	// once and concurrently, instead of each waiting for another's miss.
	// Default: 10 seconds.
	HitForMissTTL time.Duration
	// CacheableStatuses are the status codes that may be stored. Default:
	// 200, 203, 204, 300, 301, 308, 404, 405, 410, 414 and 501 (RFC 9110
	// 15.1, less 206).
	CacheableStatuses []int
	// CacheSetCookie stores responses that carry Set-Cookie, with the
	// Set-Cookie fields removed from the stored copy (the client whose
	// request filled the entry still gets its cookie). Default: false,
	// such responses are not stored.
	CacheSetCookie bool
	// CacheStatusName names this cache in the Cache-Status field (RFC 9211);
	// a name that is not a token is sent as a quoted string. Default:
	// "stampede".
	CacheStatusName string

	// Keep is how long past its freshness a stored response with a
	// validator (ETag or Last-Modified) stays in Redis for conditional
	// revalidation (RFC 9111 4.3.1), never served as it is meanwhile: a
	// request for it waits while one handler run across the fleet sends its
	// validators (If-None-Match, If-Modified-Since), and a 304 freshens it
	// (RFC 9111 4.3.4) instead of the whole response being sent again.
	// Responses are kept for their stale-if-error and StaleOnError windows
	// too, validator or not. Redis holds such responses that much longer.
	// It needs Redis: a single process (rdb nil) keeps nothing past the
	// stale windows. Default: 10 minutes. Negative: none.
	Keep time.Duration

	// LoadTimeout bounds a handler run whose response is being recorded;
	// then the run fails (504 Gateway Timeout, or the stale copy where
	// allowed). Default: 30 seconds.
	LoadTimeout time.Duration
	// LockTTL, Recheck, WaitTimeout, LocalTTL and BreakerCooldown are
	// passed to the core cache; see stampede.Options.
	LockTTL, Recheck, WaitTimeout, LocalTTL, BreakerCooldown time.Duration
	// LocalBytes bounds the memory each process gives to the responses it
	// keeps (the core's L1, in front of Redis): their bodies and header
	// fields, plus 512 bytes each for the rest. A response larger than all
	// of it is read from Redis every time. Default: 64 MiB. Negative: no
	// responses are kept in memory.
	LocalBytes int64
	// LocalCapacity is about how many responses LocalBytes is expected to
	// hold: it sizes the in-process cache's admission counters, not its
	// bound. Default: 10,000. Negative: no responses are kept in memory.
	LocalCapacity int
	// Invalidation is how one process's stores and purges reach the others'
	// memory; see stampede.Options.Invalidation. Default:
	// stampede.InvalidateAuto.
	Invalidation stampede.Invalidation
	// OnClient, if set, is called with every Redis client the middleware
	// makes of its own, in tracking mode, to add the hooks the client
	// passed to New has; see stampede.Options.OnClient. Default: nil.
	OnClient func(redis.UniversalClient)

	// ErrorHandler writes the response when there is no response to give:
	// the handler panicked (err is a *stampede.PanicError) or wrote an
	// incomplete response, or its run timed out. Default: 500 Internal
	// Server Error, or 504 Gateway Timeout for timeouts and for a stale
	// response that must be revalidated and could not be
	// (ErrRevalidationFailed, RFC 9111 4.2.4), with the status text as body.
	ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)
	// Observer, if set, sees every request's outcome (EventHTTPHit,
	// EventHTTPStale, EventHTTPMiss, EventHTTPRevalidated, EventHTTPBypass,
	// EventHTTPNotStored, with the Cache-Status fwd or detail as Reason)
	// and every event of the core cache beneath (loads, waits, leases,
	// Redis errors; see stampede.Event). Default: nil.
	Observer stampede.Observer
	// Logger, if set, gets what an operator should read: the core's events
	// (failed background revalidations, handler panics with their stack,
	// Redis going away; see stampede.Options.Logger) and the invalidations
	// and Vary records that could not be written. Requests themselves are
	// not logged. Default: nil, silent.
	Logger *slog.Logger
}

const (
	defaultNamespace     = "httpcache"
	defaultMaxBodySize   = 1 << 20
	defaultHitForMissTTL = 10 * time.Second
	defaultKeep          = 10 * time.Minute
	defaultLoadTimeout   = 30 * time.Second
	defaultLocalBytes    = 64 << 20
	defaultLocalCapacity = 10_000
	defaultStatusName    = "stampede"
	invalidateTimeout    = 5 * time.Second
	// loadGrace is how much longer than LoadTimeout the core gives a
	// load: the run times out first, so that its loader still answers for
	// it, with the stale copy where allowed.
	loadGrace = time.Second
)

// validate reports the first field of o that makes no sense, wrapping
// stampede.ErrInvalidOptions.
func (o Options) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{stampede.ErrInvalidOptions}, a...)...)
	}
	switch {
	case o.MaxBodySize < 0 || o.DefaultTTL < 0 || o.HitForMissTTL < 0 || o.StaleOnError < 0 || o.LoadTimeout < 0:
		return bad("negative MaxBodySize, DefaultTTL, HitForMissTTL, StaleOnError or LoadTimeout")
	case math.IsNaN(o.HeuristicFraction) || o.HeuristicFraction < 0 || o.HeuristicFraction > 1:
		return bad("HeuristicFraction %v is not within [0, 1]", o.HeuristicFraction)
	}
	for _, f := range o.TargetedFields {
		if !isToken(f) {
			return bad("TargetedFields: %q is not a field name", f)
		}
	}
	for _, c := range []byte(o.CacheStatusName) {
		if c < ' ' || c > '~' {
			return bad("CacheStatusName %q has a character Cache-Status cannot carry", o.CacheStatusName)
		}
	}
	return nil
}

// setDefaults fills in the zero fields of o with their documented
// defaults, and clamps lifetimes to what an entry can carry.
func (o *Options) setDefaults() {
	if o.Namespace == "" {
		o.Namespace = defaultNamespace
	}
	if o.MaxBodySize == 0 {
		o.MaxBodySize = defaultMaxBodySize
	}
	if o.HitForMissTTL == 0 {
		o.HitForMissTTL = defaultHitForMissTTL
	}
	switch {
	case o.Keep == 0:
		o.Keep = defaultKeep
	case o.Keep < 0:
		o.Keep = 0
	}
	if o.LoadTimeout == 0 {
		o.LoadTimeout = defaultLoadTimeout
	}
	if o.LocalBytes == 0 {
		o.LocalBytes = defaultLocalBytes
	}
	if o.LocalCapacity == 0 {
		o.LocalCapacity = defaultLocalCapacity
	}
	if o.LocalBytes < 0 {
		o.LocalCapacity = -1
	}
	if o.CacheStatusName == "" {
		o.CacheStatusName = defaultStatusName
	}
	if o.ErrorHandler == nil {
		o.ErrorHandler = defaultErrorHandler
	}
	if o.CacheableStatuses == nil {
		o.CacheableStatuses = defaultStatuses
	}
	if o.TargetedFields == nil {
		o.TargetedFields = defaultTargetedFields
	}
	o.DefaultTTL = clampDuration(o.DefaultTTL)
	o.StaleOnError = clampDuration(o.StaleOnError)
	o.Keep = clampDuration(o.Keep)
	o.HitForMissTTL = clampDuration(o.HitForMissTTL)
}

// statusName is the cache's identifier in Cache-Status: an sf-token when
// the name is one, else an sf-string (RFC 9211 2, RFC 8941 3.3.3-3.3.4).
func statusName(name string) string {
	token := name != "" && (name[0] == '*' || name[0] >= 'a' && name[0] <= 'z' || name[0] >= 'A' && name[0] <= 'Z')
	for i := 0; token && i < len(name); i++ {
		token = isTchar(name[i]) || name[i] == ':' || name[i] == '/'
	}
	if token {
		return name
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(name) + `"`
}
