package httpcache

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/stampede-go/stampede"
)

// serveResult answers r with a stored response, fresh or stale, found in
// memory or in Redis, or shared with the handler run another request made
// for it. start is when r's lookup began.
func (m *Middleware) serveResult(w http.ResponseWriter, r *http.Request, c *call, key string, res stampede.Result[*entry], start time.Time) {
	e := res.Value
	age := e.initialAge + res.Age
	if collapsed(res, time.Since(start)) {
		m.serveCollapsed(w, r, c, e, age, res.Source != stampede.SourceLoader || res.Stored)
		return
	}
	staleFor := age - e.life
	switch {
	case m.opts.HonorRequestCacheControl && refuses(r, age, e.life):
		fwd := fwdRequest
		if staleFor > 0 {
			fwd = fwdStale
		}
		m.revalidateFor(w, r, c, key, e, age, fwd)
	case staleFor <= 0:
		m.writeEntry(w, r, e, age, cacheStatus{hit: true, ttl: e.life - age, hasTTL: true})
	case staleFor <= e.swr || e.fetch == fetchFailed && staleFor <= m.errorWindow(e):
		// Within stale-while-revalidate, or the copy served in place of a
		// run that failed: one run across the fleet is revalidating it.
		m.writeEntry(w, r, e, age, cacheStatus{hit: true, ttl: -staleFor, hasTTL: true, detail: m.staleDetail(e, staleFor)})
	default:
		// Stale past what may be served as it is, which happens without
		// Redis, whose stale window covers the error window too (see
		// storage), and for entries written by earlier releases.
		m.revalidateFor(w, r, c, key, e, age, fwdStale)
	}
}

// collapsed reports whether a lookup that took elapsed and returned res
// waited for another request's handler run (RFC 9211 2.6): it shared a run
// of this process, or it waited (res.Waited) and the stored response it
// got is younger than the request, so it was stored meanwhile, by this
// server or another. Waited alone also covers a request that only shared
// another's read of Redis, which is a hit.
func collapsed(res stampede.Result[*entry], elapsed time.Duration) bool {
	return res.Source == stampede.SourceLoader || res.Waited && res.Age < elapsed
}

// serveCollapsed answers a request that waited for another request's
// handler run with the response that run stored, or the stale copy it
// served in its place. stored says the response was stored.
func (m *Middleware) serveCollapsed(w http.ResponseWriter, r *http.Request, c *call, e *entry, age time.Duration, stored bool) {
	cs := cacheStatus{fwd: c.missFwd(), fwdStatus: e.runStatus(), stored: stored, collapsed: true}
	switch e.fetch {
	case fetchRevalidated:
		cs.fwd = fwdStale
	case fetchFailed:
		staleFor := age - e.life
		cs.fwd, cs.stored, cs.ttl, cs.hasTTL, cs.detail = fwdStale, false, -staleFor, true, m.staleDetail(e, staleFor)
	}
	m.writeEntry(w, r, e, age, cs)
}

// serveOwn answers a request with the outcome of its own handler run.
// stored says whether the core wrote the response to the cache; err is
// what the core returned for the run.
func (m *Middleware) serveOwn(w http.ResponseWriter, r *http.Request, c *call, o *outcome, stored bool, err error) {
	fwd := o.fwd(c)
	switch {
	case o.stream != nil:
		o.stream.copyTo(w, r, m.member(r, cacheStatus{fwd: fwd, detail: o.reason}))
	case o.stale != nil: // the run failed; the stale copy answers for it
		staleFor := o.stale.initialAge - o.stale.life
		m.writeEntry(w, r, o.stale, o.stale.initialAge, cacheStatus{fwd: fwd, fwdStatus: o.stale.fwdStatus,
			ttl: -staleFor, hasTTL: true, detail: m.staleDetail(o.stale, staleFor)})
	case o.err != nil:
		if !errors.Is(err, ErrRevalidationFailed) {
			err = o.err
		}
		m.serveError(w, r, err, false, fwd)
	case o.e != nil:
		// The stored copy, plus the fields kept out of it that are this
		// client's own (Set-Cookie, private="..." and no-cache="..." fields).
		for k, v := range o.header {
			if _, stored := o.e.header[k]; !stored && !slices.Contains(hopByHop, k) && k != "Age" {
				w.Header()[k] = v
			}
		}
		m.writeEntry(w, r, o.e, o.e.initialAge, cacheStatus{fwd: fwd, fwdStatus: o.fwdStatus(), stored: stored})
	default: // not storable, or a server error, never stored
		m.writeRaw(w, r, o, cacheStatus{fwd: fwd, fwdStatus: o.fwdStatus(), detail: o.reason})
	}
}

