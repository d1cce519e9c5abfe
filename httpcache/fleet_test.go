package httpcache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stampede-go/stampede"
	"github.com/stampede-go/stampede/internal/redistest"
)

// node is one server of a simulated fleet: its own middleware and its own
// Redis client.
type node struct {
	m   *Middleware
	srv *httptest.Server
}

func startNodes(t *testing.T, start func(t *testing.T) *node, n int) []*node {
	nodes := make([]*node, n)
	for i := range nodes {
		nodes[i] = start(t)
	}
	return nodes
}

// realFleet starts n nodes sharing one real redis-server.
func realFleet(t *testing.T, n int, h http.Handler, opts Options) []*node {
	nodes, _ := realFleetServer(t, n, h, opts)
	return nodes
}

func realFleetServer(t *testing.T, n int, h http.Handler, opts Options) ([]*node, *redistest.Server) {
	srv := redistest.Start(t)
	return startNodes(t, func(t *testing.T) *node {
		m := newMW(t, srv.Client(t), opts)
		s := httptest.NewServer(m.Handler(h))
		t.Cleanup(s.Close)
		return &node{m: m, srv: s}
	}, n), srv
}

// The headline: 1,000 concurrent real HTTP requests for one cold URL, split
// across two servers, each with its own middleware and Redis client, sharing
// one redis-server. The handler runs once; every client gets the same status,
// headers and body.
func TestFleetThousandRequestsOneHandlerRun(t *testing.T) {
	release := make(chan struct{})
	h := &counter{fn: func(w http.ResponseWriter, r *http.Request, n int64) {
		<-release // hold the fill until every request is in flight
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Header().Set("Content-Type", "application/json")
		w.Header().Add("X-Multi", "one")
		w.Header().Add("X-Multi", "two")
		w.Header().Set("Etag", `"v1"`)
		fmt.Fprintf(w, `{"run":%d}`, n)
	}}
	nodes := realFleet(t, 2, h, Options{})

	const total = 1000
	tr := &http.Transport{MaxIdleConns: total, MaxIdleConnsPerHost: total, MaxConnsPerHost: 0}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 60 * time.Second}

	type reply struct {
		status int
		header http.Header
		body   string
	}
	replies := make([]reply, total)
	var started, wg sync.WaitGroup
	started.Add(total)
	for i := range total {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := nodes[i%2].srv.URL + "/cold?x=1"
			started.Done()
			resp, body := get(t, client, url)
			if resp != nil {
				replies[i] = reply{resp.StatusCode, resp.Header, body}
			}
		}()
	}
	started.Wait()
	time.Sleep(300 * time.Millisecond) // let the requests reach the servers
	close(release)
	wg.Wait()

	if got := h.n.Load(); got != 1 {
		t.Fatalf("handler ran %d times, want 1", got)
	}
	strip := func(h http.Header) http.Header {
		h = maps.Clone(h)
		delete(h, "Cache-Status") // hit, miss or collapsed: differs by design
		delete(h, "Age")          // whole seconds since the fill
		return h
	}
	want := replies[0]
	if want.status != http.StatusOK || want.body != `{"run":1}` {
		t.Fatalf("first reply: %d %q", want.status, want.body)
	}
	if got := want.header.Values("X-Multi"); !slices.Equal(got, []string{"one", "two"}) {
		t.Errorf("X-Multi = %q", got)
	}
	statuses := map[string]int{}
	for i, r := range replies {
		if r.status != want.status || r.body != want.body {
			t.Fatalf("reply %d: %d %q, want %d %q", i, r.status, r.body, want.status, want.body)
		}
		if got, w := strip(r.header), strip(want.header); !headersEqual(got, w) {
			t.Fatalf("reply %d headers:\n%v\nwant\n%v", i, got, w)
		}
		statuses[strings.SplitN(r.header.Get("Cache-Status"), ";", 3)[1]]++
	}
	t.Logf("Cache-Status kinds: %v", statuses)
	for i, n := range nodes {
		t.Logf("node %d: %+v", i, n.m.Stats())
	}
}

func headersEqual(a, b http.Header) bool {
	return maps.EqualFunc(a, b, func(x, y []string) bool { return slices.Equal(x, y) })
}

