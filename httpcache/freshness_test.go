package httpcache

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stampede-go/stampede/internal/redistest"
)

// ttlOf returns the ttl parameter of a Cache-Status field.
func ttlOf(t *testing.T, cs string) int {
	t.Helper()
	for p := range strings.SplitSeq(cs, ";") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(p), "ttl="); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no ttl in %q", cs)
	return 0
}

// Freshness comes from s-maxage, then max-age, then Expires - Date; without
// any of them a response is stored only when DefaultTTL says for how long.
func TestFreshnessPrecedence(t *testing.T) {
	// "now" and "now+Ns" are written when the handler answers, so a slow
	// machine does not age the response before it is sent.
	for _, tc := range []struct {
		name    string
		hdr     []string
		def     time.Duration
		wantTTL int // -1: not stored
	}{
		{"s-maxage wins", []string{"Cache-Control", "s-maxage=100, max-age=10", "Expires", "now+3600s"}, 0, 100},
		{"max-age over Expires", []string{"Cache-Control", "max-age=10", "Expires", "now+3600s"}, 0, 10},
		{"Expires minus Date", []string{"Date", "now", "Expires", "now+50s"}, 0, 50},
		{"invalid Expires is expired", []string{"Expires", "0"}, 0, -1},
		{"malformed max-age is stale", []string{"Cache-Control", "max-age=ten"}, time.Minute, -1},
		{"no freshness, no default", nil, 0, -1},
		{"no freshness, DefaultTTL", nil, 7 * time.Second, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &counter{fn: func(w http.ResponseWriter, r *http.Request, n int64) {
				now := time.Now().UTC()
				for i := 0; i < len(tc.hdr); i += 2 {
					v := tc.hdr[i+1]
					if v == "now" {
						v = now.Format(http.TimeFormat)
					} else if d, ok := strings.CutPrefix(v, "now+"); ok {
						secs, _ := time.ParseDuration(d)
						v = now.Add(secs).Format(http.TimeFormat)
					}
					w.Header().Set(tc.hdr[i], v)
				}
				fmt.Fprint(w, "body")
			}}
			s := newMW(t, nil, Options{DefaultTTL: tc.def}).Handler(h)
			do(s, "GET", "/f")
			w := do(s, "GET", "/f")
			if tc.wantTTL < 0 {
				if h.n.Load() != 2 {
					t.Fatalf("stored; Cache-Status %q", status(w))
				}
				return
			}
			if h.n.Load() != 1 {
				t.Fatalf("not stored: %q", status(w))
			}
			if got := ttlOf(t, status(w)); got < tc.wantTTL-1 || got > tc.wantTTL {
				t.Fatalf("ttl=%d, want %d (%q)", got, tc.wantTTL, status(w))
			}
		})
	}
}

// Every cached response carries Age; an entry lives in Redis no longer than
// the origin allowed, counting the age it arrived with.
func TestAgeAndLifetime(t *testing.T) {
	mr, rdb := redistest.Mini(t)
	h := &counter{fn: func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Age", r.URL.Query().Get("age"))
		fmt.Fprint(w, "aged")
	}}
	s := newMW(t, rdb, Options{LocalCapacity: -1}).Handler(h)

	if w := do(s, "GET", "/a?age=30"); w.Header().Get("Age") != "30" {
		t.Fatalf("miss Age = %q", w.Header().Get("Age"))
	}
	key := primaryKeyOf("http", "example.com", &url.URL{Path: "/a", RawQuery: "age=30"})
	if ttl := mr.TTL("httpcache:{" + key + "}"); ttl <= 0 || ttl > 30*time.Second {
		t.Fatalf("Redis TTL %v, want at most the 30 s the origin left", ttl)
	}
	mr.FastForward(10 * time.Second)
	w := do(s, "GET", "/a?age=30")
	if age, _ := strconv.Atoi(w.Header().Get("Age")); age < 40 || age > 41 {
		t.Fatalf("hit Age = %q, want 40", w.Header().Get("Age"))
	}
	if got := ttlOf(t, status(w)); got < 19 || got > 20 {
		t.Fatalf("ttl=%d, want 20", got)
	}
	mr.FastForward(21 * time.Second)
	do(s, "GET", "/a?age=30")
	if h.n.Load() != 2 {
		t.Fatalf("served past its lifetime: %d runs", h.n.Load())
	}
	// Older than its lifetime on arrival: not stored at all.
	w = do(s, "GET", "/a?age=70")
	if !hasDetail(status(w), "stale") || w.Header().Get("Age") != "70" {
		t.Fatalf("Cache-Status %q, Age %q", status(w), w.Header().Get("Age"))
	}
}

