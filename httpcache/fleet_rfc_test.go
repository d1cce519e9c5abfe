package httpcache

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stampede-go/stampede"
	"github.com/stampede-go/stampede/internal/redistest"
)

// onBackends runs fn against miniredis, a real redis-server and a
// three-master Cluster. newClient connects one more server of the fleet to
// the same Redis.
func onBackends(t *testing.T, fn func(t *testing.T, newClient func() redis.UniversalClient)) {
	t.Run("miniredis", func(t *testing.T) {
		mr, _ := redistest.Mini(t)
		fn(t, func() redis.UniversalClient { return redistestClient(t, mr.Addr()) })
	})
	t.Run("redis", func(t *testing.T) {
		srv := redistest.Start(t)
		fn(t, func() redis.UniversalClient { return srv.Client(t) })
	})
	t.Run("cluster", func(t *testing.T) {
		c := redistest.StartCluster(t)
		fn(t, func() redis.UniversalClient { return c.Client(t) })
	})
}

// RFC 9111 1.2.2 and the entry bound: a response whose lifetime is past
// 2^62 ns (an Expires in 2286) is written with its lifetime capped, and
// every other server reads it back as a hit, with no undecodable entry
// reported, whatever Redis holds it.
func TestFleetFarFutureLifetimeReadBack(t *testing.T) {
	onBackends(t, func(t *testing.T, newClient func() redis.UniversalClient) {
		h := &counter{fn: func(w http.ResponseWriter, r *http.Request, n int64) {
			w.Header().Set("Date", time.Now().UTC().Format(http.TimeFormat))
			if r.URL.Path == "/max-age" {
				w.Header().Set("Cache-Control", "max-age=99999999999")
			} else {
				w.Header().Set("Expires", "Fri, 31 Dec 2286 23:59:59 GMT")
			}
			fmt.Fprint(w, "forever")
		}}
		var reports atomic.Int64
		opts := Options{LocalCapacity: -1, Observer: stampede.ObserverFunc(func(_ context.Context, e stampede.Event) {
			if e.Err != nil && (e.Kind == stampede.EventCorrupt || e.Kind == stampede.EventLoad || e.Kind == stampede.EventLeaseLost) {
				reports.Add(1)
				t.Log(e.Kind, e.Key, e.Err)
			}
		})}
		a := newMW(t, newClient(), opts).Handler(h)
		b := newMW(t, newClient(), opts).Handler(h)
		for _, path := range []string{"/expires", "/max-age"} {
			if w := do(a, "GET", path); !strings.Contains(status(w), "stored") {
				t.Fatalf("%s not stored: %q", path, status(w))
			}
			if w := do(b, "GET", path); !strings.Contains(status(w), "hit") || w.Body.String() != "forever" {
				t.Fatalf("%s on the other server: %q %q", path, status(w), w.Body.String())
			}
		}
		if h.n.Load() != 2 || reports.Load() != 0 {
			t.Fatalf("%d handler runs, %d errors reported", h.n.Load(), reports.Load())
		}
	})
}

// A range request that finds nothing stored takes the lease only to give
// it back: it leaves no value and no lease in Redis, the handler answers
// its range, and another server's full GET then fills the entry that
// answers the next range request of the first server.
func TestFleetRangeMissLeavesNoLease(t *testing.T) {
	srv := redistest.Start(t)
	h := &counter{fn: func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=60")
		if r.Header.Get("Range") != "" {
			w.Header().Set("Content-Range", "bytes 0-1/10")
			w.WriteHeader(http.StatusPartialContent)
			fmt.Fprint(w, "01")
			return
		}
		fmt.Fprint(w, "0123456789")
	}}
	a := newMW(t, srv.Client(t), Options{LocalCapacity: -1}).Handler(h)
	b := newMW(t, srv.Client(t), Options{LocalCapacity: -1}).Handler(h)
	if w := do(a, "GET", "/rm", "Range", "bytes=0-1"); w.Code != 206 || w.Body.String() != "01" || !hasDetail(status(w), "range") {
		t.Fatalf("range miss: %d %q %q", w.Code, w.Body.String(), status(w))
	}
	key := primaryKeyOf("http", "example.com", &url.URL{Path: "/rm"})
	n, err := srv.Client(t).Exists(context.Background(), "httpcache:{"+key+"}", "httpcache:{"+key+"}:lock").Result()
	if err != nil || n != 0 {
		t.Fatalf("value or lease left in Redis: %d %v", n, err)
	}
	if w := do(b, "GET", "/rm"); w.Body.String() != "0123456789" || !strings.Contains(status(w), "stored") {
		t.Fatalf("full GET: %q %q", w.Body.String(), status(w))
	}
	w := do(a, "GET", "/rm", "Range", "bytes=2-4")
	if w.Code != 206 || w.Body.String() != "234" || !strings.Contains(status(w), "hit") || h.n.Load() != 2 {
		t.Fatalf("range after the fill: %d %q %q, %d runs", w.Code, w.Body.String(), status(w), h.n.Load())
	}
}
