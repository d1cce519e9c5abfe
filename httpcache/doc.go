// Package httpcache is a net/http caching middleware for a fleet of servers
// sharing one Redis, built on the stampede core: when a URL's response is
// missing, one handler run across the whole fleet fills it, and every
// concurrent request, on every server, gets that response.
//
//	mw, err := httpcache.New(rdb, httpcache.Options{})
//	...
//	http.ListenAndServe(":8080", mw.Handler(mux))
//
// It is a shared cache in the sense of RFC 9111. Freshness comes from
// s-maxage, max-age or Expires, read strictly (an invalid Expires means
// expired), or from CDN-Cache-Control and the other targeted fields of
// RFC 9213 when present; optionally from a heuristic or Options.DefaultTTL.
// stale-while-revalidate and stale-if-error (RFC 5861) are honoured, and
// Options.StaleOnError serves stale copies on errors where the response
// allows it. Responses that are private, set cookies, answer authorized
// requests without permission, vary on everything or are too big are never
// stored, and the requests that waited for one run the handler themselves.
//
// A stored response with a validator is kept past its freshness
// (Options.Keep) and revalidated once across the fleet: one handler run with
// If-None-Match or If-Modified-Since, whose 304 freshens it for every server
// (RFC 9111 4.3.4). A revalidation that fails is answered with the stale
// response where stale-if-error or StaleOnError allow it, and with a 504
// for must-revalidate (RFC 9111 4.2.4). Conditional requests from clients
// are answered from stored responses. A single byte range is served from a
// stored response; 1xx responses such as 103 Early Hints reach the client
// whose request runs the handler. Every response carries Cache-Status (RFC
// 9211), collapsed for the requests that waited for another's run, on any
// server; every cached one carries Age.
//
// Every handler run whose response is recorded is a loader of the core
// cache: the core's single-flight, lease, detached context and panic
// catching apply to it.
package httpcache
