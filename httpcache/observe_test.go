package httpcache

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stampede-go/stampede"
	"github.com/stampede-go/stampede/internal/redistest"
)

// events records the httpcache events an Observer sees, as kind:reason,
// and the core's events by kind.
type events struct {
	mu   sync.Mutex
	http []string
	core map[stampede.EventKind]int
}

func (ev *events) Observe(_ context.Context, e stampede.Event) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if e.Kind >= stampede.EventHTTPHit {
		ev.http = append(ev.http, e.Kind.String()+":"+e.Reason)
		return
	}
	if ev.core == nil {
		ev.core = map[stampede.EventKind]int{}
	}
	ev.core[e.Kind]++
}

func (ev *events) take() []string {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	out := ev.http
	ev.http = nil
	return out
}

// The Observer sees one event per request saying how it was answered, with
// the Cache-Status fwd or detail as its reason, a not-stored event for the
// run whose response was not stored, and the core cache's own events.
func TestObserverSeesEachRequestsOutcome(t *testing.T) {
	ev := &events{}
	v := newValidating(t)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/no-store":
			w.Header().Set("Cache-Control", "no-store")
			fmt.Fprint(w, "private")
		case "/swr":
			w.Header().Set("Cache-Control", "max-age=10, stale-while-revalidate=60")
			fmt.Fprint(w, "stale soon")
		default:
			v.ServeHTTP(w, r)
		}
	})
	mr, rdb := redistest.Mini(t)
	s := newMW(t, rdb, Options{HonorRequestCacheControl: true, LocalBytes: -1, Observer: ev}).Handler(h)
	for _, tc := range []struct {
		method, path string
		hdr          []string
		want         []string
		after        time.Duration // how far the clock moves after the request
	}{
		{"GET", "/q", nil, []string{"http_miss:uri-miss"}, 0},
		{"GET", "/q", nil, []string{"http_hit:"}, 0},
		{"GET", "/q", []string{"Cache-Control", "no-cache"}, []string{"http_revalidated:request"}, 0},
		{"POST", "/q", nil, []string{"http_bypass:method"}, 0},
		{"GET", "/q", []string{"Authorization", "Bearer x"}, []string{"http_miss:uri-miss", "http_not_stored:authorization"}, 0},
		{"GET", "/no-store", nil, []string{"http_miss:uri-miss", "http_not_stored:no-store"}, 0},
		{"GET", "/swr", nil, []string{"http_miss:uri-miss"}, 15 * time.Second},
		{"GET", "/upgrade", []string{"Upgrade", "websocket"}, []string{"http_bypass:upgrade"}, 0},
		{"GET", "/swr", nil, []string{"http_stale:stale-while-revalidate"}, 0},
	} {
		w := do(s, tc.method, tc.path, tc.hdr...)
		got := ev.take()
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("%s %s %v (Cache-Status %q): events %q, want %q", tc.method, tc.path, tc.hdr, status(w), got, tc.want)
		}
		mr.FastForward(tc.after)
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if ev.core[stampede.EventLoad] == 0 || ev.core[stampede.EventMiss] == 0 {
		t.Fatalf("core events %v: want the core cache's misses and loads too", ev.core)
	}
}

// A handler's panic is one EventLoaderPanic, and the Logger writes it with
// its stack; the request gets the error response.
func TestHandlerPanicObservedAndLogged(t *testing.T) {
	ev := &events{}
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("handler blew up") })
	s := newMW(t, nil, Options{Observer: ev, Logger: logger}).Handler(h)
	if w := do(s, "GET", "/p"); w.Code != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500", w.Code)
	}
	ev.mu.Lock()
	panics := ev.core[stampede.EventLoaderPanic]
	ev.mu.Unlock()
	if panics != 1 {
		t.Fatalf("%d loader panic events, want 1", panics)
	}
	out := logs.String()
	if strings.Count(out, "loader panicked") != 1 || !strings.Contains(out, "handler blew up") || !strings.Contains(out, "stack=") {
		t.Fatalf("log:\n%s\nwant one panic line with its value and stack", out)
	}
}
