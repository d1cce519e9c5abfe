package httpcache

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// validating is a handler that answers a matching If-None-Match with a 304
// carrying new fields, and anything else with the full response. It records
// the If-None-Match of each run.
type validating struct {
	counter
	etag   atomic.Value // the current entity-tag
	seen   []string     // If-None-Match of each run
	status int          // when set, every run after the first answers it
}

func newValidating(t *testing.T) *validating {
	v := &validating{}
	v.etag.Store(`"v1"`)
	v.fn = func(w http.ResponseWriter, r *http.Request, n int64) {
		v.seen = append(v.seen, r.Header.Get("If-None-Match"))
		if v.status != 0 && n > 1 {
			w.WriteHeader(v.status)
			return
		}
		etag := v.etag.Load().(string)
		w.Header().Set("Etag", etag)
		w.Header().Set("X-Run", fmt.Sprint(n))
		if r.Header.Get("If-None-Match") == etag {
			w.Header().Set("Cache-Control", "max-age=100, stale-if-error=60")
			// The size of the representation, as a 304 may say (RFC 9110
			// 8.6) and ReverseProxy forwards: not a body.
			w.Header().Set("Content-Length", "9")
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Cache-Control", "max-age=10, stale-if-error=60")
		w.Header().Set("Age", "5") // an age the client's max-age can be compared with
		fmt.Fprint(w, "full body")
	}
	return v
}

// Without HonorRequestCacheControl a client's no-cache or max-age=0 is
// answered from the fresh stored response: the handler is not run again.
func TestRequestCacheControlIgnoredByDefault(t *testing.T) {
	h := newValidating(t)
	s := newMW(t, nil, Options{}).Handler(h)
	do(s, "GET", "/q")
	for _, cc := range []string{"no-cache", "max-age=0", "min-fresh=3600"} {
		if w := do(s, "GET", "/q", "Cache-Control", cc); !strings.Contains(status(w), "hit") {
			t.Errorf("%s: %q", cc, status(w))
		}
	}
	if h.n.Load() != 1 {
		t.Fatalf("handler ran %d times", h.n.Load())
	}
}

// With HonorRequestCacheControl, RFC 9111 5.2.1: a request that will not
// take the stored response is forwarded with the stored validators (RFC
// 9111 4.3.1); the handler's 304 freshens the stored response (RFC 9111
// 4.3.4) and the client gets it whole, or a 304 of its own when its
// validators match.
func TestHonorRequestCacheControl(t *testing.T) {
	for _, tc := range []struct {
		req       []string
		forwarded bool
	}{
		{[]string{"Cache-Control", "no-cache"}, true},
		{[]string{"Cache-Control", "max-age=0"}, true},
		{[]string{"Cache-Control", "max-age=4"}, true}, // the response is 5 s old
		{[]string{"Cache-Control", "max-age=60"}, false},
		{[]string{"Cache-Control", "min-fresh=6"}, true}, // 5 s of freshness left
		{[]string{"Cache-Control", "min-fresh=4"}, false},
		{[]string{"Cache-Control", "max-stale=10"}, false},
		{nil, false},
	} {
		t.Run(fmt.Sprint(tc.req), func(t *testing.T) {
			h := newValidating(t)
			s := newMW(t, nil, Options{HonorRequestCacheControl: true}).Handler(h)
			do(s, "GET", "/q")
			w := do(s, "GET", "/q", tc.req...)
			if !tc.forwarded {
				if !strings.Contains(status(w), "hit") || h.n.Load() != 1 {
					t.Fatalf("%q, %d runs: want a hit", status(w), h.n.Load())
				}
				return
			}
			if h.n.Load() != 2 || h.seen[1] != `"v1"` {
				t.Fatalf("runs %d, validators sent %q", h.n.Load(), h.seen)
			}
			if w.Code != 200 || w.Body.String() != "full body" || w.Header().Get("X-Run") != "2" ||
				w.Header().Get("Cache-Control") != "max-age=100, stale-if-error=60" {
				t.Fatalf("got %d %q %v: want the stored body with the 304's fields", w.Code, w.Body.String(), w.Header())
			}
			if got := status(w); got != "stampede; fwd=request; fwd-status=304" {
				t.Fatalf("Cache-Status %q", got)
			}
			if w.Header().Get("Age") != "0" { // RFC 9111 4.3.4: the age starts again
				t.Fatalf("Age %q", w.Header().Get("Age"))
			}
			// The client's own validators are answered from the result.
			w = do(s, "GET", "/q", append(tc.req, "If-None-Match", `"v1"`)...)
			if w.Code != http.StatusNotModified || h.seen[2] != `"v1"` {
				t.Fatalf("client conditional: %d, validators sent %q", w.Code, h.seen)
			}
		})
	}
}

// A 304 that does not select the stored response (another strong
// entity-tag, RFC 9111 4.3.4) cannot be used: the request is made again
// without conditions, and the client gets the new response.
func TestRevalidationMismatchAsksAgain(t *testing.T) {
	h := newValidating(t)
	h.fn = func(w http.ResponseWriter, r *http.Request, n int64) {
		h.seen = append(h.seen, r.Header.Get("If-None-Match"))
		w.Header().Set("Cache-Control", "max-age=60")
		if r.Header.Get("If-None-Match") != "" {
			w.Header().Set("Etag", `"other"`)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Etag", `"v1"`)
		fmt.Fprintf(w, "run %d", n)
	}
	s := newMW(t, nil, Options{HonorRequestCacheControl: true}).Handler(h)
	do(s, "GET", "/m")
	w := do(s, "GET", "/m", "Cache-Control", "no-cache")
	if w.Code != 200 || w.Body.String() != "run 3" || len(h.seen) != 3 || h.seen[1] != `"v1"` || h.seen[2] != "" {
		t.Fatalf("got %d %q; validators sent %q", w.Code, w.Body.String(), h.seen)
	}
}

// A revalidation the client asked for that fails is not answered with the
// stored response: the client gets the failure.
func TestRequestRevalidationFailureNotServedStored(t *testing.T) {
	h := newValidating(t)
	h.status = http.StatusServiceUnavailable
	s := newMW(t, nil, Options{HonorRequestCacheControl: true}).Handler(h)
	do(s, "GET", "/f")
	w := do(s, "GET", "/f", "Cache-Control", "no-cache")
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(status(w), "fwd=request; fwd-status=503") {
		t.Fatalf("got %d %q", w.Code, status(w))
	}
}
