package httpcache

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stampede-go/stampede/internal/redistest"
)

// What becomes of a stored response (fresh for 10 s) requested past its
// freshness, once the handler has answered its revalidation.
func TestKeptResponseRevalidation(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cc        string
		validator string
		opts      Options
		past      time.Duration // past the 10 s of freshness
		second    func(http.ResponseWriter, *http.Request, int64)
		code      int
		body      string
		status    string // Cache-Status of the request that found it stale
		sent      string // the validators of its run
		then      string // Cache-Status of the next request; "" when it runs the handler again
	}{
		// RFC 9111 4.3.1: the stored validators go with the run; 4.3.4: a
		// 304 freshens the stored response: its fields, the stored body,
		// the age from 0, and every server gets it.
		{name: "RFC 9111 4.3.4: a 304 to If-None-Match freshens it", cc: "max-age=10", validator: "etag",
			past: 5 * time.Second, second: answer304("etag"), code: 200, body: "v1 body",
			status: "stampede; fwd=stale; fwd-status=304; stored", sent: `"v1"`, then: "stampede; hit; ttl=100"},
		{name: "RFC 9111 4.3.4: a 304 to If-Modified-Since freshens it", cc: "max-age=10", validator: "last-modified",
			past: 5 * time.Second, second: answer304("last-modified"), code: 200, body: "v1 body",
			status: "stampede; fwd=stale; fwd-status=304; stored", sent: lastMod, then: "stampede; hit; ttl=100"},
		// RFC 9111 4.3.3: a full response replaces it.
		{name: "RFC 9111 4.3.3: a 200 replaces it", cc: "max-age=10", validator: "etag",
			past: 5 * time.Second, second: respond(200, "v2 body"), code: 200, body: "v2 body",
			status: "stampede; fwd=stale; fwd-status=200; stored", sent: `"v1"`, then: "stampede; hit; ttl=100"},
		// RFC 9111 4.3.4: a 304 that selects no stored response cannot be
		// used: the request is made again, unconditionally.
		{name: "RFC 9111 4.3.4: a 304 for another representation", cc: "max-age=10", validator: "etag",
			past: 5 * time.Second, second: func(w http.ResponseWriter, r *http.Request, n int64) {
				if r.Header.Get("If-None-Match") != "" {
					w.Header().Set("Etag", `"v2"`)
					w.WriteHeader(http.StatusNotModified)
					return
				}
				respond(200, "v3 body")(w, r, n)
			}, code: 200, body: "v3 body",
			status: "stampede; fwd=stale; fwd-status=200; stored", sent: `"v1"`, then: "stampede; hit; ttl=100"},
		// RFC 9111 4.2.4: never served stale; no response is a 504.
		{name: "RFC 9111 4.2.4: must-revalidate, no response", cc: "max-age=10, must-revalidate, stale-if-error=60",
			validator: "etag", opts: Options{StaleOnError: time.Minute}, past: 5 * time.Second,
			second: func(http.ResponseWriter, *http.Request, int64) { panic("origin down") },
			code:   504, status: "stampede; fwd=stale; detail=must-revalidate", sent: `"v1"`},
		{name: "RFC 9111 4.2.4: proxy-revalidate, no response", cc: "max-age=10, proxy-revalidate",
			validator: "etag", past: 5 * time.Second,
			second: func(http.ResponseWriter, *http.Request, int64) { panic("origin down") },
			code:   504, status: "stampede; fwd=stale; detail=must-revalidate", sent: `"v1"`},
		{name: `RFC 9111 4.2.4: no-cache="F", no response`, cc: `max-age=10, no-cache="X-A", stale-if-error=60`,
			validator: "etag", past: 5 * time.Second,
			second: func(http.ResponseWriter, *http.Request, int64) { panic("origin down") },
			code:   504, status: "stampede; fwd=stale; detail=must-revalidate", sent: `"v1"`},
		// RFC 9111 4.3.3: a 5xx is forwarded, never the stale response.
		{name: "RFC 9111 4.3.3: must-revalidate, a 503", cc: "max-age=10, must-revalidate", validator: "etag",
			past: 5 * time.Second, second: respond(503, "busy"), code: 503, body: "busy",
			status: "stampede; fwd=stale; fwd-status=503", sent: `"v1"`},
		// RFC 5861 4: within stale-if-error the stale response answers for
		// a failed run, and is served as it is for a while, everywhere.
		{name: "RFC 5861 4: within stale-if-error, a 503", cc: "max-age=10, stale-if-error=60", validator: "etag",
			past: 5 * time.Second, second: respond(503, "busy"), code: 200, body: "v1 body",
			status: "stampede; fwd=stale; fwd-status=503; ttl=-5; detail=stale-if-error", sent: `"v1"`,
			then: "stampede; hit; ttl=-5; detail=stale-if-error"},
		{name: "StaleOnError, no response, no validator", cc: "max-age=10", opts: Options{StaleOnError: time.Minute},
			past: 5 * time.Second, second: func(http.ResponseWriter, *http.Request, int64) { panic("origin down") },
			code: 200, body: "v1 body", status: "stampede; fwd=stale; ttl=-5; detail=stale-on-error",
			then: "stampede; hit; ttl=-5; detail=stale-on-error"},
		{name: "RFC 9111 4.2.4: StaleOnError beside s-maxage", cc: "s-maxage=10", validator: "etag",
			opts: Options{StaleOnError: time.Minute}, past: 5 * time.Second, second: respond(503, "busy"),
			code: 503, body: "busy", status: "stampede; fwd=stale; fwd-status=503", sent: `"v1"`},
		{name: "past stale-if-error, still kept", cc: "max-age=10, stale-if-error=3", validator: "etag",
			past: 5 * time.Second, second: respond(503, "busy"), code: 503, body: "busy",
			status: "stampede; fwd=stale; fwd-status=503", sent: `"v1"`},
		// Not kept: a miss, fetched in full.
		{name: "no validator, no error window", cc: "max-age=10", past: 5 * time.Second,
			second: respond(200, "v2 body"), code: 200, body: "v2 body",
			status: "stampede; fwd=uri-miss; fwd-status=200; stored", then: "stampede; hit; ttl=100"},
		{name: "Keep negative", cc: "max-age=10", validator: "etag", opts: Options{Keep: -1}, past: 5 * time.Second,
			second: respond(200, "v2 body"), code: 200, body: "v2 body",
			status: "stampede; fwd=uri-miss; fwd-status=200; stored", then: "stampede; hit; ttl=100"},
		{name: "past Keep", cc: "max-age=10", validator: "etag", opts: Options{Keep: time.Minute}, past: 2 * time.Minute,
			second: respond(200, "v2 body"), code: 200, body: "v2 body",
			status: "stampede; fwd=uri-miss; fwd-status=200; stored", then: "stampede; hit; ttl=100"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mr, rdb := redistest.Mini(t)
			h := newOrigin(tc.cc, tc.validator, tc.second)
			opts := tc.opts
			opts.LocalBytes = -1
			s := newMW(t, rdb, opts).Handler(h)
			require.Contains(t, status(do(s, "GET", "/k")), "stored")
			mr.FastForward(10*time.Second + tc.past)

			w := do(s, "GET", "/k")
			require.Equal(t, tc.code, w.Code)
			if tc.body != "" {
				require.Equal(t, tc.body, w.Body.String())
			}
			require.Equal(t, tc.status, status(w))
			require.Equal(t, []string{"", tc.sent}, h.validators()[:2])
			runs := h.n.Load()
			if tc.body == "v1 body" && strings.HasSuffix(tc.status, "stored") {
				// RFC 9111 4.3.4: freshened: the 304's fields, the age from 0.
				require.Equal(t, "run 2, a 304", w.Header().Get("X-From"))
				require.Equal(t, "0", w.Header().Get("Age"))
			}

			w = do(s, "GET", "/k")
			if tc.then == "" {
				require.Equal(t, runs+1, h.n.Load(), "the next request runs the handler again")
				require.Equal(t, tc.sent, h.validators()[runs], "with the stored validators again")
				return
			}
			require.Equal(t, runs, h.n.Load(), "the next request is answered without a run")
			// The Date of a stored response is whole seconds: a second of
			// its freshness may have begun.
			require.Equal(t, tc.then, strings.Replace(status(w), "ttl=99", "ttl=100", 1))
			require.Equal(t, tc.body, w.Body.String())
		})
	}
}

