package httpcache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"runtime/debug"
	"slices"
	"strconv"
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
	// no s-maxage, max-age or Expires. Default: 0, such responses are not
	// stored.
	DefaultTTL time.Duration
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
	// CacheStatusName names this cache in the Cache-Status field (RFC 9211).
	// Default: "stampede".
	CacheStatusName string

	// LockTTL, Recheck, WaitTimeout, LoadTimeout, LocalTTL and
	// BreakerCooldown are passed to the core cache; see stampede.Options.
	// LoadTimeout bounds a handler run whose response is being recorded.
	LockTTL, Recheck, WaitTimeout, LoadTimeout, LocalTTL, BreakerCooldown time.Duration
	// LocalCapacity is the number of responses each process keeps in memory
	// (the core's L1). Memory use is bounded by LocalCapacity × MaxBodySize.
	// Default: 1,000. Negative: none.
	LocalCapacity int

	// ErrorHandler writes the response when there is no response to give:
	// the handler panicked or wrote an incomplete response, or its run timed
	// out. Default: 500 Internal Server Error, or 504 Gateway Timeout for
	// timeouts, with the status text as body.
	ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)
	// OnError receives errors no request sees: failed background refreshes,
	// failed invalidations, undecodable entries. Default: nil.
	OnError func(key string, err error)
}

const (
	defaultNamespace     = "httpcache"
	defaultMaxBodySize   = 1 << 20
	defaultHitForMissTTL = 10 * time.Second
	defaultLocalCapacity = 1000
	defaultStatusName    = "stampede"
	invalidateTimeout    = 5 * time.Second
)

// Middleware is a shared HTTP cache for one fleet: responses are kept in
// each process's memory and in Redis, and concurrent misses for one URL run
// the handler once across all the processes that share the Redis. It is
// safe for concurrent use.
type Middleware struct {
	cache    *stampede.Cache[*entry]
	opts     Options
	statuses map[int]bool
	flight   flight

	closeCtx context.Context // cancelled by Close
	closeFn  context.CancelFunc
}

// New returns a Middleware storing responses in rdb, which may be any
// redis.UniversalClient, or nil for a single process (memory only). Close
// releases what New starts.
func New(rdb redis.UniversalClient, opts Options) (*Middleware, error) {
	if opts.MaxBodySize < 0 || opts.DefaultTTL < 0 || opts.HitForMissTTL < 0 {
		return nil, fmt.Errorf("%w: negative MaxBodySize, DefaultTTL or HitForMissTTL", stampede.ErrInvalidOptions)
	}
	if opts.Namespace == "" {
		opts.Namespace = defaultNamespace
	}
	if opts.MaxBodySize == 0 {
		opts.MaxBodySize = defaultMaxBodySize
	}
	if opts.HitForMissTTL == 0 {
		opts.HitForMissTTL = defaultHitForMissTTL
	}
	if opts.LocalCapacity == 0 {
		opts.LocalCapacity = defaultLocalCapacity
	}
	if opts.CacheStatusName == "" {
		opts.CacheStatusName = defaultStatusName
	}
	if opts.ErrorHandler == nil {
		opts.ErrorHandler = defaultErrorHandler
	}
	statuses := opts.CacheableStatuses
	if statuses == nil {
		statuses = defaultStatuses
	}
	m := &Middleware{opts: opts, statuses: make(map[int]bool, len(statuses))}
	for _, s := range statuses {
		m.statuses[s] = true
	}
	c, err := stampede.New[*entry](rdb, stampede.Options{
		Namespace:       opts.Namespace,
		LockTTL:         opts.LockTTL,
		Recheck:         opts.Recheck,
		WaitTimeout:     opts.WaitTimeout,
		OnWaitTimeout:   stampede.WaitLoadLocally,
		LoadTimeout:     opts.LoadTimeout,
		NotFoundTTL:     -1,
		LocalCapacity:   opts.LocalCapacity,
		LocalTTL:        opts.LocalTTL,
		BreakerCooldown: opts.BreakerCooldown,
		Codec:           codec{},
		OnError:         opts.OnError,
	})
	if err != nil {
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
	return m.cache.Close()
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
		m.bypass(w, r, next, "method")
		return
	default:
		m.serveUnsafe(w, r, next)
		return
	}
	if detail := bypassReason(r); detail != "" {
		m.bypass(w, r, next, detail)
		return
	}
	m.lookup(w, r, &call{m: m, next: next, r: r}, primaryKey(r))
}

