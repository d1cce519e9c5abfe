package httpcache

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// byteRange is one byte range-spec (RFC 9110 14.1.2): first-last, first-
// (last < 0), or the suffix -n (first < 0, last = n).
type byteRange struct{ first, last int64 }

// parseSingleRange parses a Range field that asks for exactly one byte
// range (RFC 9110 14.1.1, 14.2). ok is false for anything else: another
// unit, several ranges, a syntax error. Such requests are passed to the
// handler as they are.
func parseSingleRange(lines []string) (byteRange, bool) {
	if len(lines) != 1 {
		return byteRange{}, false
	}
	unit, set, ok := strings.Cut(lines[0], "=")
	if !ok || !strings.EqualFold(unit, "bytes") { // range units are case-insensitive
		return byteRange{}, false
	}
	var spec string
	n := 0
	for len(set) > 0 {
		var item string
		item, set = nextItem(set)
		if item = trimOWS(item); item != "" { // empty list elements are ignored (RFC 9110 5.6.1.2)
			spec = item
			n++
		}
	}
	if n != 1 {
		return byteRange{}, false
	}
	a, b, ok := strings.Cut(spec, "-")
	if !ok {
		return byteRange{}, false
	}
	if a == "" { // suffix-range
		n, ok := parseDigits(b)
		return byteRange{first: -1, last: n}, ok
	}
	first, ok := parseDigits(a)
	if !ok {
		return byteRange{}, false
	}
	if b == "" {
		return byteRange{first: first, last: -1}, true
	}
	last, ok := parseDigits(b)
	if !ok || last < first { // such a range-spec is invalid (RFC 9110 14.1.1)
		return byteRange{}, false
	}
	return byteRange{first: first, last: last}, true
}

// parseDigits parses 1*DIGIT into a non-negative int64.
func parseDigits(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// resolve returns the bytes [start, end] the range selects in a
// representation of size bytes; ok is false when it selects none (RFC 9110
// 14.1.2: a first-pos at or past the end, a zero-length suffix).
func (br byteRange) resolve(size int64) (start, end int64, ok bool) {
	if br.first < 0 {
		if br.last == 0 || size == 0 {
			return 0, 0, false
		}
		return max(size-br.last, 0), size - 1, true
	}
	if br.first >= size {
		return 0, 0, false
	}
	end = size - 1
	if br.last >= 0 {
		end = min(br.last, end)
	}
	return br.first, end, true
}

// rangeApplies says whether a request's Range is answered from a stored
// response: a GET, a stored 200, and an If-Range, if any, that holds (RFC
// 9110 13.1.5: an entity-tag that matches the stored one strongly, or a
// date equal to its Last-Modified). Otherwise the whole response is sent.
func rangeApplies(r *http.Request, status int, h http.Header) (byteRange, bool) {
	if r.Method != http.MethodGet || status != http.StatusOK || len(r.Header["Range"]) == 0 {
		return byteRange{}, false
	}
	if ir := r.Header["If-Range"]; len(ir) > 0 {
		if len(ir) != 1 {
			return byteRange{}, false
		}
		if strings.HasPrefix(ir[0], `"`) || strings.HasPrefix(ir[0], `W/"`) {
			tag, ok := parseETag(ir[0])
			was, had := storedETag(h)
			if !ok || !had || tag.weak || was.weak || tag.opaque != was.opaque {
				return byteRange{}, false
			}
		} else {
			now := time.Now()
			t, ok := parseHTTPDate(ir[0], now)
			lm, had := lastModified(h, now)
			if !ok || !had || !t.Equal(lm) {
				return byteRange{}, false
			}
		}
	}
	return parseSingleRange(r.Header["Range"])
}

// writeRange answers r with part of a stored 200 response: 206 Partial
// Content with Content-Range, or 416 Range Not Satisfiable with the size
// (RFC 9110 14.4, 15.3.7, 15.5.17). The fields of the stored response
// describe the whole representation, and are sent with the 206.
func writeRange(w http.ResponseWriter, br byteRange, e *entry, age, cacheStatus string) {
	h := w.Header()
	size := int64(len(e.body))
	start, end, ok := br.resolve(size)
	if !ok {
		h.Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
		h.Set("Content-Length", "0")
		addCacheStatus(h, cacheStatus)
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		return
	}
	for k, v := range e.header {
		h[k] = v
	}
	h.Set("Content-Range", "bytes "+strconv.FormatInt(start, 10)+"-"+strconv.FormatInt(end, 10)+"/"+strconv.FormatInt(size, 10))
	h.Set("Content-Length", strconv.FormatInt(end-start+1, 10))
	h.Set("Age", age)
	addCacheStatus(h, cacheStatus)
	w.WriteHeader(http.StatusPartialContent)
	_, _ = w.Write(e.body[start : end+1])
}