// serveError answers a request whose response could not be had. collapsed
// says the request shared another request's run.
func (m *Middleware) serveError(w http.ResponseWriter, r *http.Request, err error, collapsed bool, fwd string) {
	var oe *originError
	if errors.As(err, &oe) { // the handler's own 5xx
		cs := cacheStatus{fwd: fwd, fwdStatus: oe.o.status, collapsed: collapsed}
		if !collapsed {
			m.writeRaw(w, r, oe.o, cs)
			return
		}
		// Another request's response: the waiters share its status and
		// body, never what was meant for that one client.
		cc := parseCacheControl(oe.o.header)
		if !cc.has("private") && !cc.has("no-store") {
			shared := *oe.o
			shared.header = oe.o.header.Clone()
			shared.header.Del("Set-Cookie")
			m.writeRaw(w, r, &shared, cs)
			return
		}
	}
	if r.Context().Err() != nil {
		return // the client left
	}
	detail := "error"
	if errors.Is(err, ErrRevalidationFailed) {
		detail = "must-revalidate"
	}
	addCacheStatus(w.Header(), m.member(r, cacheStatus{fwd: fwd, collapsed: collapsed, detail: detail}))
	m.opts.ErrorHandler(w, r, err)
}

func defaultErrorHandler(w http.ResponseWriter, _ *http.Request, err error) {
	status := http.StatusInternalServerError
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, stampede.ErrWaitTimeout) || errors.Is(err, ErrRevalidationFailed) {
		status = http.StatusGatewayTimeout
	}
	http.Error(w, http.StatusText(status), status)
}

// writeEntry answers r with a stored response: 304 Not Modified when r's
// validators match it, part of it for a Range request, or all of it.
func (m *Middleware) writeEntry(w http.ResponseWriter, r *http.Request, e *entry, age time.Duration, cs cacheStatus) {
	h := w.Header()
	ageValue := strconv.FormatInt(int64(age/time.Second), 10)
	if notModified(r, e.status, e.header) {
		for _, k := range notModifiedFields {
			if v, ok := e.header[k]; ok {
				h[k] = v
			}
		}
		for _, k := range m.targets {
			if v, ok := e.header[k]; ok {
				h[k] = v
			}
		}
		h.Set("Age", ageValue)
		addCacheStatus(h, m.member(r, cs))
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if br, ok := rangeApplies(r, e.status, e.header); ok {
		writeRange(w, br, e, ageValue, m.member(r, cs))
		return
	}
	for k, v := range e.header {
		h[k] = v
	}
	h.Set("Age", ageValue)
	addCacheStatus(h, m.member(r, cs))
	w.WriteHeader(e.status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(e.body)
	}
}

// writeRaw answers r with a response as its handler wrote it.
func (m *Middleware) writeRaw(w http.ResponseWriter, r *http.Request, o *outcome, cs cacheStatus) {
	h := w.Header()
	for k, v := range o.header {
		h[k] = v
	}
	addCacheStatus(h, m.member(r, cs))
	w.WriteHeader(o.status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(o.body)
	}
}