// bypassReason says why a GET or HEAD request is not answered from, nor
// stored in, the cache; "" when it may be.
func bypassReason(r *http.Request) string {
	// Servers canonicalize the names of request fields: index directly.
	h := r.Header
	switch {
	case len(h["Range"]) > 0:
		return "range"
	case len(h["Upgrade"]) > 0:
		return "upgrade"
	case len(h["Accept"]) > 0 && strings.Contains(h.Get("Accept"), "text/event-stream"):
		return "event-stream"
	case len(h["Cache-Control"]) > 0 && parseCacheControl(h).has("no-store"):
		return "no-store"
	}
	return ""
}

// bypass hands the request to next with the ResponseWriter untouched, so
// Flush, Hijack and Unwrap keep working.
func (m *Middleware) bypass(w http.ResponseWriter, r *http.Request, next http.Handler, detail string) {
	w.Header().Set("Cache-Status", m.opts.CacheStatusName+"; fwd=bypass; detail="+detail)
	next.ServeHTTP(w, r)
}

// lookup answers r from key, running the handler through the core cache on
// a miss.
func (m *Middleware) lookup(w http.ResponseWriter, r *http.Request, c *call, key string) {
	if m.closeCtx.Err() != nil {
		m.bypass(w, r, c.next, "closed")
		return
	}
	res, err := m.cache.Fetch(r.Context(), key, c.load)
	// The request's own run is what it serves when the core ran it for
	// this request. A run the core started in the background after serving
	// a stored copy (a refresh) is not this request's answer.
	if own := c.finish(); own != nil {
		if err != nil || res.Source == stampede.SourceLoader {
			m.serveOwn(w, r, own, err == nil && res.Stored)
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
		m.serveError(w, r, err, "; collapsed")
		return
	}
	e := res.Value
	switch e.kind {
	case kindPass:
		m.bypass(w, r, c.next, "hit-for-miss")
	case kindVary:
		if c.variant != nil {
			m.bypass(w, r, c.next, "vary-loop")
			return
		}
		vc := &call{m: m, next: c.next, r: r, variant: e, primary: key}
		m.lookup(w, r, vc, variantKey(key, e.gen, e.vary, r))
	default:
		m.serveResult(w, r, c, key, res)
	}
}

// serveResult answers r with a stored response, fresh or stale.
func (m *Middleware) serveResult(w http.ResponseWriter, r *http.Request, c *call, key string, res stampede.Result[*entry]) {
	e := res.Value
	age := e.initialAge + res.Age
	name := m.opts.CacheStatusName
	switch res.Source {
	case stampede.SourceLoader: // waited for this process's run of another request
		m.writeEntry(w, r, e, age, name+"; fwd=uri-miss; fwd-status="+strconv.Itoa(e.status)+"; collapsed"+storedParam(res.Stored))
		return
	case stampede.SourceLocal, stampede.SourceRedis:
		m.writeEntry(w, r, e, age, name+"; hit; ttl="+seconds(e.life-age))
		return
	}
	// Stale. Within stale-while-revalidate it is served as it is; the core
	// is refreshing it once across the fleet.
	staleFor := age - e.life
	if staleFor <= e.swr {
		m.writeEntry(w, r, e, age, name+"; hit; ttl="+seconds(-staleFor)+"; detail=stale-while-revalidate")
		return
	}
	// Past it, within stale-if-error: the stale copy is for errors only.
	if res.LoadErr != nil { // this process's last refresh failed
		m.writeEntry(w, r, e, age, name+"; fwd=stale; ttl="+seconds(-staleFor)+"; detail=stale-if-error")
		return
	}
	// Revalidate now. The refresh the core started in the background joins
	// this run through m.flight, so the handler runs once per process; if
	// that refresh has already landed, its response is served instead.
	c2 := &call{m: m, next: c.next, r: r, variant: c.variant}
	again, err := m.cache.Fetch(r.Context(), key, c2.load)
	if own := c2.finish(); own != nil {
		if err != nil || again.Source == stampede.SourceLoader {
			m.serveOwn(w, r, own, err == nil && again.Stored)
			return
		}
		if own.stream != nil {
			_ = own.stream.pr.CloseWithError(errNoReader)
		}
	}
	if err == nil && again.Source != stampede.SourceStale && again.Value.kind == kindResponse {
		m.serveResult(w, r, c2, key, again)
		return
	}
	c2 = &call{m: m, next: c.next, r: r, variant: c.variant}
	lctx, cancel := m.loadContext(r.Context())
	o, ok := m.flight.do(r.Context(), key, func() *outcome { return m.execute(lctx, c2) })
	cancel()
	if own := c2.finish(); own != nil && own.stream != nil {
		own.stream.copyTo(w, r, name+"; fwd=stale; detail="+own.reason)
		return
	}
	if !ok {
		return // the client left
	}
	switch {
	case o.err != nil || isServerError(o.status):
		fs := ""
		if o.err == nil {
			fs = "; fwd-status=" + strconv.Itoa(o.status)
		}
		m.writeEntry(w, r, e, age, name+"; fwd=stale"+fs+"; ttl="+seconds(-staleFor)+"; detail=stale-if-error")
	case o.e != nil && (o.owner == c2 || sameVary(o.e, c.variant)):
		m.writeEntry(w, r, o.e, o.e.initialAge, name+"; fwd=stale; fwd-status="+strconv.Itoa(o.status))
	case o.e != nil:
		// Another request's run, which now varies on other fields: it may
		// be another client's variant.
		m.bypass(w, r, c.next, "vary-changed")
	case o.owner == c2 && o.stream == nil:
		m.writeRaw(w, r, o, name+"; fwd=stale; fwd-status="+strconv.Itoa(o.status)+"; detail="+o.reason)
	default:
		m.bypass(w, r, c.next, o.reason)
	}
}

// serveOwn answers a request with the outcome of its own handler run.
// stored says whether the core wrote the response to the cache.
func (m *Middleware) serveOwn(w http.ResponseWriter, r *http.Request, o *outcome, stored bool) {
	name := m.opts.CacheStatusName
	switch {
	case o.stream != nil:
		o.stream.copyTo(w, r, name+"; fwd=uri-miss; detail="+o.reason)
	case o.err != nil:
		m.serveError(w, r, o.err, "")
	case o.e != nil:
		// The stored copy, plus the fields kept out of it that are this
		// client's own (Set-Cookie, private="..." and no-cache="..." fields).
		for k, v := range o.header {
			if _, stored := o.e.header[k]; !stored && !slices.Contains(hopByHop, k) && k != "Age" {
				w.Header()[k] = v
			}
		}
		m.writeEntry(w, r, o.e, o.e.initialAge, name+"; fwd=uri-miss; fwd-status="+strconv.Itoa(o.status)+storedParam(stored))
	case o.reason != "":
		m.writeRaw(w, r, o, name+"; fwd=uri-miss; fwd-status="+strconv.Itoa(o.status)+"; detail="+o.reason)
	default: // a server error, never stored
		m.writeRaw(w, r, o, name+"; fwd=uri-miss; fwd-status="+strconv.Itoa(o.status))
	}
}

// storedParam is Cache-Status's "stored" parameter (RFC 9211 2.8), present
// only when the response was stored.
func storedParam(stored bool) string {
	if stored {
		return "; stored"
	}
	return ""
}

// serveError answers a request whose response could not be had.
func (m *Middleware) serveError(w http.ResponseWriter, r *http.Request, err error, collapsed string) {
	var oe *originError
	if errors.As(err, &oe) { // the handler's own 5xx
		cs := m.opts.CacheStatusName + "; fwd=uri-miss; fwd-status=" + strconv.Itoa(oe.o.status) + collapsed
		if collapsed == "" {
			m.writeRaw(w, r, oe.o, cs)
			return
		}
		// Another request's response: the waiters share its status and
		// body, never what was meant for that one client.
		cc := parseCacheControl(oe.o.header)
		if !cc.has("private") && !cc.has("no-store") {
			shared := *oe.o
			shared.header = oe.o.header.Clone()
			shared.header.Del("Set-Cookie")
			m.writeRaw(w, r, &shared, cs)
			return
		}
	}
	if r.Context().Err() != nil {
		return // the client left
	}
	w.Header().Set("Cache-Status", m.opts.CacheStatusName+"; fwd=uri-miss"+collapsed+"; detail=error")
	m.opts.ErrorHandler(w, r, err)
}

func defaultErrorHandler(w http.ResponseWriter, _ *http.Request, err error) {
	status := http.StatusInternalServerError
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, stampede.ErrWaitTimeout) {
		status = http.StatusGatewayTimeout
	}
	http.Error(w, http.StatusText(status), status)
}

