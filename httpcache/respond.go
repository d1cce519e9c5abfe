package httpcache

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/stampede-go/stampede"
)

// serveResult answers r with a stored response, fresh or stale.
func (m *Middleware) serveResult(w http.ResponseWriter, r *http.Request, c *call, key string, res stampede.Result[*entry]) {
	e := res.Value
	age := e.initialAge + res.Age
	switch res.Source {
	case stampede.SourceLoader: // waited for this process's run of another request
		m.writeEntry(w, r, e, age, cacheStatus{fwd: c.missFwd(), fwdStatus: e.status, stored: res.Stored, collapsed: true})
		return
	case stampede.SourceLocal, stampede.SourceRedis:
		if m.opts.HonorRequestCacheControl && refuses(r, age, e.life) {
			m.revalidate(w, r, c, key, e, age, fwdRequest)
			return
		}
		m.writeEntry(w, r, e, age, cacheStatus{hit: true, ttl: e.life - age, hasTTL: true})
		return
	}
	// Stale. Within stale-while-revalidate it is served as it is; the core
	// is refreshing it once across the fleet.
	staleFor := age - e.life
	if staleFor <= e.swr {
		if !m.opts.HonorRequestCacheControl || !refuses(r, age, e.life) {
			m.writeEntry(w, r, e, age, cacheStatus{hit: true, ttl: -staleFor, hasTTL: true, detail: "stale-while-revalidate"})
			return
		}
	} else if res.LoadErr != nil {
		// Past it, within stale-if-error or StaleOnError, the stale copy
		// is for errors only, and this process's last refresh failed.
		m.writeEntry(w, r, e, age, cacheStatus{fwd: fwdStale, ttl: -staleFor, hasTTL: true, detail: staleDetail(e, staleFor)})
		return
	}
	// Revalidate now. The refresh the core started in the background joins
	// this run through m.flight, so the handler runs once per process; if
	// that refresh has already landed, its response is served instead.
	c2 := &call{m: m, next: c.next, r: r, w: w, variant: c.variant, primary: c.primary, prev: e, fwd: fwdStale}
	again, err := m.cache.Fetch(r.Context(), key, c2.load)
	if own := c2.finish(); own != nil {
		if err != nil || again.Source == stampede.SourceLoader {
			m.serveOwn(w, r, c2, own, err == nil && again.Stored)
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
	m.revalidate(w, r, c, key, e, age, fwdStale)
}

// staleDetail says what allowed a stale response to be served in place of
// a failed run.
func staleDetail(e *entry, staleFor time.Duration) string {
	if staleFor <= e.sie {
		return "stale-if-error"
	}
	return "stale-on-error"
}

// revalidate answers r with a handler run made conditional on the stored
// response e (RFC 9111 4.3.1), which is stale (fwd is fwdStale) or which
// the request would not take fresh (fwdRequest). The requests of this
// process that revalidate the key at the same time, and the core's
// background refresh of it, share one run.
func (m *Middleware) revalidate(w http.ResponseWriter, r *http.Request, c *call, key string, e *entry, age time.Duration, fwd string) {
	c2 := &call{m: m, next: c.next, r: r, w: w, variant: c.variant, primary: c.primary, prev: e}
	lctx, cancel := m.loadContext(r.Context())
	o, ok := m.flight.do(r.Context(), key, func() *outcome { return m.execute(lctx, c2) })
	cancel()
	if own := c2.finish(); own != nil && own.stream != nil {
		own.stream.copyTo(w, r, m.member(cacheStatus{fwd: fwd, detail: own.reason}))
		return
	}
	if !ok {
		return // the client left
	}
	shared := o.owner != c2
	switch {
	case o.err != nil || isServerError(o.status):
		if fwd == fwdStale { // within a stale window that allows it
			cs := cacheStatus{fwd: fwdStale, ttl: e.life - age, hasTTL: true, detail: staleDetail(e, age-e.life)}
			if o.err == nil {
				cs.fwdStatus = o.status
			}
			m.writeEntry(w, r, e, age, cs)
			return
		}
		err := o.err
		if err == nil {
			err = &originError{o}
		}
		m.serveError(w, r, err, shared, fwd)
	case o.e != nil && (!shared || sameVary(o.e, c.variant)):
		m.writeEntry(w, r, o.e, o.e.initialAge, cacheStatus{fwd: fwd, fwdStatus: o.fwdStatus(), collapsed: shared})
	case o.e != nil:
		// Another request's run, which now varies on other fields: it may
		// be another client's variant.
		m.bypass(w, r, c.next, "vary-changed")
	case !shared && o.stream == nil:
		m.writeRaw(w, r, o, cacheStatus{fwd: fwd, fwdStatus: o.fwdStatus(), detail: o.reason})
	default:
		m.bypass(w, r, c.next, o.reason)
	}
}

// refuses reports whether the request's own Cache-Control (RFC 9111
// 5.2.1) refuses a stored response of this age and lifetime: no-cache, a
// max-age it is older than, or a min-fresh it would not stay fresh for.
func refuses(r *http.Request, age, life time.Duration) bool {
	if len(r.Header["Cache-Control"]) == 0 {
		return false
	}
	cc := parseCacheControl(r.Header)
	if cc.has("no-cache") {
		return true
	}
	if s, _, valid := cc.seconds("max-age"); valid && age > s {
		return true
	}
	s, _, valid := cc.seconds("min-fresh")
	return valid && life-age < s
}

// serveOwn answers a request with the outcome of its own handler run.
// stored says whether the core wrote the response to the cache.
func (m *Middleware) serveOwn(w http.ResponseWriter, r *http.Request, c *call, o *outcome, stored bool) {
	fwd := c.missFwd()
	switch {
	case o.stream != nil:
		o.stream.copyTo(w, r, m.member(cacheStatus{fwd: fwd, detail: o.reason}))
	case o.err != nil:
		m.serveError(w, r, o.err, false, fwd)
	case o.e != nil:
		// The stored copy, plus the fields kept out of it that are this
		// client's own (Set-Cookie, private="..." and no-cache="..." fields).
		for k, v := range o.header {
			if _, stored := o.e.header[k]; !stored && !slices.Contains(hopByHop, k) && k != "Age" {
				w.Header()[k] = v
			}
		}
		m.writeEntry(w, r, o.e, o.e.initialAge, cacheStatus{fwd: fwd, fwdStatus: o.fwdStatus(), stored: stored})
	default: // not storable, or a server error, never stored
		m.writeRaw(w, r, o, cacheStatus{fwd: fwd, fwdStatus: o.fwdStatus(), detail: o.reason})
	}
}

// serveError answers a request whose response could not be had. collapsed
// says the request shared another request's run.
func (m *Middleware) serveError(w http.ResponseWriter, r *http.Request, err error, collapsed bool, fwd string) {
	var oe *originError
	if errors.As(err, &oe) { // the handler's own 5xx
		cs := cacheStatus{fwd: fwd, fwdStatus: oe.o.status, collapsed: collapsed}
		if !collapsed {
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
	addCacheStatus(w.Header(), m.member(cacheStatus{fwd: fwd, collapsed: collapsed, detail: "error"}))
	m.opts.ErrorHandler(w, r, err)
}

func defaultErrorHandler(w http.ResponseWriter, _ *http.Request, err error) {
	status := http.StatusInternalServerError
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, stampede.ErrWaitTimeout) {
		status = http.StatusGatewayTimeout
	}
	http.Error(w, http.StatusText(status), status)
}

// writeEntry answers r with a stored response: 304 Not Modified when r's
// validators match it, part of it for a Range request, or all of it.
func (m *Middleware) writeEntry(w http.ResponseWriter, r *http.Request, e *entry, age time.Duration, cs cacheStatus) {
	h := w.Header()
	ageValue := strconv.FormatInt(int64(age/time.Second), 10)
	if notModified(r, e.status, e.header) {
		for _, k := range notModifiedFields {
			if v, ok := e.header[k]; ok {
				h[k] = v
			}
		}
		for _, k := range m.targets {
			if v, ok := e.header[k]; ok {
				h[k] = v
			}
		}
		h.Set("Age", ageValue)
		addCacheStatus(h, m.member(cs))
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if br, ok := rangeApplies(r, e.status, e.header); ok {
		writeRange(w, br, e, ageValue, m.member(cs))
		return
	}
	for k, v := range e.header {
		h[k] = v
	}
	h.Set("Age", ageValue)
	addCacheStatus(h, m.member(cs))
	w.WriteHeader(e.status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(e.body)
	}
}

// writeRaw answers r with a response as its handler wrote it.
func (m *Middleware) writeRaw(w http.ResponseWriter, r *http.Request, o *outcome, cs cacheStatus) {
	h := w.Header()
	for k, v := range o.header {
		h[k] = v
	}
	addCacheStatus(h, m.member(cs))
	w.WriteHeader(o.status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(o.body)
	}
}
