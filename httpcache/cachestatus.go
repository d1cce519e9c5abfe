package httpcache

import (
	"net/http"
	"slices"
	"strconv"
	"time"
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

// member renders cs with the cache's name, parameters in a fixed order.
func (m *Middleware) member(cs cacheStatus) string {
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