// Within stale-while-revalidate the stale copy is served at once and
// refreshed in the background once across the fleet.
func TestStaleWhileRevalidateOncePerFleet(t *testing.T) {
	mr, rdb := redistest.Mini(t)
	release := make(chan struct{})
	h := &counter{fn: func(w http.ResponseWriter, r *http.Request, n int64) {
		if n > 1 {
			<-release
		}
		w.Header().Set("Cache-Control", "max-age=10, stale-while-revalidate=30")
		fmt.Fprintf(w, "v%d", n)
	}}
	a := newMW(t, rdb, Options{LocalCapacity: -1}).Handler(h)
	b := newMW(t, redistestClient(t, mr.Addr()), Options{LocalCapacity: -1}).Handler(h)

	do(a, "GET", "/s")
	mr.FastForward(15 * time.Second)
	for i, s := range []http.Handler{a, b, a, b} {
		w := do(s, "GET", "/s")
		if w.Body.String() != "v1" || !hasDetail(status(w), "stale-while-revalidate") {
			t.Fatalf("request %d: %q %q", i, w.Body.String(), status(w))
		}
		if ttl := ttlOf(t, status(w)); ttl != -5 {
			t.Fatalf("ttl=%d, want -5", ttl)
		}
	}
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for {
		w := do(b, "GET", "/s")
		if w.Body.String() == "v2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("refresh never landed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := h.n.Load(); got != 2 {
		t.Fatalf("handler ran %d times, want 2 (one refresh for both nodes)", got)
	}
}

// Past stale-while-revalidate but within stale-if-error, the stale copy
// replaces 5xx responses, panics and timeouts; must-revalidate,
// proxy-revalidate and no-cache turn stale serving off.
func TestStaleIfError(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cc        string
		fail      func(w http.ResponseWriter, r *http.Request)
		wantStale bool
	}{
		{"503", "max-age=10, stale-if-error=60", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "down", http.StatusServiceUnavailable)
		}, true},
		{"panic", "max-age=10, stale-if-error=60", func(w http.ResponseWriter, r *http.Request) {
			panic("db gone")
		}, true},
		{"timeout", "max-age=10, stale-if-error=60", func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		}, true},
		{"must-revalidate", "max-age=10, stale-if-error=60, must-revalidate", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "down", http.StatusServiceUnavailable)
		}, false},
		{"proxy-revalidate", "max-age=10, stale-if-error=60, proxy-revalidate", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "down", http.StatusServiceUnavailable)
		}, false},
		{"no-cache", `max-age=10, stale-if-error=60, no-cache="X-Debug"`, func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "down", http.StatusServiceUnavailable)
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mr, rdb := redistest.Mini(t)
			h := &counter{fn: func(w http.ResponseWriter, r *http.Request, n int64) {
				if n > 1 {
					tc.fail(w, r)
					return
				}
				w.Header().Set("Cache-Control", tc.cc)
				w.Header().Set("X-Debug", "secret")
				fmt.Fprint(w, "good")
			}}
			s := newMW(t, rdb, Options{LocalCapacity: -1, LoadTimeout: 200 * time.Millisecond}).Handler(h)
			if w := do(s, "GET", "/e"); w.Header().Get("X-Debug") == "" {
				t.Fatal("the filling client lost a field")
			}
			if w := do(s, "GET", "/e"); w.Header().Get("X-Debug") != "" && tc.name == "no-cache" {
				t.Fatal(`no-cache="X-Debug" field was stored`)
			}
			mr.FastForward(15 * time.Second)
			w := do(s, "GET", "/e")
			if !tc.wantStale {
				if w.Code < 500 {
					t.Fatalf("stale served: %d %q %q", w.Code, w.Body.String(), status(w))
				}
				return
			}
			if w.Code != 200 || w.Body.String() != "good" || !hasDetail(status(w), "stale-if-error") {
				t.Fatalf("got %d %q %q, want the stale copy", w.Code, w.Body.String(), status(w))
			}
			if !strings.Contains(status(w), "fwd=stale") {
				t.Fatalf("Cache-Status %q", status(w))
			}
		})
	}
}

