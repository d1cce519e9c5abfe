package httpcache

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// serveUnsafe passes a request with an unsafe method (POST, PUT, PATCH,
// DELETE and any unknown one) to next, and when next answers with a 2xx or
// 3xx, invalidates the stored response for the same URL and for the
// same-origin URLs in Location and Content-Location (RFC 9111 4.4). The
// invalidation happens before the status line goes out, so a client that
// reads its own write finds the entry gone.
func (m *Middleware) serveUnsafe(w http.ResponseWriter, r *http.Request, next http.Handler) {
	addCacheStatus(w.Header(), m.member(r, cacheStatus{fwd: fwdMethod}))
	iw := &invalidator{ResponseWriter: w, m: m, r: r}
	next.ServeHTTP(iw, r)
	iw.check(http.StatusOK) // a handler that wrote nothing answered 200
}

// invalidator watches an unsafe request's status. It keeps Flush, Hijack
// and Unwrap so streaming and upgrades work through it.
type invalidator struct {
	http.ResponseWriter
	m    *Middleware
	r    *http.Request
	seen bool
}

func (iw *invalidator) check(status int) {
	if iw.seen || status < 200 {
		return
	}
	iw.seen = true
	if status < 400 {
		iw.m.invalidate(iw.r, iw.ResponseWriter.Header())
	}
}

func (iw *invalidator) WriteHeader(status int) {
	iw.check(status)
	iw.ResponseWriter.WriteHeader(status)
}

func (iw *invalidator) Write(p []byte) (int, error) {
	iw.check(http.StatusOK)
	return iw.ResponseWriter.Write(p)
}

// Flush implements http.Flusher.
func (iw *invalidator) Flush() {
	iw.check(http.StatusOK)
	_ = http.NewResponseController(iw.ResponseWriter).Flush()
}

// Hijack implements http.Hijacker.
func (iw *invalidator) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(iw.ResponseWriter).Hijack()
}

// Unwrap lets http.ResponseController reach the writer underneath.
func (iw *invalidator) Unwrap() http.ResponseWriter { return iw.ResponseWriter }

// invalidate deletes the GET entries of r's URL and of the same-origin
// URLs its response points to. Failures go to Options.Logger.
func (m *Middleware) invalidate(r *http.Request, resp http.Header) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), invalidateTimeout)
	defer cancel()
	keys := []string{primaryKey(r)}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	base := &url.URL{Scheme: scheme, Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath}
	for _, f := range []string{"Location", "Content-Location"} {
		v := resp.Get(f)
		if v == "" {
			continue
		}
		u, err := base.Parse(v)
		if err != nil || u.Scheme != scheme || !strings.EqualFold(u.Host, r.Host) {
			continue
		}
		keys = append(keys, primaryKeyOf(scheme, u.Host, u))
	}
	for _, k := range keys {
		if err := m.cache.Delete(ctx, k); err != nil {
			m.failedWrite(ctx, "invalidation after an unsafe request", k, err)
		}
	}
}
