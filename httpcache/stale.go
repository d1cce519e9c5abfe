package httpcache

import (
	"errors"
	"fmt"
	"time"

	"github.com/stampede-go/stampede"
)

// A stored response's life past its freshness lifetime, measured in how
// long past it is (its age minus its lifetime):
//
//	[0, swr)        served stale at once, while one handler run across the
//	                fleet revalidates it in the background (RFC 5861 3)
//	[swr, keepEnd)  kept in Redis, never served as it is: a request waits
//	                while one run across the fleet revalidates it (RFC 9111
//	                4.3.1); within its error window (stale-if-error, or
//	                Options.StaleOnError where allowed) a run that fails is
//	                answered with it (RFC 5861 4)
//
// keepEnd is the longest of swr, the error window and, for a response with
// a validator, Options.Keep. These are the core's Entry.Stale and
// Entry.Keep. Without Redis the core keeps nothing past its stale window
// (see storage).

// errorRetry is how long a stale copy served in place of a failed run is
// served as it is, fleet-wide, before one run is tried again in the
// background: a failing origin gets about one run per errorRetry, and no
// request waits for one.
const errorRetry = time.Second

// ErrRevalidationFailed is the error ErrorHandler receives, wrapping the
// run's, when a stale response that must not be served stale
// (must-revalidate, proxy-revalidate, no-cache; RFC 9111 4.2.4) could not
// be revalidated: the run panicked, timed out or wrote an incomplete
// response. The default ErrorHandler answers 504 Gateway Timeout.
var ErrRevalidationFailed = errors.New("httpcache: a response that must be revalidated could not be")

// staleUse says what the directives cc let a shared cache do with a
// response once it is stale (RFC 9111 4.2.4): never serve it stale
// (must-revalidate, proxy-revalidate, no-cache), and whether
// Options.StaleOnError applies, which it does not beside s-maxage either:
// an operator's setting is not the origin's permission. The origin's own
// stale-while-revalidate and stale-if-error beside s-maxage are honoured,
// as CDNs do.
func staleUse(cc directives) (mustRevalidate, staleOnError bool) {
	mustRevalidate = cc.has("must-revalidate") || cc.has("proxy-revalidate") || cc.has("no-cache")
	return mustRevalidate, !mustRevalidate && !cc.has("s-maxage")
}

// errorWindow is how long past its freshness e may be served in place of a
// failed run: its stale-if-error, or Options.StaleOnError where e allows it.
func (m *Middleware) errorWindow(e *entry) time.Duration {
	if m.opts.StaleOnError > e.sie {
		cc, _ := m.governing(e.header)
		if _, soe := staleUse(cc); soe {
			return m.opts.StaleOnError
		}
	}
	return e.sie
}

// mustRevalidate reports whether e may never be served stale.
func (m *Middleware) mustRevalidate(e *entry) bool {
	cc, _ := m.governing(e.header)
	must, _ := staleUse(cc)
	return must
}

// keepEnd is how long past its freshness e is kept in Redis, servable
// until max(e.swr, errEnd).
func (m *Middleware) keepEnd(e *entry, errEnd time.Duration) time.Duration {
	end := max(e.swr, errEnd)
	if _, ok := storedETag(e.header); ok || len(e.header["Last-Modified"]) > 0 {
		end = max(end, m.opts.Keep)
	}
	return end
}

// storage is how the core stores e, fresh for ttl more: stale for e.swr
// past it, then kept until keepEnd. Without Redis the core keeps nothing
// past its stale window, so the stale window then covers the error window
// too, and a request past e.swr revalidates in its own process (see
// serveResult).
func (m *Middleware) storage(e *entry, ttl, errEnd time.Duration) stampede.Entry {
	ent := stampede.Entry{TTL: ttl, Stale: e.swr, Keep: m.keepEnd(e, errEnd) - e.swr}
	if !m.shared {
		ent.Stale, ent.Keep = max(e.swr, errEnd), 0
	}
	if ent.Stale == 0 {
		ent.Stale = -1 // none, rather than the core's default
	}
	return ent
}

// servedOnError returns the copy of the stale response e, now age old, that
// answers a run that failed with status (0 when there was no response),
// and how the core stores it: served as it is for errorRetry, fleet-wide,
// then stale for the rest of what may be served (so one request starts one
// run in the background), then kept as e was. ok is false when e may not
// be served: it is past its error window and its stale-while-revalidate
// window.
func (m *Middleware) servedOnError(e *entry, age time.Duration, status int) (*entry, stampede.Entry, bool) {
	age = clampDuration(age)
	staleFor := age - e.life
	errEnd := m.errorWindow(e)
	servable := max(e.swr, errEnd) - staleFor
	if staleFor < 0 || servable < time.Millisecond {
		return nil, stampede.Entry{}, false
	}
	cp := *e // entries are never modified: the copy shares header and body
	cp.initialAge, cp.fetch, cp.fwdStatus = age, fetchFailed, status
	ttl := min(errorRetry, servable)
	ent := stampede.Entry{TTL: ttl, Stale: servable - ttl, Keep: m.keepEnd(e, errEnd) - max(e.swr, errEnd)}
	if !m.shared {
		ent.Keep = 0
	}
	if ent.Stale == 0 {
		ent.Stale = -1
	}
	return &cp, ent, true
}

// staleDetail says, for Cache-Status, what let the stale response e,
// staleFor past its freshness, be served: stale-while-revalidate, or, for a
// copy served in place of a failed run, the response's stale-if-error or
// the operator's StaleOnError.
func (m *Middleware) staleDetail(e *entry, staleFor time.Duration) string {
	switch {
	case e.fetch == fetchFailed && staleFor <= e.sie:
		return "stale-if-error"
	case e.fetch == fetchFailed && staleFor <= m.errorWindow(e):
		return "stale-on-error"
	}
	return "stale-while-revalidate"
}

// revalidationFailed wraps the error of a failed run that revalidated a
// response that must not be served stale.
func revalidationFailed(err error) error {
	return fmt.Errorf("%w: %w", ErrRevalidationFailed, err)
}