// RFC 5861 3: within stale-while-revalidate the stale response is served
// at once while one run revalidates it in the background, with its
// validators (RFC 9111 4.3.1); the 304 freshens it (RFC 9111 4.3.4).
func TestStaleWhileRevalidateIsConditional(t *testing.T) {
	mr, rdb := redistest.Mini(t)
	h := newOrigin("max-age=10, stale-while-revalidate=60", "etag", answer304("etag"))
	s := newMW(t, rdb, Options{LocalBytes: -1}).Handler(h)
	do(s, "GET", "/swr")
	mr.FastForward(15 * time.Second)
	w := do(s, "GET", "/swr")
	require.Equal(t, "v1 body", w.Body.String())
	require.Equal(t, "stampede; hit; ttl=-5; detail=stale-while-revalidate", status(w))
	eventually(t, "the background revalidation is stored", func() bool {
		return do(s, "GET", "/swr").Header().Get("X-From") == "run 2, a 304"
	})
	require.Equal(t, []string{"", `"v1"`}, h.validators())
	w = do(s, "GET", "/swr")
	require.True(t, strings.HasPrefix(status(w), "stampede; hit; ttl="), status(w))
	require.Equal(t, "v1 body", w.Body.String())
}

// A stale copy served in place of a failed run is served as it is for
// errorRetry; then it is served at once while one run retries in the
// background, whose 304 freshens it.
func TestStaleOnErrorRetriesInBackground(t *testing.T) {
	mr, rdb := redistest.Mini(t)
	h := newOrigin("max-age=10, stale-if-error=600", "etag", func(w http.ResponseWriter, r *http.Request, n int64) {
		if n == 2 {
			respond(http.StatusServiceUnavailable, "busy")(w, r, n)
			return
		}
		answer304("etag")(w, r, n)
	})
	s := newMW(t, rdb, Options{LocalBytes: -1}).Handler(h)
	do(s, "GET", "/retry")
	mr.FastForward(15 * time.Second)
	require.Equal(t, "stampede; fwd=stale; fwd-status=503; ttl=-5; detail=stale-if-error", status(do(s, "GET", "/retry")))
	require.Equal(t, "stampede; hit; ttl=-5; detail=stale-if-error", status(do(s, "GET", "/retry")))
	require.EqualValues(t, 2, h.n.Load())

	mr.FastForward(errorRetry)
	w := do(s, "GET", "/retry")
	require.Equal(t, "v1 body", w.Body.String())
	require.Equal(t, "stampede; hit; ttl=-6; detail=stale-if-error", status(w), "served at once")
	eventually(t, "the retry's 304 is stored", func() bool {
		return do(s, "GET", "/retry").Header().Get("X-From") == "run 3, a 304"
	})
	require.Equal(t, []string{"", `"v1"`, `"v1"`}, h.validators())
}

