package httpcache

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

var benchBody = strings.Repeat("x", 4096)

func benchHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, benchBody)
	})
}

// discard is a ResponseWriter that keeps nothing, so the benchmarks measure
// the middleware rather than a recorder.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}

func benchServe(b *testing.B, h http.Handler) {
	r := httptest.NewRequest("GET", "http://example.com/bench?a=1&b=2", nil)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w := &discard{h: make(http.Header, 8)}
		h.ServeHTTP(w, r)
	}
}

// BenchmarkBareHandler is the handler alone: the floor.
func BenchmarkBareHandler(b *testing.B) { benchServe(b, benchHandler()) }

// BenchmarkCachedHit is a fresh hit from the process's memory through the
// middleware: key hashing, the core's L1, and writing the stored response.
func BenchmarkCachedHit(b *testing.B) {
	m := newMW(b, nil, Options{})
	h := m.Handler(benchHandler())
	do(h, "GET", "http://example.com/bench?a=1&b=2")
	benchServe(b, h)
}

// BenchmarkCachedHitParallel is the same hit from every core at once.
func BenchmarkCachedHitParallel(b *testing.B) {
	m := newMW(b, nil, Options{})
	h := m.Handler(benchHandler())
	do(h, "GET", "http://example.com/bench?a=1&b=2")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := httptest.NewRequest("GET", "http://example.com/bench?a=1&b=2", nil)
		for pb.Next() {
			h.ServeHTTP(&discard{h: make(http.Header, 8)}, r)
		}
	})
}

// BenchmarkMiss is a full miss in one process: the handler runs into the
// recorder, the response is classified, encoded for nobody (no Redis) and
// kept in memory, and written out. Each iteration asks for a new URL.
func BenchmarkMiss(b *testing.B) {
	m := newMW(b, nil, Options{})
	h := m.Handler(benchHandler())
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		r := httptest.NewRequest("GET", "http://example.com/bench?i="+strconv.Itoa(i), nil)
		h.ServeHTTP(&discard{h: make(http.Header, 8)}, r)
	}
}

// BenchmarkRevalidate304 is the revalidation path: a stored response the
// request will not take as it is (Cache-Control: no-cache, honoured), sent
// to the handler with its validators; the handler answers 304, which
// freshens the stored response, and that is written out.
func BenchmarkRevalidate304(b *testing.B) {
	m := newMW(b, nil, Options{HonorRequestCacheControl: true})
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("Etag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, benchBody)
	}))
	do(h, "GET", "http://example.com/bench?a=1&b=2")
	r := httptest.NewRequest("GET", "http://example.com/bench?a=1&b=2", nil)
	r.Header.Set("Cache-Control", "no-cache")
	b.ReportAllocs()
	for b.Loop() {
		w := &discard{h: make(http.Header, 8)}
		h.ServeHTTP(w, r)
	}
}

// BenchmarkRangeHit is a single byte range served from a stored 200.
func BenchmarkRangeHit(b *testing.B) {
	m := newMW(b, nil, Options{})
	h := m.Handler(benchHandler())
	do(h, "GET", "http://example.com/bench?a=1&b=2")
	r := httptest.NewRequest("GET", "http://example.com/bench?a=1&b=2", nil)
	r.Header.Set("Range", "bytes=100-1123")
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(&discard{h: make(http.Header, 8)}, r)
	}
}
