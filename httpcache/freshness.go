package httpcache

import (
	"net/http"
	"strconv"
	"time"
)

// maxLifetime bounds every lifetime, stale window and age an entry holds:
// 2^31 seconds (about 68 years), the largest delta-seconds value a cache
// must handle (RFC 9111 1.2.2). A longer one, such as an Expires in the
// year 2286, is taken as this long. With the bound, every duration an
// entry holds, and their sum, fits the entry codec and the core's header,
// so every entry written can be read back.
const maxLifetime = maxDeltaSeconds * time.Second

// clampDuration bounds d to [0, maxLifetime] and truncates it to whole
// milliseconds, the precision entries are stored with.
func clampDuration(d time.Duration) time.Duration {
	return min(max(d, 0), maxLifetime).Truncate(time.Millisecond)
}

// responseDate is the response's Date when it is one valid HTTP-date;
// otherwise the time it was received stands in (RFC 9110 6.6.1), and ok is
// false.
func responseDate(h http.Header, now time.Time) (date time.Time, ok bool) {
	if v := h["Date"]; len(v) == 1 {
		if d, ok := parseHTTPDate(v[0], now); ok {
			return d, true
		}
	}
	return now, false
}

// lifetime is the freshness lifetime of a response for a shared cache (RFC
// 9111 4.2.1): s-maxage, then max-age, then (when useExpires) Expires minus
// Date. explicit is false when none of them is present. A present but
// malformed or ambiguous one makes the response stale at once: an invalid
// Expires, "0" among them (RFC 9111 5.3), or more than one Expires line
// (RFC 9111 4.2.1).
func lifetime(cc directives, useExpires bool, h http.Header, date, now time.Time) (life time.Duration, explicit bool) {
	for _, name := range []string{"s-maxage", "max-age"} {
		if s, present, valid := cc.seconds(name); present {
			if !valid {
				return 0, true
			}
			return s, true
		}
	}
	exp := h["Expires"]
	if !useExpires || len(exp) == 0 {
		return 0, false
	}
	if len(exp) > 1 {
		return 0, true
	}
	t, ok := parseHTTPDate(exp[0], now)
	if !ok || !t.After(date) {
		return 0, true
	}
	return clampDuration(t.Sub(date)), true
}

// heuristicMax caps a heuristic lifetime.
const heuristicMax = 24 * time.Hour

// heuristicLifetime is fraction of the time between Last-Modified and
// Date, capped at heuristicMax (RFC 9111 4.2.2); ok is false without a
// valid Last-Modified before Date.
func heuristicLifetime(h http.Header, date, now time.Time, fraction float64) (time.Duration, bool) {
	lm, ok := lastModified(h, now)
	if !ok || !lm.Before(date) || fraction <= 0 {
		return 0, false
	}
	since := date.Sub(lm).Seconds()
	life := min(time.Duration(since*fraction*float64(time.Second)), heuristicMax)
	life = clampDuration(life)
	return life, life > 0
}

// lastModified is the Last-Modified of h when it is one valid HTTP-date.
func lastModified(h http.Header, now time.Time) (time.Time, bool) {
	if v := h["Last-Modified"]; len(v) == 1 {
		return parseHTTPDate(v[0], now)
	}
	return time.Time{}, false
}

// parseAge reads the Age field (RFC 9111 5.1): the first member of its
// first line, a non-negative integer of seconds, at most 2^31. ok is false
// when the field is absent or that member is not such an integer, in which
// case the field is ignored.
func parseAge(h http.Header) (time.Duration, bool) {
	lines := h["Age"]
	if len(lines) == 0 {
		return 0, false
	}
	first, _ := nextItem(lines[0])
	first = trimOWS(first)
	if first == "" {
		return 0, false
	}
	for _, c := range []byte(first) {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(first, 10, 64)
	if err != nil || n > maxDeltaSeconds {
		n = maxDeltaSeconds
	}
	return time.Duration(n) * time.Second, true
}

// initialAge is the corrected initial age of a response received at now
// (RFC 9111 4.2.3), within [0, maxLifetime]. The handler runs in this
// process, so the response delay is nil.
func initialAge(h http.Header, date, now time.Time) time.Duration {
	age, _ := parseAge(h)
	return clampDuration(max(now.Sub(date), age))
}
