package httpcache

import (
	"errors"
	"net/http"
	"time"

	"github.com/stampede-go/stampede"
)

// revalidateFor answers r with a handler run made conditional on the
// stored response e (RFC 9111 4.3.1), for this request: e is fresh but the
// request's own Cache-Control refuses it (fwd is fwdRequest, see
// Options.HonorRequestCacheControl), or e is stale past what may be served
// as it is (fwd is fwdStale), which happens without Redis (see storage).
// The run is shared with the other revalidations of key in this process
// (see execute). Its response is served, not stored, unless the core
// is revalidating the same response meanwhile: the core replaces a stored
// response only through its own loads, which a fresh one does not get.
func (m *Middleware) revalidateFor(w http.ResponseWriter, r *http.Request, c *call, key string, e *entry, age time.Duration, fwd string) {
	c2 := &call{m: m, next: c.next, r: r, w: w, variant: c.variant, primary: c.primary}
	o := m.execute(r.Context(), c2, e, key)
	c2.finish()
	switch {
	case o.stream != nil && o.owner == c2:
		o.stream.copyTo(w, r, m.member(r, cacheStatus{fwd: fwd, detail: o.reason}))
		return
	case errors.Is(o.err, stampede.ErrClosed):
		m.bypass(w, r, c.next, "closed")
		return
	case r.Context().Err() != nil:
		return // the client left
	}
	shared := o.owner != c2
	switch {
	case o.err != nil || isServerError(o.status):
		stale := e
		if fwd != fwdStale {
			stale = nil // the client refused a fresh response: it gets the failure
		}
		cp, _, err := m.failed(o, stale, age)
		if cp == nil {
			m.serveError(w, r, err, shared, fwd)
			return
		}
		staleFor := cp.initialAge - cp.life
		m.writeEntry(w, r, cp, cp.initialAge, cacheStatus{fwd: fwd, fwdStatus: cp.fwdStatus, ttl: -staleFor, hasTTL: true,
			collapsed: shared, detail: m.staleDetail(cp, staleFor)})
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