// Without Redis nothing is kept past the stale windows, so the stale
// window covers stale-if-error: a request past its freshness revalidates
// with the core's background load sharing its run, and a failure is
// answered with the stale response.
func TestSingleProcessStaleIfError(t *testing.T) {
	release := make(chan struct{})
	h := &origin{}
	h.fn = func(w http.ResponseWriter, r *http.Request, n int64) {
		h.mu.Lock()
		h.sent = append(h.sent, r.Header.Get("If-None-Match"))
		h.mu.Unlock()
		if n > 1 {
			<-release
			respond(http.StatusServiceUnavailable, "busy")(w, r, n)
			return
		}
		w.Header().Set("Cache-Control", "max-age=1, stale-if-error=60")
		w.Header().Set("Etag", `"v1"`)
		w.Header().Set("Date", time.Now().UTC().Format(http.TimeFormat))
		fmt.Fprint(w, "v1 body")
	}
	s := newMW(t, nil, Options{}).Handler(h)
	do(s, "GET", "/one")
	time.Sleep(1100 * time.Millisecond) // past its freshness, by the process's clock

	got := make(chan *httptest.ResponseRecorder, 1)
	go func() { got <- do(s, "GET", "/one") }()
	eventually(t, "the revalidation runs", func() bool { return h.n.Load() == 2 })
	time.Sleep(100 * time.Millisecond) // the core's background load joins it
	close(release)
	w := <-got
	require.Equal(t, "v1 body", w.Body.String())
	// The core's load or this request ran it; the other waited for it.
	require.Regexp(t, `^stampede; fwd=stale; fwd-status=503; ttl=-?[01](; collapsed)?; detail=stale-if-error$`, status(w))
	require.Equal(t, []string{"", `"v1"`}, h.validators())
	time.Sleep(100 * time.Millisecond) // the core's load stores the stale copy
	require.Regexp(t, `^stampede; hit; ttl=-?[01]; detail=stale-if-error$`, status(do(s, "GET", "/one")))
	require.EqualValues(t, 2, h.n.Load(), "one run for the request and the core's background load")
}

// A variant past its freshness is revalidated under its own key, with its
// own validators, and the 304 freshens that variant only.
func TestVariantRevalidation(t *testing.T) {
	mr, rdb := redistest.Mini(t)
	h := &origin{}
	h.fn = func(w http.ResponseWriter, r *http.Request, n int64) {
		lang := r.Header.Get("Accept-Language")
		h.mu.Lock()
		h.sent = append(h.sent, r.Header.Get("If-None-Match"))
		h.mu.Unlock()
		w.Header().Set("Cache-Control", "max-age=10")
		w.Header().Set("Vary", "Accept-Language")
		w.Header().Set("Etag", `"`+lang+`"`)
		if r.Header.Get("If-None-Match") == `"`+lang+`"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprintf(w, "%s %d", lang, n)
	}
	s := newMW(t, rdb, Options{LocalBytes: -1}).Handler(h)
	get := func(lang string) *httptest.ResponseRecorder { return do(s, "GET", "/v", "Accept-Language", lang) }
	require.Equal(t, "en 1", get("en").Body.String())
	require.Equal(t, "fr 2", get("fr").Body.String())
	mr.FastForward(15 * time.Second)
	w := get("fr")
	require.Equal(t, "fr 2", w.Body.String())
	require.Equal(t, "stampede; fwd=stale; fwd-status=304; stored", status(w))
	require.Equal(t, []string{"", "", `"fr"`}, h.validators())
	require.True(t, strings.HasPrefix(status(get("fr")), "stampede; hit"), "fr is fresh again")
	w = get("en")
	require.Equal(t, "stampede; fwd=stale; fwd-status=304; stored", status(w), "en is stale still")
	require.Equal(t, "en 1", w.Body.String())
}
