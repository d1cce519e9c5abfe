package httpcache

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/stampede-go/stampede"
)

// classify decides whether a response may be stored in a shared cache (RFC
// 9111 3 and 3.5), and for how long; it returns the entry to store, or the
// reason it is not stored. The directives that govern it are those of a
// targeted field when the response has one with a valid value (RFC 9213),
// else Cache-Control's.
func (m *Middleware) classify(r *http.Request, status int, h http.Header, body []byte, now time.Time) (*entry, stampede.Entry, string) {
	if !m.statuses[status] {
		return nil, stampede.Entry{}, "status"
	}
	cc, targeted := m.governing(h)
	names, star := varyNames(h)
	switch {
	case cc.has("no-store"):
		return nil, stampede.Entry{}, "no-store"
	case cc.unqualified("private"):
		return nil, stampede.Entry{}, "private"
	case cc.unqualified("no-cache"):
		return nil, stampede.Entry{}, "no-cache"
	case len(h["Set-Cookie"]) > 0 && !m.opts.CacheSetCookie:
		return nil, stampede.Entry{}, "set-cookie"
	case star:
		return nil, stampede.Entry{}, "vary-star"
	case r.Header.Get("Authorization") != "" &&
		!cc.has("public") && !cc.has("s-maxage") && !cc.has("must-revalidate"):
		return nil, stampede.Entry{}, "authorization"
	}
	date, dated := responseDate(h, now)
	life, explicit := lifetime(cc, !targeted, h, date, now)
	if !explicit {
		var ok bool
		if heuristicallyCacheable(status) || cc.has("public") {
			life, ok = heuristicLifetime(h, date, now, m.opts.HeuristicFraction)
		}
		switch {
		case ok:
		case m.opts.DefaultTTL > 0:
			life = m.opts.DefaultTTL
		default:
			return nil, stampede.Entry{}, "no-freshness"
		}
	}
	age := initialAge(h, date, now)
	ttl := life - age
	if ttl < time.Millisecond {
		return nil, stampede.Entry{}, "stale"
	}
	var swr, sie, soe time.Duration
	if mustRevalidate, staleOnError := staleUse(cc); !mustRevalidate {
		swr, _, _ = cc.seconds("stale-while-revalidate")
		sie, _, _ = cc.seconds("stale-if-error")
		if staleOnError {
			soe = m.opts.StaleOnError
		}
	}

	sh := storedHeader(h, cc)
	sh.Set("Content-Length", strconv.Itoa(len(body)))
	if !dated {
		sh.Set("Date", now.UTC().Format(http.TimeFormat))
	}
	e := &entry{kind: kindResponse, status: status, header: sh, body: body,
		initialAge: age, life: life, swr: swr, sie: sie, vary: names}
	return e, m.storage(e, ttl, max(sie, soe)), ""
}

// storedHeader is the header of the copy of a response a shared cache
// keeps: without hop-by-hop fields and those Connection names (RFC 9110
// 7.6.1), the fields of a qualified private or no-cache (RFC 9111
// 5.2.2.4, 5.2.2.7), Set-Cookie, Age (recomputed when served) and
// Cache-Status (which describes how one request was handled).
func storedHeader(h http.Header, cc directives) http.Header {
	sh := h.Clone()
	for _, f := range hopByHop {
		delete(sh, f)
	}
	for _, line := range h["Connection"] {
		for f := range strings.SplitSeq(line, ",") {
			sh.Del(trimOWS(f))
		}
	}
	for _, f := range cc.fieldList("private") {
		delete(sh, f)
	}
	for _, f := range cc.fieldList("no-cache") {
		delete(sh, f)
	}
	delete(sh, "Set-Cookie")
	delete(sh, "Age")
	delete(sh, "Cache-Status")
	return sh
}
