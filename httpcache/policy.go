package httpcache

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// directives is a parsed Cache-Control field. Names are lower case; a
// directive without an argument maps to "". The first occurrence of a
// directive wins.
type directives map[string]string

// parseCacheControl parses every Cache-Control line of h (RFC 9111 5.2).
// Quoted arguments may contain commas.
func parseCacheControl(h http.Header) directives {
	lines := h.Values("Cache-Control")
	if len(lines) == 0 {
		return nil
	}
	d := make(directives, 4)
	for _, line := range lines {
		for len(line) > 0 {
			var item string
			item, line = nextItem(line)
			name, arg, _ := strings.Cut(item, "=")
			name = strings.ToLower(strings.TrimSpace(name))
			if name == "" {
				continue
			}
			arg = strings.TrimSpace(arg)
			if len(arg) >= 2 && arg[0] == '"' && arg[len(arg)-1] == '"' {
				arg = strings.ReplaceAll(arg[1:len(arg)-1], `\`, "")
			}
			if _, dup := d[name]; !dup {
				d[name] = arg
			}
		}
	}
	return d
}

// nextItem splits off the first comma-separated item of s, honouring
// quoted strings.
func nextItem(s string) (item, rest string) {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if quoted {
				i++
			}
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				return s[:i], s[i+1:]
			}
		}
	}
	return s, ""
}

func (d directives) has(name string) bool {
	_, ok := d[name]
	return ok
}

// seconds returns a delta-seconds argument (RFC 9111 1.2.2). valid is false
// when the argument is missing or malformed; such a directive must be
// treated as "stale" (RFC 9111 4.2.1).
func (d directives) seconds(name string) (s time.Duration, present, valid bool) {
	v, ok := d[name]
	if !ok {
		return 0, false, false
	}
	if v == "" {
		return 0, true, false
	}
	for _, c := range []byte(v) {
		if c < '0' || c > '9' {
			return 0, true, false
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n > maxDeltaSeconds {
		n = maxDeltaSeconds // RFC 9111 1.2.2: overflow means "a very long time"
	}
	return time.Duration(n) * time.Second, true, true
}

// maxDeltaSeconds caps delta-seconds at 2^31 (RFC 9111 1.2.2).
const maxDeltaSeconds = 1 << 31

// fieldList returns the field names of a qualified private="..." or
// no-cache="..." directive, canonicalized.
func (d directives) fieldList(name string) []string {
	v := d[name]
	if v == "" {
		return nil
	}
	var out []string
	for f := range strings.SplitSeq(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, http.CanonicalHeaderKey(f))
		}
	}
	return out
}

// lifetime is the freshness lifetime of a response for a shared cache (RFC
// 9111 4.2.1): s-maxage, then max-age, then Expires minus Date. explicit is
// false when none of them is present; a present but malformed one yields a
// zero lifetime (the response is stale at once).
func lifetime(cc directives, h http.Header, date time.Time) (life time.Duration, explicit bool) {
	if s, present, valid := cc.seconds("s-maxage"); present {
		if !valid {
			return 0, true
		}
		return s, true
	}
	if s, present, valid := cc.seconds("max-age"); present {
		if !valid {
			return 0, true
		}
		return s, true
	}
	if exp := h.Get("Expires"); exp != "" {
		t, err := http.ParseTime(exp)
		if err != nil || !t.After(date) {
			return 0, true // invalid dates, such as "0", mean already expired
		}
		return t.Sub(date), true
	}
	return 0, false
}

// initialAge is the corrected initial age of a response received at now
// (RFC 9111 4.2.3). The handler runs in this process, so the response delay
// is nil.
func initialAge(h http.Header, date, now time.Time) time.Duration {
	apparent := max(now.Sub(date), 0)
	var age time.Duration
	if v := h.Get("Age"); v != "" {
		if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil && n > 0 {
			age = time.Duration(min(n, maxDeltaSeconds)) * time.Second
		}
	}
	return max(apparent, age)
}

// hopByHop are the fields a cache must not store or forward (RFC 9110
// 7.6.1), besides those listed in Connection.
var hopByHop = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// defaultStatuses are the status codes cacheable by default (RFC 9110
// 15.1), less 206: this cache does not combine partial content.
var defaultStatuses = []int{200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501}

// isServerError reports the statuses that count as an error for
// stale-if-error (RFC 5861 4).
func isServerError(status int) bool {
	switch status {
	case 500, 502, 503, 504:
		return true
	}
	return false
}
