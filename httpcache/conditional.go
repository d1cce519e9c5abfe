package httpcache

import (
	"net/http"
	"strings"
	"time"
)

// entityTag is a parsed entity-tag (RFC 9110 8.8.3).
type entityTag struct {
	opaque string // with its quotes
	weak   bool
}

// parseETag parses [ "W/" ] DQUOTE *etagc DQUOTE, strictly: an unquoted
// tag, or one with a lower-case "w/", is no entity-tag and matches nothing.
func parseETag(s string) (entityTag, bool) {
	weak := strings.HasPrefix(s, "W/")
	if weak {
		s = s[2:]
	}
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return entityTag{}, false
	}
	for i := 1; i < len(s)-1; i++ {
		if c := s[i]; c != 0x21 && (c < 0x23 || c == 0x7f) {
			return entityTag{}, false
		}
	}
	return entityTag{opaque: s, weak: weak}, true
}

// storedETag is the entity-tag of a stored response's header, if it has
// one valid ETag.
func storedETag(h http.Header) (entityTag, bool) {
	if v := h["Etag"]; len(v) == 1 {
		return parseETag(v[0])
	}
	return entityTag{}, false
}

// matchAny evaluates an If-None-Match list against tag with the weak
// comparison (RFC 9110 8.8.3.2, 13.1.2): "*" matches any stored response,
// and malformed members match nothing.
func matchAny(lines []string, tag entityTag, hasTag bool) bool {
	for _, line := range lines {
		for len(line) > 0 {
			var item string
			item, line = nextItem(line)
			item = trimOWS(item)
			if item == "*" {
				return true
			}
			if t, ok := parseETag(item); ok && hasTag && t.opaque == tag.opaque {
				return true
			}
		}
	}
	return false
}

// notModified decides whether a request may be answered 304 Not Modified
// from a stored response, which holds header h and status (RFC 9111
// 4.3.2). If-None-Match, when present, decides alone (weak comparison);
// otherwise a valid If-Modified-Since is compared with the stored
// Last-Modified, or the stored Date when there is none. Only a 2xx stored
// response is compared at all (RFC 9110 13.2.1). If-Match and
// If-Unmodified-Since do not apply to a cache (RFC 9111 4.3.2): such
// requests are passed to the handler (see bypassReason).
func notModified(r *http.Request, status int, h http.Header) bool {
	if status < 200 || status > 299 {
		return false
	}
	if inm := r.Header["If-None-Match"]; len(inm) > 0 {
		tag, ok := storedETag(h)
		return matchAny(inm, tag, ok)
	}
	ims := r.Header["If-Modified-Since"]
	if len(ims) != 1 { // absent, or more than one member (RFC 9110 13.1.3)
		return false
	}
	now := time.Now()
	since, ok := parseHTTPDate(ims[0], now)
	if !ok {
		return false
	}
	modified, ok := lastModified(h, now)
	if !ok {
		if modified, ok = responseDate(h, now); !ok {
			return false
		}
	}
	return !modified.After(since)
}

// notModifiedFields are the stored fields a 304 repeats (RFC 9110 15.4.5),
// besides the targeted cache-control fields, which guide the caches
// downstream as Cache-Control does.
var notModifiedFields = []string{"Cache-Control", "Content-Location", "Date", "Etag", "Expires", "Last-Modified", "Vary"}