// Followers on another node are woken by the fill's notification: with the
// safety-net re-check set to a minute, they still get the response as soon
// as it lands.
func TestFleetFollowersWokenByNotification(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	h := &counter{fn: func(w http.ResponseWriter, r *http.Request, n int64) {
		close(entered)
		<-release
		cacheable("filled")(w, r, n)
	}}
	nodes := realFleet(t, 2, h, Options{Recheck: time.Minute, WaitTimeout: time.Minute})
	client := nodes[0].srv.Client()

	done := make(chan string, 1)
	go func() { _, b := get(t, client, nodes[0].srv.URL+"/w"); done <- b }()
	<-entered // node 0 holds the lease
	const followers = 20
	var wg sync.WaitGroup
	for range followers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, body := get(t, client, nodes[1].srv.URL+"/w")
			if resp == nil || body != "filled" {
				t.Errorf("follower got %q", body)
			}
		}()
	}
	// Wait until node 1 is waiting on the lease, then fill.
	deadline := time.Now().Add(10 * time.Second)
	for nodes[1].m.Stats().LockContended == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	wg.Wait()
	<-done
	st := nodes[1].m.Stats()
	if st.WokenByNotify == 0 || st.WokenByRecheck != 0 {
		t.Fatalf("node 1: woken by notify %d, by re-check %d; want notify only", st.WokenByNotify, st.WokenByRecheck)
	}
	if h.n.Load() != 1 {
		t.Fatalf("handler ran %d times", h.n.Load())
	}
}

// A follower whose wait times out runs the handler itself, and what it gets
// is not stored: the leader's response is what later requests see.
func TestFleetWaitTimeoutRunsHandlerWithoutStoring(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	h := &counter{fn: func(w http.ResponseWriter, r *http.Request, n int64) {
		if n == 1 {
			close(entered)
			<-release
		}
		cacheable(fmt.Sprintf("run %d", n))(w, r, n)
	}}
	nodes := realFleet(t, 2, h, Options{WaitTimeout: 200 * time.Millisecond})
	client := nodes[0].srv.Client()

	done := make(chan string, 1)
	go func() { _, b := get(t, client, nodes[0].srv.URL+"/t"); done <- b }()
	<-entered
	resp, body := get(t, client, nodes[1].srv.URL+"/t")
	if body != "run 2" {
		t.Fatalf("timed-out follower got %q, want its own run", body)
	}
	if cs := resp.Header.Get("Cache-Status"); !strings.Contains(cs, "fwd=uri-miss") || strings.Contains(cs, "stored") {
		t.Errorf("Cache-Status %q: want a miss that was not stored", cs)
	}
	close(release)
	if b := <-done; b != "run 1" {
		t.Fatalf("leader got %q", b)
	}
	for i, n := range nodes {
		if _, b := get(t, client, n.srv.URL+"/t"); b != "run 1" {
			t.Fatalf("node %d serves %q after the fill, want the leader's response", i, b)
		}
	}
}

