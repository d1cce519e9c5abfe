package httpcache

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stampede-go/stampede/internal/redistest"
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

// BenchmarkRevalidate304 is a request's own revalidation, in one process: a
// stored response the request will not take as it is (Cache-Control:
// no-cache, honoured), sent to the handler with its validators; the handler
// answers 304, which freshens the stored response, and that is written out
// (not stored). The fleet's revalidation is BenchmarkRedisStale304.
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

// The Redis path, one process with no responses kept in its memory, so that
// every request reaches Redis: a hit; a full miss (the lease, the run, the
// fenced fill); and the revalidation of a stored response past its
// freshness, a run with If-None-Match whose 304 freshens it through the
// same lease and fill. Before Options.Keep a response past its freshness
// was gone, and that request was a full miss. On the embedded Redis
// (miniredis, whose Lua is slow) and on a redis-server.

// etagHandler answers If-None-Match "v1" with a 304, anything else with the
// whole 4 KB response, fresh for a minute.
func etagHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=60")
		w.Header().Set("Etag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, benchBody)
	})
}

// benchRedis runs fn on each backend; age makes the stored response of
// path look d older.
func benchRedis(b *testing.B, fn func(b *testing.B, h http.Handler, age func(path string, d time.Duration))) {
	b.Run("miniredis", func(b *testing.B) {
		mr, rdb := redistest.Mini(b)
		h := newMW(b, rdb, Options{LocalCapacity: -1}).Handler(etagHandler())
		fn(b, h, func(string, time.Duration) { mr.FastForward(61 * time.Second) })
	})
	b.Run("redis", func(b *testing.B) {
		rdb := redistest.Start(b).Client(b)
		h := newMW(b, rdb, Options{LocalCapacity: -1}).Handler(etagHandler())
		fn(b, h, func(path string, d time.Duration) { ageEntry(b, rdb, path, d) })
	})
}

func BenchmarkRedisHit(b *testing.B) {
	benchRedis(b, func(b *testing.B, h http.Handler, _ func(string, time.Duration)) {
		do(h, "GET", "/bench")
		r := httptest.NewRequest("GET", "/bench", nil)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			h.ServeHTTP(&discard{h: make(http.Header, 8)}, r)
		}
	})
}

func BenchmarkRedisMiss(b *testing.B) {
	benchRedis(b, func(b *testing.B, h http.Handler, _ func(string, time.Duration)) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			r := httptest.NewRequest("GET", "/bench?i="+strconv.Itoa(i), nil)
			h.ServeHTTP(&discard{h: make(http.Header, 8)}, r)
		}
	})
}

func BenchmarkRedisStale304(b *testing.B) {
	benchRedis(b, func(b *testing.B, h http.Handler, age func(string, time.Duration)) {
		do(h, "GET", "/bench")
		r := httptest.NewRequest("GET", "/bench", nil)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			age("/bench", 61*time.Second) // past its freshness
			b.StartTimer()
			h.ServeHTTP(&discard{h: make(http.Header, 8)}, r)
		}
	})
}
