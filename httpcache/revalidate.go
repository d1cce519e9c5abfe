package httpcache

import (
	"net/http"
	"slices"
	"strings"
	"time"
)

// addValidators makes h, the header of a request the cache sends to
// validate a stored response, conditional on that response (RFC 9111
// 4.3.1): its entity-tag in If-None-Match, and its Last-Modified in
// If-Modified-Since. It reports whether the response had a validator.
func addValidators(h http.Header, stored *entry, now time.Time) bool {
	_, hasTag := storedETag(stored.header)
	if hasTag {
		h["If-None-Match"] = []string{stored.header["Etag"][0]}
	}
	_, hasLM := lastModified(stored.header, now)
	if hasLM {
		h["If-Modified-Since"] = []string{stored.header["Last-Modified"][0]}
	}
	return hasTag || hasLM
}

// freshen applies a 304 Not Modified to the stored response it validates
// and returns the header the stored response has from now on.
//
// RFC 9111 4.3.4 says which stored response a 304 selects: the one with
// the same strong entity-tag when the 304 has one; the one whose
// entity-tag matches weakly when its tag is weak; the one with the same
// Last-Modified when it has no tag but a Last-Modified; and, when it has
// no validator at all, a stored response that has none either. ok is false
// when the 304 does not select stored: the stored response may not be
// used, and the request must be made again without conditions.
//
// RFC 9111 3.2 says how: every field of the 304 replaces the stored
// values of that field, except those never stored (hop-by-hop fields and
// the fields Connection names) and Content-Length, which describes the
// stored body. The 304's Age and Date replace the old ones too, so that
// the stored response's age starts again from the 304; a 304 without a
// Date is given the time it was received (RFC 9110 6.6.1).
func freshen(stored *entry, h304 http.Header, now time.Time) (http.Header, bool) {
	if !selects(stored.header, h304, now) {
		return nil, false
	}
	skip := append(slices.Clip(hopByHop), "Content-Length")
	for _, line := range h304["Connection"] {
		for f := range strings.SplitSeq(line, ",") {
			skip = append(skip, http.CanonicalHeaderKey(trimOWS(f)))
		}
	}
	h := stored.header.Clone()
	for k, v := range h304 {
		if !slices.Contains(skip, k) {
			h[k] = slices.Clone(v)
		}
	}
	if _, ok := responseDate(h304, now); !ok {
		h["Date"] = []string{now.UTC().Format(http.TimeFormat)}
	}
	return h, true
}

// selects reports whether a 304 with header h304 selects the stored
// response with header stored (RFC 9111 4.3.4).
func selects(stored, h304 http.Header, now time.Time) bool {
	if len(h304["Etag"]) > 0 {
		tag, ok := storedETag(h304)
		was, had := storedETag(stored)
		switch {
		case !ok || !had || tag.opaque != was.opaque:
			return false
		case !tag.weak:
			return !was.weak // a strong validator matches only a strong one
		}
		return true
	}
	if len(h304["Last-Modified"]) > 0 {
		lm, ok := lastModified(h304, now)
		was, had := lastModified(stored, now)
		return ok && had && lm.Equal(was)
	}
	_, hadTag := stored["Etag"]
	_, hadLM := stored["Last-Modified"]
	return !hadTag && !hadLM
}
