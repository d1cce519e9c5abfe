package httpcache

import (
	"net/http"
	"strconv"
)

// defaultTargetedFields is the target list of RFC 9213 2.1 unless
// Options.TargetedFields says otherwise: this is a cache operating on
// behalf of the origin, as a CDN does (RFC 9213 3).
var defaultTargetedFields = []string{"Cdn-Cache-Control"}

// governing returns the cache directives that govern this cache for a
// response with header h: those of the first field on the target list
// with a valid, non-empty value (RFC 9213 2.1), or else Cache-Control's.
// targeted reports the former, in which case Expires does not count either.
func (m *Middleware) governing(h http.Header) (cc directives, targeted bool) {
	for _, name := range m.targets {
		if lines := h[name]; len(lines) > 0 {
			if d, ok := parseTargeted(lines); ok {
				return d, true
			}
		}
	}
	return parseCacheControl(h), false
}

// parseTargeted reads a targeted field (RFC 9213 2.2): a Dictionary
// Structured Field whose members are cache directives. A directive without
// a value is Boolean true; delta-seconds are Integers; private and no-cache
// carry their field lists as Strings. ok is false, and the field is to be
// ignored, when it is empty, does not parse, or gives a directive this
// cache implements a value of the wrong type (max-age="60", no-store=5).
// Unknown directives are kept when their value has a form Cache-Control
// could carry (Boolean, Integer, String, Token) and dropped otherwise;
// parameters are ignored.
func parseTargeted(lines []string) (directives, bool) {
	members, ok := parseSFDictionary(lines)
	if !ok || len(members) == 0 {
		return nil, false
	}
	d := make(directives, len(members))
	for _, m := range members {
		it := m.item
		switch m.key {
		case "max-age", "s-maxage", "stale-while-revalidate", "stale-if-error":
			if it.kind != sfInteger || it.i < 0 {
				return nil, false
			}
		case "no-store", "must-revalidate", "proxy-revalidate", "public", "no-transform", "must-understand", "immutable":
			if it.kind != sfBoolean {
				return nil, false
			}
		case "private", "no-cache":
			if it.kind != sfBoolean && it.kind != sfString {
				return nil, false
			}
		}
		switch it.kind {
		case sfBoolean:
			if it.b {
				d[m.key] = directive{}
			}
		case sfInteger:
			d[m.key] = directive{arg: strconv.FormatInt(it.i, 10), hasArg: true}
		case sfString, sfToken:
			d[m.key] = directive{arg: it.s, hasArg: true}
		}
	}
	return d, true
}
