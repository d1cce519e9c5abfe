package httpcache

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stampede-go/stampede/internal/redistest"
)

// Options.StaleOnError serves the stale copy in place of a failed run
// even without stale-if-error, within its window, and never for a
// response that forbids stale use (RFC 9111 4.2.4: no-cache,
// must-revalidate, proxy-revalidate, s-maxage).
func TestStaleOnError(t *testing.T) {
	down := func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusBadGateway) }
	for _, tc := range []struct {
		name      string
		cc        string
		soe       time.Duration
		past      time.Duration // how long past the 10 s of freshness
		fail      func(w http.ResponseWriter, r *http.Request)
		wantStale bool
		detail    string
	}{
		{"502", "max-age=10", time.Minute, 5 * time.Second, down, true, "stale-on-error"},
		{"panic", "max-age=10", time.Minute, 5 * time.Second, func(http.ResponseWriter, *http.Request) { panic("db") }, true, "stale-on-error"},
		{"timeout", "max-age=10", time.Minute, 5 * time.Second, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, true, "stale-on-error"},
		{"off by default", "max-age=10", 0, 5 * time.Second, down, false, ""},
		{"past the window", "max-age=10", time.Minute, 70 * time.Second, down, false, ""},
		{"within stale-if-error", "max-age=10, stale-if-error=30", time.Minute, 5 * time.Second, down, true, "stale-if-error"},
		{"past stale-if-error, within StaleOnError", "max-age=10, stale-if-error=3", time.Minute, 5 * time.Second, down, true, "stale-on-error"},
		{"must-revalidate", "max-age=10, must-revalidate", time.Minute, 5 * time.Second, down, false, ""},
		{"proxy-revalidate", "max-age=10, proxy-revalidate", time.Minute, 5 * time.Second, down, false, ""},
		{"no-cache with fields", `max-age=10, no-cache="X-A"`, time.Minute, 5 * time.Second, down, false, ""},
		{"s-maxage", "s-maxage=10", time.Minute, 5 * time.Second, down, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mr, rdb := redistest.Mini(t)
			h := &counter{fn: func(w http.ResponseWriter, r *http.Request, n int64) {
				if n > 1 {
					tc.fail(w, r)
					return
				}
				w.Header().Set("Cache-Control", tc.cc)
				fmt.Fprint(w, "good")
			}}
			s := newMW(t, rdb, Options{LocalCapacity: -1, StaleOnError: tc.soe, LoadTimeout: 200 * time.Millisecond}).Handler(h)
			do(s, "GET", "/soe")
			mr.FastForward(10*time.Second + tc.past)
			w := do(s, "GET", "/soe")
			if !tc.wantStale {
				if w.Code < 500 || w.Body.String() == "good" {
					t.Fatalf("stale served: %d %q %q", w.Code, w.Body.String(), status(w))
				}
				return
			}
			if w.Code != 200 || w.Body.String() != "good" || !hasDetail(status(w), tc.detail) || !strings.Contains(status(w), "fwd=stale") {
				t.Fatalf("got %d %q %q, want the stale copy", w.Code, w.Body.String(), status(w))
			}
		})
	}
}
