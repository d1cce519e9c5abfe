// Package httpcache is a net/http caching middleware for a fleet of servers
// sharing one Redis, built on the stampede core: when a URL's response is
// missing, one handler run across the whole fleet fills it, and every
// concurrent request, on every server, gets that response.
//
//	mw, err := httpcache.New(rdb, httpcache.Options{})
//	...
//	http.ListenAndServe(":8080", mw.Handler(mux))
//
// It is a shared cache in the sense of RFC 9111: freshness comes from
// s-maxage, max-age or Expires (or Options.DefaultTTL); stale-while-revalidate
// and stale-if-error (RFC 5861) are honoured; responses that are private, set
// cookies, answer authorized requests without permission, vary on everything
// or are too big are never stored, and the requests that waited for one run
// the handler themselves. Every response carries Cache-Status (RFC 9211);
// every cached one carries Age.
package httpcache