// writeEntry answers r with a stored response, or with 304 Not Modified
// when r's validators match it.
func (m *Middleware) writeEntry(w http.ResponseWriter, r *http.Request, e *entry, age time.Duration, cacheStatus string) {
	h := w.Header()
	if e.status == http.StatusOK && notModified(r, e.header) {
		for _, k := range notModifiedFields {
			if v, ok := e.header[k]; ok {
				h[k] = v
			}
		}
		h.Set("Age", strconv.FormatInt(int64(age/time.Second), 10))
		h.Set("Cache-Status", cacheStatus)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	for k, v := range e.header {
		h[k] = v
	}
	h.Set("Age", strconv.FormatInt(int64(age/time.Second), 10))
	h.Set("Cache-Status", cacheStatus)
	w.WriteHeader(e.status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(e.body)
	}
}

// notModifiedFields are the stored fields a 304 repeats (RFC 9110 15.4.5).
var notModifiedFields = []string{"Cache-Control", "Content-Location", "Date", "Etag", "Expires", "Last-Modified", "Vary"}

// writeRaw answers r with a response as its handler wrote it.
func (m *Middleware) writeRaw(w http.ResponseWriter, r *http.Request, o *outcome, cacheStatus string) {
	h := w.Header()
	for k, v := range o.header {
		h[k] = v
	}
	h.Set("Cache-Status", cacheStatus)
	w.WriteHeader(o.status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(o.body)
	}
}

func seconds(d time.Duration) string { return strconv.FormatInt(int64(d/time.Second), 10) }

// loadContext is the context of a handler run started outside the core:
// the request's values, its own timeout, cancelled by Close.
func (m *Middleware) loadContext(ctx context.Context) (context.Context, context.CancelFunc) {
	timeout := m.opts.LoadTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	stop := context.AfterFunc(m.closeCtx, cancel)
	return lctx, func() { stop(); cancel() }
}

// outcome is what one handler run produced.
type outcome struct {
	owner *call         // the call whose request started the run
	req   *http.Request // that request

	// The response as the handler wrote it.
	status int
	header http.Header
	body   []byte

	e      *entry         // the entry to store; nil when not cacheable
	ent    stampede.Entry // how long to store it
	reason string         // why it is not stored
	err    error          // panic, incomplete response, timeout
	stream *stream        // the response became a stream to its owner
}

// originError carries a server error response (500, 502, 503, 504) through
// the core as a load error: it is never stored, a stale copy is served in
// its place within stale-if-error, and the requests that waited for the run
// get it as it is.
type originError struct{ o *outcome }

func (e *originError) Error() string {
	return "httpcache: handler responded " + strconv.Itoa(e.o.status)
}

// load is the loader this call gives the core.
func (c *call) load(lctx context.Context, key string) (*entry, stampede.Entry, error) {
	m := c.m
	o, ok := m.flight.do(lctx, key, func() *outcome { return m.execute(lctx, c) })
	if !ok {
		return nil, stampede.Entry{}, context.Cause(lctx)
	}
	switch {
	case o.err != nil:
		return nil, stampede.Entry{}, o.err
	case o.stream != nil:
		return m.pass(o.reason)
	case isServerError(o.status):
		return nil, stampede.Entry{}, &originError{o}
	case o.e == nil:
		return m.pass(o.reason)
	}
	e := o.e
	if c.variant != nil {
		if !slices.Equal(e.vary, c.variant.vary) {
			// The origin varies on other fields now: drop the record, so
			// the next request stores one with the new names.
			if err := m.cache.Delete(lctx, c.primary); err != nil && m.opts.OnError != nil {
				m.opts.OnError(c.primary, err)
			}
			return m.pass("vary-changed")
		}
		return e, o.ent, nil
	}
	if len(e.vary) == 0 {
		return e, o.ent, nil
	}
	// The response varies: store it under its variant's key, and a Vary
	// record under the primary key. The record's generation is part of the
	// variant keys, so purging the primary key orphans all the variants.
	rec := &entry{kind: kindVary, vary: e.vary, gen: newGen()}
	vk := variantKey(key, rec.gen, e.vary, o.req)
	if _, err := m.cache.Fetch(lctx, vk, func(context.Context, string) (*entry, stampede.Entry, error) {
		return e, o.ent, nil
	}); err != nil && m.opts.OnError != nil {
		m.opts.OnError(vk, err)
	}
	// The record outlives any one variant and is never refreshed: a
	// refresh would draw a new generation and orphan every other variant.
	// Each variant keeps its own freshness under its own key.
	return rec, stampede.Entry{TTL: max(o.ent.TTL+max(o.ent.Stale, 0), varyRecordTTL), Stale: -1}, nil
}

// varyRecordTTL is the least a Vary record lives. It only maps a URL to the
// fields its responses vary on; a change of those fields drops it.
const varyRecordTTL = time.Hour

// sameVary says whether response e may answer every request that looked up
// the key of rec: the same Vary fields, or none for a primary key.
func sameVary(e, rec *entry) bool {
	if rec == nil {
		return len(e.vary) == 0
	}
	return slices.Equal(e.vary, rec.vary)
}

// pass returns the hit-for-miss marker.
func (m *Middleware) pass(reason string) (*entry, stampede.Entry, error) {
	return &entry{kind: kindPass, reason: reason}, stampede.Entry{TTL: m.opts.HitForMissTTL, Stale: -1}, nil
}

func newGen() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// conditionalFields are removed from the request a handler run sees, so that
// it produces the full response to store; validators are answered from the
// stored copy, and only to the clients that sent them.
var conditionalFields = []string{"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range"}

// execute runs the handler for c's request into a recorder, on a context
// with ctx's values that ctx's end cancels, and classifies the response.
// A HEAD runs as a GET, so that the stored entry has the GET's body.
func (m *Middleware) execute(ctx context.Context, c *call) *outcome {
	hctx, _, relink, stop := detachFrom(ctx, c.r.Context())
	r2 := c.r.Clone(hctx)
	r2.Method = http.MethodGet
	r2.Body = http.NoBody
	r2.ContentLength = 0
	for _, f := range conditionalFields {
		r2.Header.Del(f)
	}
	rec := newRecorder(c, m.opts.MaxBodySize, relink)
	hdone := make(chan error, 1)
	go func() {
		normal := false
		defer func() {
			var failure error
			if !normal {
				if v := recover(); v != nil {
					failure = &stampede.PanicError{Value: v, Stack: debug.Stack()}
				} else {
					failure = errors.New("httpcache: handler called runtime.Goexit")
				}
			} else if err := context.Cause(hctx); err != nil {
				failure = fmt.Errorf("%w: handler returned after its context ended: %w", errIncomplete, err)
			}
			rec.finish(failure)
			stop()
			hdone <- failure
		}()
		c.next.ServeHTTP(rec, r2)
		normal = true
	}()

	o := &outcome{owner: c, req: c.r}
	select {
	case failure := <-hdone:
		select {
		case <-rec.streaming:
		default:
			if failure != nil {
				o.err = failure
				break
			}
			o.status, o.header, o.body, o.err = rec.result()
			if o.err == nil && errors.Is(rec.werr, errNoReader) {
				// It outgrew MaxBodySize with nobody left to stream it to
				// (a background refresh, a leader whose client left): what
				// was recorded is cut off, and never stored.
				o.e, o.reason = nil, "too-big"
			} else if o.err == nil && !isServerError(o.status) {
				o.e, o.ent, o.reason = m.classify(r2, o.status, o.header, o.body, time.Now())
			}
		}
	case <-rec.streaming:
	case <-ctx.Done():
		o.err = context.Cause(ctx)
	}
	c.mu.Lock()
	if o.err == nil && o.status == 0 { // became a stream
		o.stream, o.reason = c.stream, rec.reason
	}
	c.own = o
	c.mu.Unlock()
	return o
}

// classify decides whether a response may be stored in a shared cache (RFC
// 9111 3 and 3.5), and for how long; it returns the entry to store, or the
// reason it is not stored.
func (m *Middleware) classify(r *http.Request, status int, h http.Header, body []byte, now time.Time) (*entry, stampede.Entry, string) {
	if !m.statuses[status] {
		return nil, stampede.Entry{}, "status"
	}
	cc := parseCacheControl(h)
	names, star := varyNames(h)
	switch {
	case cc.has("no-store"):
		return nil, stampede.Entry{}, "no-store"
	case cc.has("private") && cc["private"] == "":
		return nil, stampede.Entry{}, "private"
	case cc.has("no-cache") && cc["no-cache"] == "":
		return nil, stampede.Entry{}, "no-cache"
	case len(h["Set-Cookie"]) > 0 && !m.opts.CacheSetCookie:
		return nil, stampede.Entry{}, "set-cookie"
	case star:
		return nil, stampede.Entry{}, "vary-star"
	case r.Header.Get("Authorization") != "" &&
		!cc.has("public") && !cc.has("s-maxage") && !cc.has("must-revalidate"):
		return nil, stampede.Entry{}, "authorization"
	}
	date := now
	if d, err := http.ParseTime(h.Get("Date")); err == nil {
		date = d
	}
	life, explicit := lifetime(cc, h, date)
	if !explicit {
		if m.opts.DefaultTTL <= 0 {
			return nil, stampede.Entry{}, "no-freshness"
		}
		life = m.opts.DefaultTTL
	}
	age := initialAge(h, date, now)
	ttl := life - age
	if ttl < time.Millisecond {
		return nil, stampede.Entry{}, "stale"
	}
	var swr, sie time.Duration
	// RFC 9111 4.2.4. s-maxage implies proxy-revalidate, but an explicit
	// stale-while-revalidate or stale-if-error alongside it is taken as the
	// origin's permission, as CDNs do.
	if !cc.has("must-revalidate") && !cc.has("proxy-revalidate") && !cc.has("no-cache") {
		swr, _, _ = cc.seconds("stale-while-revalidate")
		sie, _, _ = cc.seconds("stale-if-error")
	}

	sh := h.Clone()
	for _, f := range hopByHop {
		sh.Del(f)
	}
	for _, line := range h.Values("Connection") {
		for f := range strings.SplitSeq(line, ",") {
			sh.Del(strings.TrimSpace(f))
		}
	}
	for _, f := range cc.fieldList("private") {
		sh.Del(f)
	}
	for _, f := range cc.fieldList("no-cache") {
		sh.Del(f)
	}
	sh.Del("Set-Cookie")
	sh.Del("Age")
	sh.Set("Content-Length", strconv.Itoa(len(body)))
	if sh.Get("Date") == "" {
		sh.Set("Date", now.UTC().Format(http.TimeFormat))
	}
	e := &entry{kind: kindResponse, status: status, header: sh, body: body,
		initialAge: age, life: life, swr: swr, sie: sie, vary: names}
	ent := stampede.Entry{TTL: ttl, Stale: max(swr, sie)}
	if ent.Stale == 0 {
		ent.Stale = -1
	}
	return e, ent, ""
}

// notModified evaluates If-None-Match (weak comparison), or else
// If-Modified-Since, against a stored 200 response (RFC 9110 13.1.2, 13.1.3).
func notModified(r *http.Request, h http.Header) bool {
	if len(r.Header["If-None-Match"]) == 0 && len(r.Header["If-Modified-Since"]) == 0 {
		return false
	}
	if inm := r.Header.Values("If-None-Match"); len(inm) > 0 {
		etag := h.Get("Etag")
		if etag == "" {
			return false
		}
		for _, line := range inm {
			for len(line) > 0 {
				var tag string
				tag, line = nextItem(line)
				tag = strings.TrimSpace(tag)
				if tag == "*" || weakMatch(tag, etag) {
					return true
				}
			}
		}
		return false
	}
	ims := r.Header.Get("If-Modified-Since")
	lm := h.Get("Last-Modified")
	if ims == "" || lm == "" {
		return false
	}
	t, err1 := http.ParseTime(ims)
	l, err2 := http.ParseTime(lm)
	return err1 == nil && err2 == nil && !l.After(t)
}

// weakMatch compares two entity tags ignoring their weakness.
func weakMatch(a, b string) bool {
	return strings.TrimPrefix(a, "W/") == strings.TrimPrefix(b, "W/")
}