// Within stale-if-error a successful revalidation is served, and stored.
func TestStaleIfErrorRevalidates(t *testing.T) {
	mr, rdb := redistest.Mini(t)
	h := &counter{fn: func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=10, stale-if-error=60")
		fmt.Fprintf(w, "v%d", n)
	}}
	s := newMW(t, rdb, Options{LocalCapacity: -1}).Handler(h)
	do(s, "GET", "/e")
	mr.FastForward(15 * time.Second)
	if w := do(s, "GET", "/e"); w.Code != 200 || w.Body.String() == "v1" {
		t.Fatalf("got %q %q, want the revalidated response", w.Body.String(), status(w))
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		w := do(s, "GET", "/e")
		if strings.Contains(status(w), "hit") && w.Body.String() != "v1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("revalidated response not stored: %q %q", w.Body.String(), status(w))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// redistestClient connects a second client to the same miniredis.
func redistestClient(t *testing.T, addr string) *redisClient {
	c := newRedisClient(addr)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

var _ = context.Background

// A refresh whose body outgrows MaxBodySize has nobody to stream it to: it
// is not stored, and no client is ever served the cut-off part of it.
func TestRefreshOutgrowingMaxBodyIsNotStored(t *testing.T) {
	mr, rdb := redistest.Mini(t)
	big := strings.Repeat("x", 500)
	h := &counter{fn: func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=10, stale-while-revalidate=60")
		if n == 1 {
			fmt.Fprint(w, "small")
			return
		}
		fmt.Fprint(w, big)
	}}
	s := newMW(t, rdb, Options{LocalCapacity: -1, MaxBodySize: 200}).Handler(h)
	do(s, "GET", "/grow")
	mr.FastForward(15 * time.Second)
	if w := do(s, "GET", "/grow"); w.Body.String() != "small" {
		t.Fatalf("stale request got %q", w.Body.String())
	}
	deadline := time.Now().Add(5 * time.Second)
	for h.n.Load() < 3 { // the refresh, then a request that finds no stored copy
		if time.Now().After(deadline) {
			t.Fatalf("handler ran %d times", h.n.Load())
		}
		w := do(s, "GET", "/grow")
		if b := w.Body.String(); b != "small" && b != big {
			t.Fatalf("served %d bytes (%q): a cut-off body", len(b), status(w))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Refreshing one stale variant runs the handler once, for that variant, and
// leaves the other variants of the URL in place.
func TestStaleVariantRefreshKeepsOtherVariants(t *testing.T) {
	mr, rdb := redistest.Mini(t)
	h := &counter{fn: func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=10, stale-while-revalidate=60")
		w.Header().Set("Vary", "Accept-Language")
		fmt.Fprintf(w, "%s%d", r.Header.Get("Accept-Language"), n)
	}}
	s := newMW(t, rdb, Options{LocalCapacity: -1}).Handler(h)
	get := func(lang string) string { return do(s, "GET", "/v", "Accept-Language", lang).Body.String() }
	if get("en") != "en1" || get("fr") != "fr2" {
		t.Fatal("variants not filled")
	}
	mr.FastForward(15 * time.Second)
	if b := get("en"); b != "en1" {
		t.Fatalf("stale en: %q", b)
	}
	deadline := time.Now().Add(5 * time.Second)
	for get("en") != "en3" {
		if time.Now().After(deadline) {
			t.Fatalf("en never refreshed; %d runs", h.n.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := h.n.Load(); n != 3 {
		t.Fatalf("%d handler runs, want 3: refreshing en ran the handler more than once", n)
	}
	if b := get("fr"); b != "fr2" {
		t.Fatalf("fr served %q, want its stale copy fr2: the refresh orphaned it", b)
	}
}

// When the origin starts varying on other fields, the old Vary record is
// dropped and the URL is cached again under the new ones.
func TestVaryChangeReplacesRecord(t *testing.T) {
	mr, rdb := redistest.Mini(t)
	var vary atomic.Value
	vary.Store("Accept-Language")
	h := &counter{fn: func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=10")
		w.Header().Set("Vary", vary.Load().(string))
		fmt.Fprintf(w, "r%d", n)
	}}
	s := newMW(t, rdb, Options{LocalCapacity: -1, HitForMissTTL: time.Second}).Handler(h)
	req := func() *httptest.ResponseRecorder { return do(s, "GET", "/vc", "Accept-Language", "en") }
	req()
	vary.Store("Accept-Encoding")
	mr.FastForward(11 * time.Second) // the variant expires; the record does not
	req()                            // the variant's run varies on other fields: the record is dropped
	req()                            // stores a record for the new fields
	runs := h.n.Load()
	if w := req(); h.n.Load() != runs || !strings.Contains(status(w), "hit") {
		t.Fatalf("after the Vary change: %q, %d runs: the URL is not cached again", status(w), h.n.Load()-runs)
	}
}
