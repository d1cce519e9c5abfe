package httpcache

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stampede-go/stampede"
	"github.com/stretchr/testify/require"
)

// Cache-Status (RFC 9211) names the cache and says what happened: hit, or
// fwd with why (uri-miss, vary-miss, method, bypass, stale, request),
// fwd-status, ttl, stored, collapsed, and detail for why a response was
// not stored or was served stale. The members of the caches nearer the
// origin are kept before this cache's (RFC 9211 2).
func TestCacheStatusValues(t *testing.T) {
	h := &counter{fn: func(w http.ResponseWriter, r *http.Request, n int64) {
		switch r.URL.Path {
		case "/private":
			w.Header().Set("Cache-Control", "private")
		case "/vary":
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Vary", "Accept-Language")
		case "/upstream":
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Cache-Status", "origin-cache; hit")
		default:
			w.Header().Set("Cache-Control", "max-age=60")
		}
	}}
	s := newMW(t, nil, Options{CacheStatusName: "edge"}).Handler(h)
	for _, tc := range []struct {
		method, path string
		hdr          []string
		want         string
	}{
		{"GET", "/ok", nil, "edge; fwd=uri-miss; fwd-status=200; stored"},
		{"GET", "/ok", nil, "edge; hit; ttl=60"},
		{"GET", "/private", nil, "edge; fwd=uri-miss; fwd-status=200; detail=private"},
		{"GET", "/private", nil, "edge; fwd=bypass; detail=hit-for-miss"},
		{"GET", "/vary", []string{"Accept-Language", "en"}, "edge; fwd=uri-miss; fwd-status=200; stored"},
		{"GET", "/vary", []string{"Accept-Language", "fr"}, "edge; fwd=vary-miss; fwd-status=200; stored"},
		{"GET", "/vary", []string{"Accept-Language", "fr"}, "edge; hit; ttl=60"},
		{"POST", "/ok", nil, "edge; fwd=method"},
		{"OPTIONS", "/ok", nil, "edge; fwd=method"},
		{"GET", "/ok", []string{"Cache-Control", "no-store"}, "edge; fwd=bypass; detail=no-store"},
		{"GET", "/upstream", nil, "origin-cache; hit, edge; fwd=uri-miss; fwd-status=200; stored"},
		{"GET", "/upstream", nil, "edge; hit; ttl=60"}, // the stored copy has none of another request's
	} {
		w := do(s, tc.method, tc.path, tc.hdr...)
		got := strings.Join(w.Header().Values("Cache-Status"), ", ")
		if strings.HasSuffix(tc.want, "ttl=60") && strings.HasSuffix(got, "ttl=59") {
			got = strings.TrimSuffix(got, "59") + "60" // a second may have begun
		}
		if got != tc.want {
			t.Errorf("%s %s %q: Cache-Status %q, want %q", tc.method, tc.path, tc.hdr, got, tc.want)
		}
	}
}

// The requests that waited for another's run say collapsed (RFC 9211 2.6).
func TestCacheStatusCollapsed(t *testing.T) {
	release := make(chan struct{})
	h := &counter{fn: func(w http.ResponseWriter, r *http.Request, n int64) {
		<-release
		cacheable("x")(w, r, n)
	}}
	s := newMW(t, nil, Options{}).Handler(h)
	var wg sync.WaitGroup
	statuses := make(chan string, 4)
	for range 4 {
		wg.Go(func() { statuses <- status(do(s, "GET", "/c")) })
	}
	for h.n.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // the others join the first one's run
	close(release)
	wg.Wait()
	close(statuses)
	collapsed := 0
	for cs := range statuses {
		if strings.Contains(cs, "; collapsed") {
			collapsed++
			if cs != "stampede; fwd=uri-miss; fwd-status=200; collapsed; stored" {
				t.Errorf("Cache-Status %q", cs)
			}
		}
	}
	if collapsed != 3 || h.n.Load() != 1 {
		t.Fatalf("%d collapsed, %d runs", collapsed, h.n.Load())
	}
}

// RFC 9211 2.6: collapsed says the request waited for another request's
// run, here or on another server: not that it shared another's read.
func TestCollapsed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		res     stampede.Result[*entry]
		elapsed time.Duration
		want    bool
	}{
		{"shared this process's run", stampede.Result[*entry]{Source: stampede.SourceLoader, Waited: true}, time.Millisecond, true},
		{"stored by another server while it waited", stampede.Result[*entry]{Source: stampede.SourceRedis, Waited: true, Age: time.Millisecond}, 50 * time.Millisecond, true},
		{"shared a read of an older response", stampede.Result[*entry]{Source: stampede.SourceRedis, Waited: true, Age: 5 * time.Second}, time.Millisecond, false},
		{"shared a memory hit", stampede.Result[*entry]{Source: stampede.SourceLocal, Waited: true, Age: time.Second}, time.Millisecond, false},
		{"a hit of a response stored just before", stampede.Result[*entry]{Source: stampede.SourceRedis}, 50 * time.Millisecond, false},
	} {
		require.Equal(t, tc.want, collapsed(tc.res, tc.elapsed), tc.name)
	}
}

// A name that is not a token is sent as a Structured Field string.
func TestCacheStatusName(t *testing.T) {
	for name, want := range map[string]string{
		"edge":          "edge",
		"edge-1:a/b":    "edge-1:a/b",
		"my cache":      `"my cache"`,
		`say "hi" \ o`:  `"say \"hi\" \\ o"`,
		"1st":           `"1st"`,
		"*.example.com": "*.example.com",
	} {
		if got := statusName(name); got != want {
			t.Errorf("%q: %s, want %s", name, got, want)
		}
	}
	s := newMW(t, nil, Options{CacheStatusName: "my cache"}).Handler(&counter{fn: cacheable("x")})
	if got := status(do(s, "GET", "/")); !strings.HasPrefix(got, `"my cache"; fwd=`) {
		t.Fatal(got)
	}
}