// An uncacheable response is never handed to the requests that waited for
// it: they run the handler themselves, concurrently, and the hit-for-miss
// marker makes later requests, on every node, skip the queue.
func TestFleetUncacheableNotShared(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		fn   func(w http.ResponseWriter, n int64)
	}{
		{"set-cookie", Options{}, func(w http.ResponseWriter, n int64) {
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Set-Cookie", fmt.Sprintf("session=%d", n))
			fmt.Fprintf(w, "run %d", n)
		}},
		{"private", Options{}, func(w http.ResponseWriter, n int64) {
			w.Header().Set("Cache-Control", "private, max-age=60")
			fmt.Fprintf(w, "run %d", n)
		}},
		{"no-store", Options{}, func(w http.ResponseWriter, n int64) {
			w.Header().Set("Cache-Control", "no-store")
			fmt.Fprintf(w, "run %d", n)
		}},
		{"too-big", Options{MaxBodySize: 1000}, func(w http.ResponseWriter, n int64) {
			w.Header().Set("Cache-Control", "max-age=60")
			fmt.Fprintf(w, "run %d ", n)
			_, _ = w.Write([]byte(strings.Repeat("x", 5000)))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			entered := make(chan struct{})
			release := make(chan struct{})
			var inFlight, maxInFlight atomic.Int64
			h := &counter{fn: func(w http.ResponseWriter, r *http.Request, n int64) {
				cur := inFlight.Add(1)
				defer inFlight.Add(-1)
				for {
					m := maxInFlight.Load()
					if cur <= m || maxInFlight.CompareAndSwap(m, cur) {
						break
					}
				}
				if n == 1 {
					close(entered)
					<-release
				} else {
					time.Sleep(50 * time.Millisecond)
				}
				tc.fn(w, n)
			}}
			nodes := realFleet(t, 2, h, tc.opts)
			client := nodes[0].srv.Client()

			const followers = 8
			bodies := make(chan string, followers+1)
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); _, b := get(t, client, nodes[0].srv.URL+"/u"); bodies <- b }()
			<-entered
			for i := range followers {
				wg.Add(1)
				go func() { defer wg.Done(); _, b := get(t, client, nodes[i%2].srv.URL+"/u"); bodies <- b }()
			}
			// Let the followers queue behind the leader on both nodes.
			deadline := time.Now().Add(10 * time.Second)
			for nodes[0].m.Stats().Misses+nodes[1].m.Stats().Misses < 2 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(100 * time.Millisecond)
			close(release)
			wg.Wait()
			close(bodies)
			seen := map[string]bool{}
			for b := range bodies {
				run := strings.Fields(b)[1]
				if seen[run] {
					t.Fatalf("two clients got the response of run %s", run)
				}
				seen[run] = true
				if tc.name == "too-big" && len(b) != len("run "+run+" ")+5000 {
					t.Fatalf("client got %d bytes of a too-big response", len(b))
				}
			}
			if got := h.n.Load(); got != followers+1 {
				t.Fatalf("handler ran %d times, want %d", got, followers+1)
			}
			if maxInFlight.Load() < 2 {
				t.Errorf("followers ran the handler one at a time")
			}
			// Later requests, on either node, pass straight through.
			for i, n := range nodes {
				resp, _ := get(t, client, n.srv.URL+"/u")
				if cs := resp.Header.Get("Cache-Status"); !hasDetail(cs, "hit-for-miss") {
					t.Errorf("node %d: Cache-Status %q, want hit-for-miss", i, cs)
				}
			}
		})
	}
}

// The leader's client going away does not abort the fill: the requests
// that waited get the response, and it is stored.
func TestFleetLeaderDisconnectKeepsFill(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	h := &counter{fn: func(w http.ResponseWriter, r *http.Request, n int64) {
		close(entered)
		select {
		case <-release:
		case <-r.Context().Done():
			http.Error(w, "aborted", http.StatusServiceUnavailable)
			return
		}
		cacheable("complete")(w, r, n)
	}}
	nodes := realFleet(t, 2, h, Options{})
	client := nodes[0].srv.Client()

	ctx, cancel := context.WithCancel(context.Background())
	leaderDone := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, nodes[0].srv.URL+"/d", nil)
		req.Host = "fleet.test"
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		leaderDone <- err
	}()
	<-entered
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, b := get(t, client, nodes[i%2].srv.URL+"/d")
			if resp == nil || resp.StatusCode != 200 || b != "complete" {
				t.Errorf("follower got %v %q", resp, b)
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	cancel() // the leader's client leaves
	if err := <-leaderDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("leader request: %v", err)
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	resp, b := get(t, client, nodes[1].srv.URL+"/d")
	if b != "complete" || !strings.Contains(resp.Header.Get("Cache-Status"), "hit") {
		t.Fatalf("after the fill: %q %q", b, resp.Header.Get("Cache-Status"))
	}
	if h.n.Load() != 1 {
		t.Fatalf("handler ran %d times", h.n.Load())
	}
}

