package httpcache

import (
	"io"
	"net/http"
	"net/http/httptest"
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
