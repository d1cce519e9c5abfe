package httpcache

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// ageEntry makes the stored response for path look d older to every
// server, by shortening how long Redis keeps it: the core reads freshness
// and age from the remaining PTTL, by the Redis server's clock.
func ageEntry(t testing.TB, rdb redis.UniversalClient, path string, d time.Duration) {
	t.Helper()
	key := "httpcache:{" + primaryKeyOf("http", "example.com", &url.URL{Path: path}) + "}"
	ctx := context.Background()
	pttl, err := rdb.PTTL(ctx, key).Result()
	require.NoError(t, err)
	require.Greater(t, pttl, d, "what Redis keeps of %s", path)
	require.NoError(t, rdb.PExpire(ctx, key, pttl-d).Err())
}

// herd sends n requests for path to each of the handlers at once, and
// returns their responses once release has been called and all are in.
// ready tells when the requests wait: it is polled until true.
func herd(t *testing.T, handlers []http.Handler, path string, n int, ready func() bool, release func()) []*httptest.ResponseRecorder {
	t.Helper()
	var wg sync.WaitGroup
	out := make([]*httptest.ResponseRecorder, len(handlers)*n)
	for i := range out {
		wg.Go(func() { out[i] = do(handlers[i%len(handlers)], "GET", path) })
	}
	eventually(t, "the requests wait", ready)
	time.Sleep(50 * time.Millisecond) // the last ones join; release in any case
	release()
	wg.Wait()
	return out
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Issue 11 section 1 across a fleet: two servers, each with its own client
// to the same Redis, and a stored response past its freshness. The herd of
// requests on both servers gets one handler run, conditional on the stored
// ETag (RFC 9111 4.3.1); its 304 freshens the stored response (RFC 9111
// 4.3.4) for both servers, and every request but the run's own says it
// collapsed onto it (RFC 9211 2.6).
func TestFleetRevalidationOnce(t *testing.T) {
	onBackends(t, func(t *testing.T, newClient func() redis.UniversalClient) {
		release := make(chan struct{})
		h := newOrigin("max-age=60", "etag", func(w http.ResponseWriter, r *http.Request, n int64) {
			<-release
			answer304("etag")(w, r, n)
		})
		var nodes []*Middleware
		var handlers []http.Handler
		for range 2 {
			m := newMW(t, newClient(), Options{LocalBytes: -1, WaitTimeout: time.Minute})
			nodes, handlers = append(nodes, m), append(handlers, m.Handler(h))
		}
		require.Contains(t, status(do(handlers[0], "GET", "/r")), "stored")
		ageEntry(t, newClient(), "/r", 61*time.Second)

		out := herd(t, handlers, "/r", 10, func() bool {
			return h.n.Load() == 2 && nodes[0].Stats().LockContended+nodes[1].Stats().LockContended > 0
		}, func() { close(release) })

		require.EqualValues(t, 2, h.n.Load(), "one revalidation across the fleet")
		require.Equal(t, []string{"", `"v1"`}, h.validators())
		kinds := map[string]int{}
		for _, w := range out {
			require.Equal(t, 200, w.Code)
			require.Equal(t, "v1 body", w.Body.String())
			require.Equal(t, "run 2, a 304", w.Header().Get("X-From"), "the 304's fields")
			kinds[status(w)]++
		}
		require.Equal(t, map[string]int{
			"stampede; fwd=stale; fwd-status=304; stored":            1,
			"stampede; fwd=stale; fwd-status=304; collapsed; stored": len(out) - 1,
		}, kinds)

		// Freshened on both servers: a hit, with the 304's fields.
		for i, s := range handlers {
			w := do(s, "GET", "/r")
			require.True(t, strings.HasPrefix(status(w), "stampede; hit; ttl="), "server %d: %s", i, status(w))
			require.Equal(t, "run 2, a 304", w.Header().Get("X-From"), "server %d", i)
			require.Equal(t, "v1 body", w.Body.String())
		}
		require.EqualValues(t, 2, h.n.Load())
	})
}

// RFC 5861 4 across a fleet: a revalidation that fails within
// stale-if-error is answered with the stale response on both servers, the
// requests that waited for it included, and the stale copy is then served
// as it is for a while, everywhere, without another run.
func TestFleetStaleIfError(t *testing.T) {
	onBackends(t, func(t *testing.T, newClient func() redis.UniversalClient) {
		release := make(chan struct{})
		h := newOrigin("max-age=60, stale-if-error=600", "etag", func(w http.ResponseWriter, r *http.Request, n int64) {
			<-release
			respond(http.StatusServiceUnavailable, "busy")(w, r, n)
		})
		var nodes []*Middleware
		var handlers []http.Handler
		for range 2 {
			m := newMW(t, newClient(), Options{LocalBytes: -1, WaitTimeout: time.Minute})
			nodes, handlers = append(nodes, m), append(handlers, m.Handler(h))
		}
		do(handlers[0], "GET", "/e")
		ageEntry(t, newClient(), "/e", 70*time.Second)

		out := herd(t, handlers, "/e", 5, func() bool {
			return h.n.Load() == 2 && nodes[0].Stats().LockContended+nodes[1].Stats().LockContended > 0
		}, func() { close(release) })
		require.EqualValues(t, 2, h.n.Load(), "one revalidation across the fleet")
		collapsed := 0
		for _, w := range out {
			require.Equal(t, 200, w.Code)
			require.Equal(t, "v1 body", w.Body.String())
			cs := status(w)
			require.Contains(t, cs, "fwd=stale; fwd-status=503; ttl=-")
			require.Contains(t, cs, "detail=stale-if-error")
			if strings.Contains(cs, "; collapsed") {
				collapsed++
			}
		}
		require.Equal(t, len(out)-1, collapsed)

		for i, s := range handlers {
			w := do(s, "GET", "/e")
			require.Equal(t, "v1 body", w.Body.String())
			cs := status(w)
			require.True(t, strings.HasPrefix(cs, "stampede; hit; ttl=-") && hasDetail(cs, "stale-if-error"), "server %d: %s", i, cs)
		}
		require.EqualValues(t, 2, h.n.Load(), "no run while the stale copy is served as it is")
	})
}

// The Cache-Status of requests that waited for another server's run says
// collapsed; a later request that reads the same stored response does not.
func TestFleetCollapsedAcrossServers(t *testing.T) {
	onBackends(t, func(t *testing.T, newClient func() redis.UniversalClient) {
		release := make(chan struct{})
		h := &counter{fn: func(w http.ResponseWriter, r *http.Request, n int64) {
			<-release
			cacheable(fmt.Sprintf("run %d", n))(w, r, n)
		}}
		a := newMW(t, newClient(), Options{LocalBytes: -1, WaitTimeout: time.Minute})
		b := newMW(t, newClient(), Options{LocalBytes: -1, WaitTimeout: time.Minute})
		leader := make(chan string, 1)
		go func() { leader <- status(do(a.Handler(h), "GET", "/c")) }()
		eventually(t, "the run starts", func() bool { return h.n.Load() == 1 })
		out := herd(t, []http.Handler{b.Handler(h)}, "/c", 5, func() bool { return b.Stats().LockContended > 0 },
			func() { close(release) })
		require.Equal(t, "stampede; fwd=uri-miss; fwd-status=200; stored", <-leader)
		for _, w := range out {
			require.Equal(t, "run 1", w.Body.String())
			require.Equal(t, "stampede; fwd=uri-miss; fwd-status=200; collapsed; stored", status(w))
		}
		require.True(t, strings.HasPrefix(status(do(b.Handler(h), "GET", "/c")), "stampede; hit; ttl="))
		require.EqualValues(t, 1, h.n.Load())
	})
}
