package httpcache

import (
	"cmp"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/stampede-go/stampede"
)

// The fwd values of Cache-Status this cache sends (RFC 9211 2.2).
const (
	fwdBypass   = "bypass"    // the cache does not handle this request
	fwdMethod   = "method"    // the method must go to the handler
	fwdURIMiss  = "uri-miss"  // nothing stored for the URL
	fwdVaryMiss = "vary-miss" // the URL's responses vary, and not this variant
	fwdStale    = "stale"     // a stored response, stale
	fwdRequest  = "request"   // a fresh stored response the request would not take
)

// cacheStatus is this cache's member of the Cache-Status field (RFC 9211).
type cacheStatus struct {
	hit       bool
	fwd       string
	fwdStatus int // the status the handler gave this request's run; 0: none
	ttl       time.Duration
	hasTTL    bool
	stored    bool
	collapsed bool   // this request shared another request's handler run
	detail    string // why: not stored, stale served, bypassed
}

// member renders cs, the outcome of r, with the cache's name, parameters
// in a fixed order, and reports it to the Observer. Every response gets
// one member.
func (m *Middleware) member(r *http.Request, cs cacheStatus) string {
	if m.opts.Observer != nil {
		m.observe(r, cs)
	}
	var buf [128]byte // on the stack: the member is copied out once, as a string
	b := buf[:0]
	b = append(b, m.statusName...)
	if cs.hit {
		b = append(b, "; hit"...)
	}
	if cs.fwd != "" {
		b = append(b, "; fwd="...)
		b = append(b, cs.fwd...)
	}
	if cs.fwdStatus != 0 {
		b = append(b, "; fwd-status="...)
		b = strconv.AppendInt(b, int64(cs.fwdStatus), 10)
	}
	if cs.hasTTL {
		b = append(b, "; ttl="...)
		b = strconv.AppendInt(b, int64(cs.ttl/time.Second), 10)
	}
	if cs.collapsed {
		b = append(b, "; collapsed"...)
	}
	if cs.stored {
		b = append(b, "; stored"...)
	}
	if cs.detail != "" {
		b = append(b, "; detail="...)
		b = append(b, cs.detail...)
	}
	return string(b)
}

// addCacheStatus adds this cache's member to the Cache-Status of h, after
// those of the caches nearer the origin (RFC 9211 2: the field value
// already there is kept). The slice may be shared with a stored entry, so
// it is never appended to in place.
func addCacheStatus(h http.Header, member string) {
	h["Cache-Status"] = append(slices.Clip(h["Cache-Status"]), member)
}

// observe reports the outcome of r to the Observer: one event per request
// saying how it was answered, and EventHTTPNotStored beside it for the
// request whose run produced a response that was not stored.
func (m *Middleware) observe(r *http.Request, cs cacheStatus) {
	e := stampede.Event{Namespace: m.opts.Namespace, Key: primaryKey(r)}
	stale := cs.hasTTL && cs.ttl <= 0 // a stale copy served
	switch {
	case cs.fwd == fwdBypass || cs.fwd == fwdMethod:
		e.Kind, e.Reason = stampede.EventHTTPBypass, cmp.Or(cs.detail, cs.fwd)
	case stale:
		e.Kind, e.Reason = stampede.EventHTTPStale, cs.detail
	case cs.hit:
		e.Kind = stampede.EventHTTPHit
	case cs.fwdStatus == http.StatusNotModified:
		e.Kind, e.Reason = stampede.EventHTTPRevalidated, cs.fwd
	default:
		e.Kind, e.Reason = stampede.EventHTTPMiss, cs.fwd
	}
	ctx := r.Context()
	m.opts.Observer.Observe(ctx, e)
	if e.Kind == stampede.EventHTTPMiss && !cs.stored && !cs.collapsed && cs.detail != "" {
		e.Kind, e.Reason = stampede.EventHTTPNotStored, cs.detail
		m.opts.Observer.Observe(ctx, e)
	}
}