// A panicking or incomplete response is not stored; the requests that
// waited for it get a 5xx; no lock stays behind, so the next request runs
// the handler again at once.
func TestFleetPanicAndIncompleteNeverStored(t *testing.T) {
	for _, tc := range []struct {
		name string
		bad  func(w http.ResponseWriter)
	}{
		{"panic", func(w http.ResponseWriter) {
			w.Header().Set("Cache-Control", "max-age=60")
			_, _ = io.WriteString(w, "partial")
			panic("boom")
		}},
		{"short-body", func(w http.ResponseWriter) {
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Content-Length", "100")
			_, _ = io.WriteString(w, "only this")
		}},
		{"abort", func(w http.ResponseWriter) {
			w.Header().Set("Cache-Control", "max-age=60")
			panic(http.ErrAbortHandler)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			entered := make(chan struct{})
			h := &counter{fn: func(w http.ResponseWriter, r *http.Request, n int64) {
				if n == 1 {
					close(entered)
					<-release
					tc.bad(w)
					return
				}
				cacheable("good")(w, r, n)
			}}
			nodes, rs := realFleetServer(t, 1, h, Options{})
			client := nodes[0].srv.Client()
			var wg sync.WaitGroup
			codes := make(chan int, 5)
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, _ := get(t, client, nodes[0].srv.URL+"/p")
				codes <- resp.StatusCode
			}()
			<-entered
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					resp, _ := get(t, client, nodes[0].srv.URL+"/p")
					codes <- resp.StatusCode
				}()
			}
			time.Sleep(100 * time.Millisecond)
			close(release)
			wg.Wait()
			close(codes)
			for c := range codes {
				if c < 500 {
					t.Errorf("status %d, want a 5xx for every request that shared the bad run", c)
				}
			}
			key := primaryKeyOf("http", "fleet.test", &url.URL{Path: "/p"})
			n, err := rs.Client(t).Exists(context.Background(), "httpcache:{"+key+"}", "httpcache:{"+key+"}:lock").Result()
			if err != nil || n != 0 {
				t.Fatalf("value or lock left in Redis: %d %v", n, err)
			}
			resp, b := get(t, client, nodes[0].srv.URL+"/p")
			if resp.StatusCode != 200 || b != "good" {
				t.Fatalf("next request: %d %q", resp.StatusCode, b)
			}
			if h.n.Load() != 2 {
				t.Fatalf("handler ran %d times, want 2", h.n.Load())
			}
		})
	}
}

// With Redis gone the middleware keeps serving: per-process coalescing,
// memory only, never a 5xx of its own.
func TestRedisDownStillServes(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	release := make(chan struct{})
	h := &counter{fn: func(w http.ResponseWriter, r *http.Request, n int64) {
		if r.URL.Path != "/first" {
			<-release
		}
		cacheable("ok")(w, r, n)
	}}
	m := newMW(t, rdb, Options{BreakerCooldown: time.Minute})
	s := httptest.NewServer(m.Handler(h))
	defer s.Close()
	srv.Kill()
	// The first request finds Redis gone and opens the circuit; the burst
	// after it skips Redis and coalesces in the process.
	if resp, b := get(t, s.Client(), s.URL+"/first"); resp.StatusCode != 200 || b != "ok" {
		t.Fatalf("first request: %d %q", resp.StatusCode, b)
	}
	h.n.Store(0)

	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, b := get(t, s.Client(), s.URL+"/r")
			if resp == nil || resp.StatusCode != 200 || b != "ok" {
				t.Errorf("got %v %q", resp, b)
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	close(release)
	wg.Wait()
	if resp, b := get(t, s.Client(), s.URL+"/r"); resp.StatusCode != 200 || b != "ok" {
		t.Fatalf("after: %d %q", resp.StatusCode, b)
	}
	if h.n.Load() != 1 {
		t.Fatalf("handler ran %d times, want 1 (per-process coalescing and memory)", h.n.Load())
	}
	// A POST's failed invalidation does not fail the POST either.
	resp, err := s.Client().Post(s.URL+"/r", "text/plain", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST: %v %v", resp, err)
	}
	resp.Body.Close()
}

// Options.OnClient reaches the core: the hooks it adds see the reads of
// the clients the middleware makes in tracking mode.
func TestOnClientReachesTheClientsOfTrackedReads(t *testing.T) {
	srv := redistest.Start(t)
	var made, reads atomic.Int64
	m := newMW(t, srv.Client(t), Options{Invalidation: stampede.InvalidateTracking,
		OnClient: func(rdb redis.UniversalClient) {
			made.Add(1)
			rdb.AddHook(countReads{&reads})
		}})
	s := httptest.NewServer(m.Handler(&counter{fn: cacheable("ok")}))
	defer s.Close()
	for range 3 {
		if resp, b := get(t, s.Client(), s.URL+"/x"); resp.StatusCode != 200 || b != "ok" {
			t.Fatalf("%d %q", resp.StatusCode, b)
		}
	}
	if made.Load() == 0 || reads.Load() == 0 {
		t.Fatalf("OnClient got %d clients; their hooks saw %d commands", made.Load(), reads.Load())
	}
}

// countReads counts the commands and pipelines of a client.
type countReads struct{ n *atomic.Int64 }

func (h countReads) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h countReads) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h countReads) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}
